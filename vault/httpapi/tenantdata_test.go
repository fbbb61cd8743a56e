package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// Every route that reads tenant data records actions the boundary check
// flags for the admin: refused and flagged (admin_on_tenant_data) without a
// break-glass reason, served and flagged (break_glass) with one. An action
// the audit package does not count as tenant data would leave an admin's
// read unflagged, so it fails here (and the session refuses it: 500).
func TestTenantDataRoutesFlagTheAdmin(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme", [4]string{"s", "e-1", "t", `{"a":1}`})
	ctx := context.Background()
	routes := []string{
		"/v1/tenants/acme/streams",
		"/v1/tenants/acme/streams/s",
		"/v1/tenants/acme/streams/s/events",
		"/v1/tenants/acme/quarantine",
	}
	// recordsOf returns the records a request appended, failing unless it
	// appended some.
	recordsOf := func(t *testing.T, path string, before uint64) []audit.Record {
		t.Helper()
		after := before - 1
		f := audit.Filter{Limit: audit.MaxListLimit}
		if before > 0 {
			f.After = &after
		}
		recs, err := api.audit.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Fatalf("GET %s appended no audit record", path)
		}
		return recs
	}
	for _, path := range routes {
		t.Run(path, func(t *testing.T) {
			n := api.audit.Size()
			checkError(t, api.get(t, path, testAdminToken), events.EFORBIDDEN)
			for _, r := range recordsOf(t, path, n) {
				if _, code, _ := audit.Classify(r); code != audit.ViolationAdminOnTenant || !r.Flagged || !r.Action.IsTenantData() {
					t.Errorf("GET %s by the admin without break-glass: record %+v, want flagged %s on a tenant-data action", path, r, audit.ViolationAdminOnTenant)
				}
			}

			n = api.audit.Size()
			if r := api.get(t, path, testAdminToken, httpapi.BreakGlassHeader, "incident 7"); r.status != http.StatusOK {
				t.Fatalf("GET %s by the admin with break-glass = %d %s, want 200", path, r.status, r.body)
			}
			for _, r := range recordsOf(t, path, n) {
				if _, code, _ := audit.Classify(r); code != audit.ViolationBreakGlass || !r.Flagged || !r.Action.IsTenantData() {
					t.Errorf("GET %s by the admin with break-glass: record %+v, want flagged %s on a tenant-data action", path, r, audit.ViolationBreakGlass)
				}
			}

			n = api.audit.Size()
			if r := api.get(t, path, acme); r.status != http.StatusOK {
				t.Fatalf("GET %s by the tenant = %d %s, want 200", path, r.status, r.body)
			}
			for _, r := range recordsOf(t, path, n) {
				if r.Flagged || !r.Action.IsTenantData() {
					t.Errorf("GET %s by the tenant: record %+v, want unflagged on a tenant-data action", path, r)
				}
			}
		})
	}
}
