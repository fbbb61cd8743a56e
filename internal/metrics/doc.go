// Package metrics owns vaultd's Prometheus registry and collectors: the Go
// runtime and process collectors, tenantvault_build_info, and the vault's
// own metrics, read from plain counters and callbacks that the packages
// measured (vault, vault/httpapi, audit/alerts, internal/ingest) expose
// without importing Prometheus. It is the one package that imports
// github.com/prometheus/client_golang (internal/archtest enforces it);
// internal/server wires it.
//
// Cardinality is bounded by construction: a series is labelled by tenant
// only for a tenant the Known callback says exists (the vault's registry),
// every other tenant is labelled "other", so no request, token holder or
// producer can create series by naming made-up tenants.
//
// It imports net/http only for the type of Handler (promhttp), an
// exception internal/archtest records.
//
// It never sees tenant data, tokens or key material: only counts,
// durations and tenant ids of existing tenants.
package metrics
