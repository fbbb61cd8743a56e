// Package server wires a whole vaultd: the embedded broker or a Kafka
// cluster, the keystore, the tenant stores, the audit log, the vault, the
// ingest runner and the HTTP API. cmd/vaultd, the end-to-end tests and the
// load command all start a vault through it, the way wtf's cmd/wtfd Main is
// reused by its tests.
//
// It holds configuration and lifetimes only: no business logic, no key
// material, no tenant data.
package server
