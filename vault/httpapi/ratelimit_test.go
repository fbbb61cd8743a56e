package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// listSince lists the audit records appended after the log held n.
func (a *testAPI) listSince(tb testing.TB, n uint64) []audit.Record {
	tb.Helper()
	f := audit.Filter{Limit: audit.MaxListLimit}
	if n > 0 {
		after := n - 1
		f.After = &after
	}
	recs, err := a.audit.List(context.Background(), f)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// 2000 wrong tokens in a loop from one client: 401 up to the limit, 429
// with Retry-After past it, and a bounded number of audit records whose
// counts add up to 2000.
func TestWrongTokenFlood(t *testing.T) {
	const flood, limit = 2000, 100
	api := mustStartAPIWith(t, func(c *vault.Config) { c.AggregateInterval = time.Hour },
		func(o *httpapi.Options) { o.AuthFailureLimit = limit; o.AuthFailureInterval = time.Hour })
	api.mustCreateTenant(t, "acme")
	n := api.audit.Size()
	statuses := map[int]int{}
	for i := range flood {
		r := api.get(t, "/v1/tenants/acme/streams", fmt.Sprintf("tvt_wrong-%d", i))
		statuses[r.status]++
		if r.status == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 with Retry-After %q, want a number of seconds", r.header.Get("Retry-After"))
			}
		}
	}
	if statuses[http.StatusUnauthorized] != limit || statuses[http.StatusTooManyRequests] != flood-limit {
		t.Errorf("statuses = %v, want %d × 401 then %d × 429", statuses, limit, flood-limit)
	}
	if err := api.v.Close(); err != nil {
		t.Fatal(err)
	}
	recs := api.listSince(t, n)
	total := 0
	for _, r := range recs {
		total += audit.Occurrences(r)
		if r.Principal != audit.PrincipalAnonymous || r.Outcome != audit.OutcomeDenied || r.Details[audit.DetailSource] != "127.0.0.1" {
			t.Errorf("record %+v, want an anonymous denial from 127.0.0.1", r)
		}
	}
	if len(recs) > 4 || total != flood {
		t.Errorf("%d audit records standing for %d requests, want at most 4 (first and aggregate of the failures, and of the refusals) for %d", len(recs), total, flood)
	}
}

// Among wrong tokens from one client, every crossing of a valid token is
// still its own flagged record: flagged records are never aggregated.
func TestCrossingsAmongWrongTokensStayFlagged(t *testing.T) {
	api := mustStartAPIWith(t, func(c *vault.Config) { c.AggregateInterval = time.Hour }, nil)
	acme := api.mustCreateTenant(t, "acme")
	api.mustCreateTenant(t, "globex")
	n := api.audit.Size()
	const rounds = 40
	for range rounds {
		if r := api.get(t, "/v1/tenants/globex/streams", "tvt_wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong token: status %d, want 401", r.status)
		}
		if r := api.get(t, "/v1/tenants/globex/streams", acme); r.status != http.StatusForbidden {
			t.Fatalf("acme's token on globex: status %d, want 403", r.status)
		}
	}
	flagged := 0
	for _, r := range api.listSince(t, n) {
		if r.Flagged {
			flagged++
			if _, code, _ := audit.Classify(r); code != audit.ViolationTokenTenant || audit.Occurrences(r) != 1 {
				t.Errorf("flagged record %+v, want a token_tenant_mismatch of its own", r)
			}
		}
	}
	if flagged != rounds {
		t.Errorf("%d flagged records, want %d", flagged, rounds)
	}
}

// A 401's audit record names the tenant the path probed: a tenant of the
// vault by its id, a made-up one by its keyed hash, never by its name.
func TestUnauthorizedKeepsProbedTenant(t *testing.T) {
	api := mustStartAPIWith(t, func(c *vault.Config) { c.AggregateInterval = -1 }, nil)
	api.mustCreateTenant(t, "acme")
	for _, tc := range []struct{ path, want string }{
		{"/v1/tenants/acme/streams", "acme"},
		{"/v1/tenants/zz-made-up/streams", vault.KeyedHashPrefix},
		{"/v1/tenants", ""},
	} {
		n := api.audit.Size()
		if r := api.get(t, tc.path, "tvt_wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("GET %s with a wrong token = %d, want 401", tc.path, r.status)
		}
		recs := api.listSince(t, n)
		if len(recs) != 1 {
			t.Fatalf("GET %s: %d audit records, want 1", tc.path, len(recs))
		}
		got := recs[0].Tenant
		switch {
		case tc.want == "" && got != "",
			tc.want == vault.KeyedHashPrefix && (!strings.Contains(got, vault.KeyedHashPrefix) || strings.Contains(got, "made-up")),
			tc.want != "" && tc.want != vault.KeyedHashPrefix && got != tc.want:
			t.Errorf("GET %s with a wrong token: audit record's tenant %q, want %q", tc.path, got, tc.want)
		}
	}
}
