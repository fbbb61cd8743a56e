// Package alerts turns flagged audit records into alerts, in real time: a
// structured log line, a Prometheus counter
// tenantvault_boundary_violations_total{tenant,reason}, an HTTP webhook and
// a Kafka topic (vault.alerts).
//
// Alerts are sent after the record is durable in the audit log, so the log
// is the source of truth and an alert is a notification of it. Delivery
// never blocks the request or ingest path: each sink has its own bounded
// queue and goroutine; the webhook retries with backoff; an alert that
// cannot be queued is counted as dropped (it is still in the audit log).
//
// An alert carries what the audit record carries: metadata, never payloads
// or tokens.
//
// Of ours it imports only audit and events, and no third-party package. It
// imports net/http for the webhook sink: the one package besides the HTTP
// API (vault/httpapi), internal/server and cmd/* that does, an exception
// internal/archtest records and enforces.
package alerts
