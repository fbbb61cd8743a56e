package httpapi_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

const testMetricsToken = "metrics-token-0123456789"

// TestMetricsProtected: /metrics on the API listener names tenants, so it
// answers the admin and the metrics token only; anyone else is refused,
// and the refusal is audited.
func TestMetricsProtected(t *testing.T) {
	api := mustStartAPIWith(t, nil, func(o *httpapi.Options) { o.MetricsToken = testMetricsToken })
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme", [4]string{"s", "e-1", "t", `{}`})
	if r := api.get(t, "/v1/tenants/acme/streams/s", acme); r.status != http.StatusOK {
		t.Fatalf("GET stream = %d %s", r.status, r.body)
	}
	tests := []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "tvt_wrong-token-xyz", http.StatusUnauthorized},
		{"tenant token", acme, http.StatusForbidden},
		{"metrics token", testMetricsToken, http.StatusOK},
		{"admin token", testAdminToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := api.audit.Size()
			r := api.get(t, "/metrics", tt.token)
			if r.status != tt.want {
				t.Fatalf("GET /metrics with %s = %d, want %d; body %s", tt.name, r.status, tt.want, r.body)
			}
			if tt.want != http.StatusOK {
				if strings.Contains(string(r.body), "acme") || strings.Contains(string(r.body), "tenantvault_") {
					t.Fatalf("refused /metrics leaks: %s", r.body)
				}
				if tt.want == http.StatusForbidden {
					recs := api.listSince(t, n)
					if len(recs) != 1 || recs[0].Resource != "metrics" || recs[0].Outcome != audit.OutcomeDenied {
						t.Fatalf("audit records of a tenant token on /metrics = %+v, want one denial of metrics", recs)
					}
				}
				return
			}
			for _, want := range []string{"tenantvault_build_info{", "go_goroutines ", "tenantvault_reads_total 1\n",
				`tenantvault_http_request_duration_seconds_count{code="2xx",route="GET /v1/tenants/{tenant}/streams/{stream}"} 1`} {
				if !strings.Contains(string(r.body), want) {
					t.Errorf("/metrics lacks %q:\n%s", want, r.body)
				}
			}
		})
	}
}

// TestMetricsNotServedWithout: with no Options.Metrics, /metrics is 404.
func TestMetricsNotServedWithout(t *testing.T) {
	api := mustStartAPIWith(t, nil, func(o *httpapi.Options) { o.Metrics = nil })
	checkError(t, api.get(t, "/metrics", testAdminToken), events.ENOTFOUND)
}

// TestMetricsBoundedCardinality: a tenant token on many made-up tenant
// paths creates no series naming them; labels are route patterns.
func TestMetricsBoundedCardinality(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	for i := range 200 {
		api.get(t, fmt.Sprintf("/v1/tenants/made-up-%d/streams/s-%d", i, i), acme)
		api.get(t, fmt.Sprintf("/no/such/path-%d", i), acme)
	}
	api.metrics.Ingested("made-up-1", 1, 1)
	api.metrics.Ingested("acme", 2, 1)
	r := api.get(t, "/metrics", testAdminToken)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", r.status, r.body)
	}
	body := string(r.body)
	for _, leak := range []string{"made-up", "s-1", "path-"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics has a series naming %q:\n%s", leak, body)
		}
	}
	for _, want := range []string{
		`tenantvault_tenant_events_applied_total{tenant="acme"} 2`,
		`tenantvault_tenant_events_applied_total{tenant="other"} 1`,
		`tenantvault_tenant_events_quarantined_total{tenant="other"} 1`,
		`tenantvault_http_request_duration_seconds_count{code="4xx",route="/"} 200`,
		`tenantvault_http_request_duration_seconds_count{code="4xx",route="GET /v1/tenants/{tenant}/streams/{stream}"} 200`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAccessLog: one info line per request with the route pattern, the
// status, the bytes and the client; never the token, the raw path's ids or
// the query.
func TestAccessLog(t *testing.T) {
	var logs syncBuffer
	api := mustStartAPIWith(t, nil, func(o *httpapi.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme", [4]string{"stream-secret-id", "e-1", "t", `{}`})
	r := api.get(t, "/v1/tenants/acme/streams/stream-secret-id?token=query-secret-token", acme)
	if r.status != http.StatusOK {
		t.Fatalf("GET stream = %d %s", r.status, r.body)
	}
	api.get(t, "/v1/tenants", "tvt_wrong-secret-token")
	out := logs.String()
	for _, want := range []string{
		`level=INFO msg="http request" method=GET route="GET /v1/tenants/{tenant}/streams/{stream}" status=200`,
		fmt.Sprintf("bytes=%d", len(r.body)),
		"remote=127.0.0.1",
		`route="GET /v1/tenants" status=401`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("access log lacks %q:\n%s", want, out)
		}
	}
	for _, leak := range []string{acme, "query-secret-token", "tvt_wrong-secret-token", "stream-secret-id", "Bearer"} {
		if strings.Contains(out, leak) {
			t.Errorf("access log holds %q:\n%s", leak, out)
		}
	}
}

// syncBuffer is a strings.Builder safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
