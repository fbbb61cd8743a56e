// Package server wires a whole vaultd: the embedded broker or a Kafka
// cluster, the keystore, the tenant stores, the audit log, the vault, the
// ingest runner and the HTTP API. cmd/vaultd, the end-to-end tests and the
// load command all start a vault through it, the way wtf's cmd/wtfd Main is
// reused by its tests.
//
// It holds configuration and lifetimes only: no business logic, no key
// material, no tenant data. Server.Open sets the process's umask to 077:
// the embedded broker and Badger cannot be told to create their files
// private, so nothing of the data dir may be readable by others.
//
// As wiring it may import any package of ours, but it reaches Tink, the KMS
// clients, Badger, kafka-go and franz-go only through keys, projections and
// internal/kafka, never directly. It imports net/http (it serves the HTTP
// API) and watermill (an exception: it builds the message.Message values
// the ingest runner consumes). internal/archtest enforces these imports.
package server
