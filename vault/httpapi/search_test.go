package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/embed"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

func vecJSON(v []float32) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// POST /v1/tenants/{t}/search answers ids, scores, texts and attributes —
// never a vector — and every refusal is a 4xx with an audit record.
func TestSearchEndpoint(t *testing.T) {
	h := embed.Hash{Dim: 8}
	api := mustStartAPIWith(t, func(c *vault.Config) { c.Embedder = h }, nil)
	acme := api.mustCreateTenant(t, "acme")
	globex := api.mustCreateTenant(t, "globex")
	doc := func(text string, attrs string) string {
		return fmt.Sprintf(`{"text":%q,"embedding":%s,"attributes":%s}`, text, vecJSON(h.Vector(text)), attrs)
	}
	api.ingest(t, "acme",
		[4]string{"kb-refunds", "d1", "kb.document", doc("refunds take 14 days", `{"lang":"en"}`)},
		[4]string{"kb-shipping", "d2", "kb.document", doc("shipping is free", `{"lang":"de"}`)},
	)
	api.ingest(t, "globex", [4]string{"kb-globex", "g1", "kb.document", doc("refunds take 14 days", `{"lang":"en"}`)})

	var got struct {
		Results []map[string]any `json:"results"`
		K       int              `json:"k"`
	}
	mustJSON(t, api.post(t, "/v1/tenants/acme/search", acme, `{"text":"how long do refunds take","k":1}`), http.StatusOK, &got)
	if len(got.Results) != 1 || got.Results[0]["id"] != "kb-refunds" || got.Results[0]["text"] != "refunds take 14 days" || got.K != 1 {
		t.Fatalf("search = %+v", got)
	}
	for k := range got.Results[0] {
		if k != "id" && k != "score" && k != "text" && k != "attributes" {
			t.Errorf("a result has member %q", k)
		}
	}
	mustJSON(t, api.post(t, "/v1/tenants/acme/search", acme, `{"vector":`+vecJSON(h.Vector("free shipping"))+`,"filter":{"lang":"de"}}`), http.StatusOK, &got)
	if len(got.Results) != 1 || got.Results[0]["id"] != "kb-shipping" || got.K != events.DefaultSearchK {
		t.Fatalf("search with filter = %+v", got)
	}

	for _, tt := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"not JSON", `{"vector":`, 400, events.ReasonSearchInvalid},
		{"unknown member", `{"vector":[1],"tenant":"globex"}`, 400, events.ReasonSearchInvalid},
		{"empty", `{}`, 400, events.ReasonSearchInvalid},
		{"k too large", `{"text":"x","k":101}`, 400, events.ReasonSearchKInvalid},
		{"k negative", `{"text":"x","k":-1}`, 400, events.ReasonSearchKInvalid},
		{"dimension", `{"vector":[1,2,3]}`, 400, events.ReasonEmbeddingDimension},
		{"vector too long", `{"vector":[` + strings.Repeat("1,", events.MaxEmbeddingDim) + `1]}`, 400, events.ReasonEmbeddingInvalid},
		{"filter of an object", `{"text":"x","filter":{"a":{"b":1}}}`, 400, events.ReasonSearchInvalid},
		{"body too large", `{"text":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `"}`, 413, events.ETOOLARGE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := api.audit.Size()
			r := api.post(t, "/v1/tenants/acme/search", acme, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			recs := recordsAfter(t, api, n)
			if len(recs) != 1 || recs[0].Action != audit.ActionSearch || recs[0].Outcome != audit.OutcomeRejected || recs[0].Reason != tt.reason {
				t.Fatalf("audit records %+v, want one rejected search with reason %s", recs, tt.reason)
			}
		})
	}

	// Another tenant's credential: 403 and flagged, whatever the body.
	n := api.audit.Size()
	checkError(t, api.post(t, "/v1/tenants/acme/search", globex, `{"text":"refunds"}`), events.EFORBIDDEN)
	recs := recordsAfter(t, api, n)
	if len(recs) != 1 || !recs[0].Flagged || recs[0].Principal != "tenant:globex" || recs[0].Tenant != "acme" {
		t.Fatalf("audit records %+v, want one flagged crossing", recs)
	}
	// The admin: only with break-glass, flagged.
	checkError(t, api.post(t, "/v1/tenants/acme/search", testAdminToken, `{"text":"refunds"}`), events.EFORBIDDEN)
	r := api.do(t, http.MethodPost, "/v1/tenants/acme/search", testAdminToken, strings.NewReader(`{"text":"refunds"}`), httpapi.BreakGlassHeader, "INC-9")
	if r.status != 200 {
		t.Fatalf("admin break-glass search = %d %s", r.status, r.body)
	}

	// After the shred: 410.
	if _, err := api.v.Shred(context.Background(), api.h.Admin(t), "acme", "acme"); err != nil {
		t.Fatal(err)
	}
	checkError(t, api.post(t, "/v1/tenants/acme/search", acme, `{"text":"refunds"}`), events.EGONE)
}

func recordsAfter(t *testing.T, api *testAPI, n uint64) []audit.Record {
	t.Helper()
	f := audit.Filter{Limit: audit.MaxListLimit}
	if n > 0 {
		after := n - 1
		f.After = &after
	}
	recs, err := api.audit.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
