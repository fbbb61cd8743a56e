package httpapi

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of the API, served at GET
// /openapi.json. TestOpenAPI checks it against the router: every route
// documented, every documented operation routed to the pattern it names,
// and every example valid against its schema.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3.1 document (JSON): a copy, the
// caller may keep it.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// publicRoutes are the endpoints that need no credential and that Routes
// leaves out: health, readiness, metrics and this document. They carry no
// tenant data.
func publicRoutes() []string {
	return []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json"} // /metrics checks its own token (Options.MetricsToken)
}

// openapi serves the OpenAPI document: unauthenticated, the same bytes to
// everyone, no tenant data.
func (h *Handler) openapi(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPI)
}
