// Package httpapi is the vault's HTTP JSON API: admin endpoints for tenants
// and the audit log, tenant endpoints for streams, history and quarantine,
// and health and metrics. It maps vault error codes to statuses.
//
// Its OpenAPI 3.1 document, openapi.json, is embedded and served at GET
// /openapi.json without a credential (it holds no tenant data). A test
// keeps it true to the router: every route documented, every documented
// operation routed to the same method and path template, every example
// valid against its schema, the document valid against the OpenAPI 3.1
// schema. A new route goes into routes() (or publicRoutes) and the
// document together.
//
// It never opens a store or a cipher itself: every tenant read goes through
// a vault.Session made from the request's bearer credential, and the admin
// audit endpoints read the audit log only through AuditLog (checkpoints,
// proofs, export), never *audit.Log itself. It never logs request bodies,
// tokens or tenant data. Query parameters are parsed in one place (params),
// after the credential and the tenant boundary are checked.
//
// It rate-limits failed authentications per client IP (the peer address;
// forwarding headers are not trusted): past Options.AuthFailureLimit
// failures in Options.AuthFailureInterval, a source is answered 429 before
// its credential is looked at, with a bounded table of sources. Failures
// and refusals are audited through the vault, aggregated per source.
//
// On a node of a cluster (Options.Router), it proxies a request for a
// tenant another node owns to that node (net/http/httputil's
// ReverseProxy), which checks the credential itself; proxy.go has the
// table of routed and local endpoints, the loop guard and what each node
// audits.
//
// Of ours it imports only events, vault, audit and audit/alerts: never keys,
// projections or the Kafka adapter. It is the HTTP API package, so it may
// import net/http; besides it, only internal/server (which serves it),
// cmd/* and, for its webhook sink, audit/alerts do. internal/archtest
// enforces these imports.
package httpapi
