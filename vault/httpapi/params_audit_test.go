package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// TestBadParamsAudited: a tenant's own request with a bad query parameter
// is 400 and leaves one audit record, a rejection named by its reason code
// (param_invalid), never holding the parameter's value.
func TestBadParamsAudited(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	const marker = "MARKER-param"
	for _, tc := range []struct {
		path   string
		action audit.Action
	}{
		{"/v1/tenants/acme/streams?limit=0", audit.ActionStreamList},
		{"/v1/tenants/acme/streams?limit=" + marker, audit.ActionStreamList},
		{"/v1/tenants/acme/streams/order-1/events?after=-1", audit.ActionEventsRead},
		{"/v1/tenants/acme/streams/order-1/events?after=" + marker, audit.ActionEventsRead},
		{"/v1/tenants/acme/streams/order-1/events?limit=1001", audit.ActionEventsRead},
		{"/v1/tenants/acme/quarantine?limit=0", audit.ActionQuarantineRead},
	} {
		t.Run(tc.path, func(t *testing.T) {
			n := api.audit.Size()
			resp := api.get(t, tc.path, acme)
			if resp.status != http.StatusBadRequest {
				t.Fatalf("GET %s = %d, want 400", tc.path, resp.status)
			}
			recs := api.listSince(t, n)
			var got []audit.Record
			for _, r := range recs {
				if r.Index >= n {
					got = append(got, r)
				}
			}
			if len(got) != 1 {
				t.Fatalf("GET %s left %d audit records, want 1: %+v", tc.path, len(got), got)
			}
			r := got[0]
			if r.Action != tc.action || r.Tenant != "acme" || r.Principal != "tenant:acme" || r.Outcome != audit.OutcomeRejected || r.Reason != events.ReasonParamInvalid || r.Flagged {
				t.Errorf("audit record = %+v, want %s by tenant:acme on acme, rejected %s, unflagged", r, tc.action, events.ReasonParamInvalid)
			}
			if strings.Contains(r.Resource+r.Reason, marker) {
				t.Errorf("audit record %+v holds the parameter", r)
			}
		})
	}
}
