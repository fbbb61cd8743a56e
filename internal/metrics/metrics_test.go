package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/internal/metrics"
)

func scrape(t *testing.T, r *metrics.Registry) string {
	t.Helper()
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(w.Body)
	return string(b)
}

// TestTenantLabelsBounded: samples of tenants that do not exist add up
// under "other"; label values are escaped.
func TestTenantLabelsBounded(t *testing.T) {
	known := map[string]bool{"acme": true, `we"ird\`: true}
	r := metrics.New(metrics.Config{Known: func(t string) bool { return known[t] }})
	r.CounterVecFunc("violations_total", "test", []string{"tenant", "reason"}, func() []metrics.Sample {
		return []metrics.Sample{
			{Labels: []string{"acme", "x"}, Value: 1},
			{Labels: []string{"made-up-1", "x"}, Value: 2},
			{Labels: []string{"made-up-2", "x"}, Value: 3},
			{Labels: []string{`we"ird\`, "x"}, Value: 4},
		}
	})
	out := scrape(t, r)
	for _, want := range []string{
		`tenantvault_violations_total{reason="x",tenant="acme"} 1`,
		`tenantvault_violations_total{reason="x",tenant="other"} 5`,
		`tenantvault_violations_total{reason="x",tenant="we\"ird\\"} 4`,
		`tenantvault_build_info{goversion="go`,
		"process_open_fds ",
		"go_goroutines ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "made-up") {
		t.Errorf("scrape names a tenant that does not exist:\n%s", out)
	}
}
