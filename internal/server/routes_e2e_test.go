package server_test

import (
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// TestCrossTenantEveryRoute takes the API's route table and sends every
// route that names a tenant a credential of another tenant — also with
// query parameters that would be refused on their own — and checks that
// each is refused (403) and recorded as exactly one flagged crossing
// (token_tenant_mismatch, naming the path's tenant), before any other
// validation. The tenant's own credential on its own admin routes is
// refused too, unflagged: not a crossing.
func TestCrossTenantEveryRoute(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	acme, globex := v.createTenant("acme"), v.createTenant("globex")
	fill := strings.NewReplacer("{tenant}", "acme", "{stream}", "o-1", "{id}", "1")
	tenantRoutes := 0
	for _, pattern := range httpapi.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		if !strings.Contains(path, "{tenant}") {
			continue
		}
		tenantRoutes++
		url := fill.Replace(path)
		for _, query := range []string{"", "?limit=0&after=-1&cursor=%ff&usage=maybe&confirm=acme"} {
			before := len(v.audit("flagged=true").Records)
			if st := v.request(method, url+query, "Bearer "+globex, nil, `{}`); st != 403 {
				t.Errorf("%s %s%s with globex's token = %d, want 403", method, url, query, st)
			}
			recs := v.audit("flagged=true").Records[before:]
			if len(recs) != 1 || recs[0].Tenant != "acme" || recs[0].Principal != "tenant:globex" || recs[0].Reason != "token tenant differs from path tenant" {
				t.Errorf("%s %s%s with globex's token: flagged records %+v, want one token_tenant_mismatch on acme", method, url, query, recs)
			}
		}
		if strings.Contains(path, "/streams") || strings.Contains(path, "/quarantine") || strings.HasSuffix(path, "/search") {
			continue // acme's own data: allowed
		}
		before := len(v.audit("flagged=true").Records)
		if st := v.request(method, url, "Bearer "+acme, nil, `{}`); st != 403 {
			t.Errorf("%s %s with acme's own token = %d, want 403 (admin only)", method, url, st)
		}
		if n := len(v.audit("flagged=true").Records) - before; n != 0 {
			t.Errorf("%s %s with acme's own token raised %d flags, want 0", method, url, n)
		}
	}
	if tenantRoutes < 9 {
		t.Fatalf("%d routes name a tenant, want at least 9: the route table is not what the test expects", tenantRoutes)
	}
}
