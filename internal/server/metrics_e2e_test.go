package server_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/server"
)

// TestMetricsListener runs vaultd with --metrics-addr and
// --metrics-token-file: the metrics listener serves /metrics to the metrics
// token only and nothing else; the API's /metrics takes the metrics token or
// the admin, not a tenant; the metrics token opens no other endpoint; the
// per-tenant lag series exist for every tenant and fall to 0 once its
// events are applied.
func TestMetricsListener(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(t.TempDir(), "metrics.token")
	const metricsTok = "metrics-token-for-the-e2e-test-0123"
	if err := os.WriteFile(tokFile, []byte(metricsTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := mustStartWith(t, dir, "", func(c *server.Config) {
		c.MetricsAddr = "127.0.0.1:0"
		c.MetricsTokenFile = tokFile
		c.IngestLagInterval = 50 * time.Millisecond
	})
	acme := v.createTenant("acme")
	v.createTenant("beta")
	v.publish("tenant.acme.events", rec("order-1", event("e1", "order-1", "order.created", `{"n":1}`)))
	v.waitVersion("acme", acme, "order-1", 1)

	maddr := "http://" + v.srv.MetricsAddr()
	get := func(url, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		name, url, token string
		want             int
	}{
		{"metrics listener, no token", maddr + "/metrics", "", http.StatusUnauthorized},
		{"metrics listener, tenant token", maddr + "/metrics", acme, http.StatusUnauthorized},
		{"metrics listener, admin token", maddr + "/metrics", v.srv.AdminToken(), http.StatusUnauthorized},
		{"metrics listener, metrics token", maddr + "/metrics", metricsTok, http.StatusOK},
		{"metrics listener serves nothing else", maddr + "/v1/tenants", metricsTok, http.StatusNotFound},
		{"metrics listener has no readyz", maddr + "/readyz", "", http.StatusNotFound},
		{"API, no token", v.base + "/metrics", "", http.StatusUnauthorized},
		{"API, tenant token", v.base + "/metrics", acme, http.StatusForbidden},
		{"API, metrics token", v.base + "/metrics", metricsTok, http.StatusOK},
		{"API, admin token", v.base + "/metrics", v.srv.AdminToken(), http.StatusOK},
		{"metrics token reads no tenant data", v.base + "/v1/tenants/acme/streams", metricsTok, http.StatusUnauthorized},
		{"metrics token is not the admin", v.base + "/v1/tenants", metricsTok, http.StatusUnauthorized},
	} {
		if got, body := get(c.url, c.token); got != c.want {
			t.Errorf("%s: GET %s = %d, want %d (%.200s)", c.name, c.url, got, c.want, body)
		}
	}

	lagLine := regexp.MustCompile(`(?m)^tenantvault_consumer_lag_records\{tenant="(acme|beta)"\} (\S+)$`)
	waitFor(t, 10*time.Second, "lag series of acme and beta at 0", func() bool {
		_, body := get(maddr+"/metrics", metricsTok)
		zero := map[string]bool{}
		for _, m := range lagLine.FindAllStringSubmatch(body, -1) {
			zero[m[1]] = m[2] == "0"
		}
		return zero["acme"] && zero["beta"] && !strings.Contains(body, "tenantvault_consumer_lag_measured_timestamp_seconds 0\n")
	})
	_, body := get(maddr+"/metrics", metricsTok)
	for _, want := range []string{"tenantvault_build_info{", `tenantvault_tenant_events_applied_total{tenant="acme"} 1`, "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, metricsTok) || strings.Contains(body, acme) {
		t.Error("/metrics shows a token")
	}
}
