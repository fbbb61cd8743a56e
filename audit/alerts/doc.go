// Package alerts turns flagged audit records into alerts, in real time: a
// structured log line, an HTTP webhook and a Kafka topic (vault.alerts),
// and counts them (Violations, Sinks), which internal/metrics exports as
// tenantvault_boundary_violations_total{tenant,reason} and
// tenantvault_alerts_{sent,failed,dropped}_total{sink}. Violations are
// counted by tenant only for tenants that exist (Config.Known), the rest
// under "other", so made-up tenants in request paths cannot grow them.
//
// Alerts are sent after the record is durable in the audit log, so the log
// is the source of truth and an alert is a notification of it. Delivery
// never blocks the request or ingest path: each sink has its own bounded
// queue and goroutine; the webhook retries with backoff. An alert that
// cannot be queued is never dropped silently: it is counted, the run of
// drops is logged as an error, and the sink is sent a notice
// (ViolationAlertsDropped) of how many alerts of which audit records it
// missed once it catches up (they are all in the audit log).
//
// An alert carries what the audit record carries: metadata, never payloads
// or tokens.
//
// Of ours it imports only audit and events, and no third-party package. It
// imports net/http for the webhook sink: the one package besides the HTTP
// API (vault/httpapi), internal/server and cmd/* that does, an exception
// internal/archtest records and enforces.
package alerts
