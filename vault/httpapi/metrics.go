package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// Metrics is where the API registers the vault's counters and records the
// duration of each request; internal/metrics' Registry is one.
type Metrics interface {
	// CounterFunc registers a counter tenantvault_<name> read by f.
	CounterFunc(name, help string, f func() float64)
	// ObserveRequest records one request: the route pattern that
	// matched ("" when none did), its status and its duration.
	ObserveRequest(route string, status int, d time.Duration)
	// Handler serves the metrics in the Prometheus formats.
	Handler() http.Handler
}

// registerStats registers the vault's counters with m.
func (h *Handler) registerStats(m Metrics) {
	s := h.v.Stats()
	for _, c := range []struct {
		name, help string
		f          func() int64
	}{
		{"events_applied_total", "Events applied to tenant stores.", s.EventsApplied.Load},
		{"events_duplicate_total", "Events whose id had already been applied.", s.EventsDuplicate.Load},
		{"events_quarantined_total", "Records rejected into a tenant's quarantine.", s.EventsQuarantined.Load},
		{"events_redelivered_total", "Records skipped because their offset was already applied.", s.EventsSkipped.Load},
		{"unknown_tenant_records_total", "Records on topics of unknown or invalid tenants, skipped.", s.UnknownTenantMsgs.Load},
		{"ingest_batches_total", "Ingest batches committed.", s.Batches.Load},
		{"reads_total", "Tenant reads served.", s.Reads.Load},
		{"denied_total", "Requests denied.", s.Denied.Load},
	} {
		m.CounterFunc(c.name, c.help, func() float64 { return float64(c.f()) })
	}
}

// tokenMatcher compares a bearer token to a fixed one in constant time.
type tokenMatcher [sha256.Size]byte

func newTokenMatcher(token string) *tokenMatcher {
	if token == "" {
		return nil
	}
	m := tokenMatcher(sha256.Sum256([]byte(token)))
	return &m
}

func (m *tokenMatcher) match(r *http.Request) bool {
	if m == nil {
		return false
	}
	got := sha256.Sum256([]byte(bearer(r)))
	return subtle.ConstantTimeCompare(got[:], m[:]) == 1
}

// metrics serves /metrics on the API listener: to the metrics token
// (Options.MetricsToken) or the admin, never to anyone else, since the
// metrics name tenants and show their activity. Other credentials are
// refused and audited as any admin endpoint's are.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.metricsHandler == nil {
		writeError(w, events.Errorf(events.ENOTFOUND, "metrics are not served on this listener"))
		return
	}
	if !h.metricsToken.match(r) {
		p, ok := h.auth(w, r, audit.ActionAuditRead, "metrics")
		if !ok {
			return
		}
		if err := h.v.RequireAdmin(r.Context(), p, audit.ActionAuditRead, "metrics"); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	h.metricsHandler.ServeHTTP(w, r)
}

// MetricsEndpoint serves m's metrics alone, with an access log line per
// request on log, for a listener of their own (vaultd --metrics-addr):
// GET /metrics, to a request bearing token when token is not "" (401
// otherwise), to anyone who reaches the listener when it is "".
func MetricsEndpoint(m Metrics, token string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tm := newTokenMatcher(token)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if tm != nil && !tm.match(r) {
			writeError(w, events.Errorf(events.EUNAUTHORIZED, "the metrics token is required"))
			return
		}
		m.Handler().ServeHTTP(w, r)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, events.Errorf(events.ENOTFOUND, "no such endpoint: %s %.100q (this listener serves GET /metrics only)", r.Method, r.URL.Path))
	})
	return accessLog(mux, log, nil)
}

// statusWriter records the status and the bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets handlers that stream (the audit export) flush through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog logs one info line per request handled by next: method, the
// route pattern that matched (never the raw path, whose tenant and stream
// ids the pattern leaves out, nor the query), status, duration, bytes
// written and the client's address; never a header, so never a token. It
// records the request's duration in m when m is not nil.
func accessLog(next http.Handler, log *slog.Logger, m Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		d := time.Since(start)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		if m != nil {
			m.ObserveRequest(r.Pattern, sw.status, d)
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
			slog.String("method", r.Method), slog.String("route", r.Pattern), slog.Int("status", sw.status),
			slog.Duration("duration", d), slog.Int64("bytes", sw.bytes), slog.String("remote", clientIP(r)))
	})
}
