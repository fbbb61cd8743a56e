package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{events.EINVALID, http.StatusBadRequest},
		{events.EUNAUTHORIZED, http.StatusUnauthorized},
		{events.EFORBIDDEN, http.StatusForbidden},
		{events.ENOTFOUND, http.StatusNotFound},
		{events.ECONFLICT, http.StatusConflict},
		{events.EGONE, http.StatusGone},
		{events.ETOOLARGE, http.StatusRequestEntityTooLarge},
		{events.EUNAVAILABLE, http.StatusServiceUnavailable},
		{events.EINTERNAL, http.StatusInternalServerError},
		{"", http.StatusInternalServerError},
		{"no-such-code", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if got := httpapi.StatusOf(tt.code); got != tt.want {
				t.Errorf("StatusOf(%q) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

// errorBody is the only shape of an error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkError fails tb unless r is the error answer of code, in the one
// shape {"error":{"code","message"}}, with WWW-Authenticate exactly on 401.
func checkError(tb testing.TB, r response, code string) {
	tb.Helper()
	if want := httpapi.StatusOf(code); r.status != want {
		tb.Fatalf("status = %d, want %d (%s); body %s", r.status, want, code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type = %q, want application/json", ct)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw) != 1 || len(raw["error"]) != 2 {
		tb.Fatalf("body %s: want exactly {\"error\":{\"code\",\"message\"}} (%v)", r.body, err)
	}
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		tb.Fatalf("body %s: %v", r.body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		tb.Errorf("body %s: want code %q and a message", r.body, code)
	}
	wa := r.header.Get("WWW-Authenticate")
	if code == events.EUNAUTHORIZED && !strings.HasPrefix(wa, "Bearer ") {
		tb.Errorf("WWW-Authenticate = %q on 401, want a Bearer challenge", wa)
	}
	if code != events.EUNAUTHORIZED && wa != "" {
		tb.Errorf("WWW-Authenticate = %q on %d, want none", wa, r.status)
	}
}

func TestErrors(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	globex := api.mustCreateTenant(t, "globex")
	api.ingest(t, "acme",
		[4]string{"order-1", "e-1", "order.placed", `{"total":1}`},
		[4]string{"gone", "e-2", "order.placed", `{"x":1}`},
		[4]string{"gone", "e-3", "order.deleted", ""},
	)
	big := `{"id":"` + strings.Repeat("a", httpapi.MaxBodyBytes) + `"}`
	tests := []struct {
		name    string
		method  string
		path    string
		token   string
		body    string
		headers []string
		code    string
	}{
		{"no token", "GET", "/v1/tenants", "", "", nil, events.EUNAUTHORIZED},
		{"unknown token", "GET", "/v1/tenants", "tvt_nobody", "", nil, events.EUNAUTHORIZED},
		{"basic auth", "GET", "/v1/tenants", "", "", []string{"Authorization", "Basic " + testAdminToken}, events.EUNAUTHORIZED},
		{"no token on tenant data", "GET", "/v1/tenants/acme/streams", "", "", nil, events.EUNAUTHORIZED},
		{"tenant lists tenants", "GET", "/v1/tenants", acme, "", nil, events.EFORBIDDEN},
		{"tenant reads audit", "GET", "/v1/audit", acme, "", nil, events.EFORBIDDEN},
		{"tenant creates tenant", "POST", "/v1/tenants", acme, `{"id":"x1"}`, nil, events.EFORBIDDEN},
		{"duplicate tenant", "POST", "/v1/tenants", testAdminToken, `{"id":"acme"}`, nil, events.ECONFLICT},
		{"invalid tenant id", "POST", "/v1/tenants", testAdminToken, `{"id":"../x"}`, nil, events.EINVALID},
		{"unknown field", "POST", "/v1/tenants", testAdminToken, `{"id":"x1","admin":true}`, nil, events.EINVALID},
		{"empty body", "POST", "/v1/tenants", testAdminToken, ``, nil, events.EINVALID},
		{"not JSON", "POST", "/v1/tenants", testAdminToken, `id=x1`, nil, events.EINVALID},
		{"wrong type", "POST", "/v1/tenants", testAdminToken, `{"id":7}`, nil, events.EINVALID},
		{"body over limit", "POST", "/v1/tenants", testAdminToken, big, nil, events.ETOOLARGE},
		{"unknown route", "GET", "/v2/anything", acme, "", nil, events.ENOTFOUND},
		{"unknown route, no token", "GET", "/", "", "", nil, events.ENOTFOUND},
		{"unknown method", "DELETE", "/v1/tenants", testAdminToken, "", nil, events.ENOTFOUND},
		{"limit 0", "GET", "/v1/tenants/acme/streams?limit=0", acme, "", nil, events.EINVALID},
		{"limit abc", "GET", "/v1/tenants/acme/streams?limit=abc", acme, "", nil, events.EINVALID},
		{"limit 5000", "GET", "/v1/tenants/acme/streams?limit=5000", acme, "", nil, events.EINVALID},
		{"limit -1", "GET", "/v1/tenants/acme/streams?limit=-1", acme, "", nil, events.EINVALID},
		{"limit 1001 on events", "GET", "/v1/tenants/acme/streams/order-1/events?limit=1001", acme, "", nil, events.EINVALID},
		{"after -1", "GET", "/v1/tenants/acme/streams/order-1/events?after=-1", acme, "", nil, events.EINVALID},
		{"after abc", "GET", "/v1/tenants/acme/streams/order-1/events?after=abc", acme, "", nil, events.EINVALID},
		{"quarantine limit 0", "GET", "/v1/tenants/acme/quarantine?limit=0", acme, "", nil, events.EINVALID},
		{"audit limit 0", "GET", "/v1/audit?limit=0", testAdminToken, "", nil, events.EINVALID},
		{"audit after -1", "GET", "/v1/audit?after=-1", testAdminToken, "", nil, events.EINVALID},
		{"audit since", "GET", "/v1/audit?since=yesterday", testAdminToken, "", nil, events.EINVALID},
		{"audit until before since", "GET", "/v1/audit?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", testAdminToken, "", nil, events.EINVALID},
		{"bad stream cursor", "GET", "/v1/tenants/acme/streams?cursor=zz", acme, "", nil, events.EINVALID},
		{"other tenant's token", "GET", "/v1/tenants/globex/streams", acme, "", nil, events.EFORBIDDEN},
		{"other tenant's token on unknown tenant", "GET", "/v1/tenants/nosuch/streams", globex, "", nil, events.EFORBIDDEN},
		{"admin without break-glass", "GET", "/v1/tenants/acme/streams", testAdminToken, "", nil, events.EFORBIDDEN},
		{"admin break-glass on unknown tenant", "GET", "/v1/tenants/nosuch/streams", testAdminToken, "", []string{httpapi.BreakGlassHeader, "t-1"}, events.ENOTFOUND},
		{"invalid tenant in path", "GET", "/v1/tenants/ACME/streams", acme, "", nil, events.EINVALID},
		{"unknown stream", "GET", "/v1/tenants/acme/streams/nope", acme, "", nil, events.ENOTFOUND},
		{"events of unknown stream", "GET", "/v1/tenants/acme/streams/nope/events", acme, "", nil, events.ENOTFOUND},
		{"deleted stream", "GET", "/v1/tenants/acme/streams/gone", acme, "", nil, events.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader(tt.body)
			} else {
				body = strings.NewReader("")
			}
			r := api.do(t, tt.method, tt.path, tt.token, body, tt.headers...)
			checkError(t, r, tt.code)
		})
	}
	// None of the refused creates made a tenant.
	if got := api.v.Tenants(); !slices.Equal(got, []events.TenantID{"acme", "globex"}) {
		t.Errorf("Tenants() = %v, want [acme globex]", got)
	}
}

// A deleted stream answers 404, but its history remains.
func TestDeletedStream(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme",
		[4]string{"gone", "e-1", "order.placed", `{"x":1}`},
		[4]string{"gone", "e-2", "order.deleted", ""},
	)
	checkError(t, api.get(t, "/v1/tenants/acme/streams/gone", acme), events.ENOTFOUND)
	var h struct {
		Events []struct {
			Version uint64 `json:"version"`
			Type    string `json:"type"`
		} `json:"events"`
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/streams/gone/events", acme), http.StatusOK, &h)
	if len(h.Events) != 2 || h.Events[1].Type != "order.deleted" {
		t.Errorf("history of deleted stream = %+v, want 2 events", h.Events)
	}
	var l struct {
		Streams []struct {
			Stream  string `json:"stream"`
			Deleted bool   `json:"deleted"`
		} `json:"streams"`
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/streams", acme), http.StatusOK, &l)
	if len(l.Streams) != 1 || !l.Streams[0].Deleted {
		t.Errorf("streams = %+v, want gone, deleted", l.Streams)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme", [4]string{"s", "e-1", "t", `{}`})
	// One read and one denial, so the counters move.
	if r := api.get(t, "/v1/tenants/acme/streams/s", acme); r.status != http.StatusOK {
		t.Fatalf("GET stream = %d %s", r.status, r.body)
	}
	checkError(t, api.get(t, "/v1/tenants", ""), events.EUNAUTHORIZED)

	var st map[string]string
	mustJSON(t, api.get(t, "/healthz", ""), http.StatusOK, &st)
	if st["status"] != "ok" {
		t.Errorf("/healthz = %v", st)
	}
	mustJSON(t, api.get(t, "/readyz", ""), http.StatusOK, &st)
	if st["status"] != "ready" {
		t.Errorf("/readyz = %v", st)
	}
	api.setNotReady(errors.New("ingest not running"))
	r := api.get(t, "/readyz", "")
	checkError(t, r, events.EUNAVAILABLE)
	if !strings.Contains(string(r.body), "ingest not running") {
		t.Errorf("/readyz body %s does not say why", r.body)
	}
	// Health does not depend on readiness.
	if r := api.get(t, "/healthz", ""); r.status != http.StatusOK {
		t.Errorf("/healthz while not ready = %d", r.status)
	}

	r = api.get(t, "/metrics", testAdminToken)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics = %d %q", r.status, r.header.Get("Content-Type"))
	}
	want := map[string]string{
		"tenantvault_events_applied_total":         "1",
		"tenantvault_events_duplicate_total":       "0",
		"tenantvault_events_quarantined_total":     "0",
		"tenantvault_events_redelivered_total":     "0",
		"tenantvault_unknown_tenant_records_total": "0",
		"tenantvault_ingest_batches_total":         "1",
		"tenantvault_reads_total":                  "1",
		"tenantvault_denied_total":                 "1",
		"tenantvault_test_extra_total":             "7", // registered on Options.Metrics by the test
	}
	for name, v := range want {
		if !strings.Contains(string(r.body), "# TYPE "+name+" counter\n") || !strings.Contains(string(r.body), "\n"+name+" "+v+"\n") {
			t.Errorf("/metrics lacks counter %s = %s:\n%s", name, v, r.body)
		}
	}
}

func TestCreateTenant(t *testing.T) {
	api := MustStartAPI(t)
	var created struct {
		ID      string `json:"id"`
		Created string `json:"created"`
		Topic   string `json:"topic"`
		Token   string `json:"token"`
	}
	mustJSON(t, api.post(t, "/v1/tenants", testAdminToken, `{"id":"acme"}`), http.StatusCreated, &created)
	if created.ID != "acme" || created.Topic != "tenant.acme.events" || created.Created == "" || !strings.HasPrefix(created.Token, "tvt_") {
		t.Fatalf("POST /v1/tenants = %+v", created)
	}
	// The token works on the tenant's data.
	var streams struct {
		Streams    []json.RawMessage `json:"streams"`
		NextCursor *string           `json:"next_cursor"`
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/streams", created.Token), http.StatusOK, &streams)
	if streams.Streams == nil || len(streams.Streams) != 0 || streams.NextCursor == nil || *streams.NextCursor != "" {
		t.Errorf("streams of a new tenant = %+v, want [] and next_cursor \"\"", streams)
	}
	// The list never shows tokens.
	r := api.get(t, "/v1/tenants", testAdminToken)
	var list struct {
		Tenants []map[string]any `json:"tenants"`
	}
	mustJSON(t, r, http.StatusOK, &list)
	if len(list.Tenants) != 1 || list.Tenants[0]["id"] != "acme" || list.Tenants[0]["topic"] != "tenant.acme.events" {
		t.Errorf("GET /v1/tenants = %s", r.body)
	}
	if strings.Contains(string(r.body), created.Token) || strings.Contains(string(r.body), "token") {
		t.Errorf("GET /v1/tenants = %s, shows a token", r.body)
	}
	// The body limit holds just under the limit too.
	pad := strings.Repeat(" ", httpapi.MaxBodyBytes-len(`{"id":"globex"}`)-1)
	mustJSON(t, api.post(t, "/v1/tenants", testAdminToken, `{"id":"globex"}`+pad), http.StatusCreated, &created)
}

func TestStreamsPagination(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	var want []string
	for i := range 7 {
		s := fmt.Sprintf("stream/%d", i)
		want = append(want, s)
		api.ingest(t, "acme", [4]string{s, fmt.Sprintf("e-%d", i), "t", fmt.Sprintf(`{"i":%d}`, i)})
	}
	var got []string
	cursor, pages := "", 0
	for {
		var page struct {
			Streams []struct {
				Stream    string `json:"stream"`
				Version   uint64 `json:"version"`
				UpdatedAt string `json:"updated_at"`
			} `json:"streams"`
			NextCursor string `json:"next_cursor"`
		}
		mustJSON(t, api.get(t, "/v1/tenants/acme/streams?limit=3&cursor="+url.QueryEscape(cursor), acme), http.StatusOK, &page)
		pages++
		if len(page.Streams) > 3 {
			t.Fatalf("page %d has %d streams, want at most 3", pages, len(page.Streams))
		}
		for _, s := range page.Streams {
			if s.Version != 1 || s.UpdatedAt == "" {
				t.Errorf("stream %+v, want version 1 and updated_at", s)
			}
			got = append(got, s.Stream)
		}
		if page.NextCursor == "" {
			break
		}
		if pages > 10 {
			t.Fatalf("pagination does not end: %v", got)
		}
		cursor = page.NextCursor
	}
	if pages != 3 {
		t.Errorf("7 streams by 3 took %d pages, want 3", pages)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("streams over all pages = %v, want %v", got, want)
	}
}

func TestEventsPagination(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	for i := 1; i <= 5; i++ {
		api.ingest(t, "acme", [4]string{"order/1", fmt.Sprintf("e-%d", i), "t", fmt.Sprintf(`{"n":%d}`, i)})
	}
	type page struct {
		Stream string `json:"stream"`
		Events []struct {
			Version uint64          `json:"version"`
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Source  string          `json:"source"`
			Data    json.RawMessage `json:"data"`
			Offset  int64           `json:"offset"`
		} `json:"events"`
		NextAfter *uint64 `json:"next_after"`
	}
	tests := []struct {
		query     string
		versions  []uint64
		nextAfter uint64 // 0: none
	}{
		{"?limit=2", []uint64{1, 2}, 2},
		{"?limit=2&after=2", []uint64{3, 4}, 4},
		{"?limit=2&after=4", []uint64{5}, 0},
		{"?after=5", []uint64{}, 0},
		{"?after=99", []uint64{}, 0},
		{"", []uint64{1, 2, 3, 4, 5}, 0},
		{"?limit=5", []uint64{1, 2, 3, 4, 5}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var p page
			mustJSON(t, api.get(t, "/v1/tenants/acme/streams/order%2F1/events"+tt.query, acme), http.StatusOK, &p)
			if p.Stream != "order/1" || p.Events == nil {
				t.Errorf("page = %+v, want stream order/1 and an events array", p)
			}
			var got []uint64
			for _, e := range p.Events {
				got = append(got, e.Version)
				if e.ID != fmt.Sprintf("e-%d", e.Version) || e.Source != "test" || string(e.Data) != fmt.Sprintf(`{"n":%d}`, e.Version) || e.Offset != int64(e.Version-1) {
					t.Errorf("event %+v does not match version %d", e, e.Version)
				}
			}
			if !slices.Equal(got, tt.versions) && (len(got) != 0 || len(tt.versions) != 0) {
				t.Errorf("GET events%s versions = %v, want %v", tt.query, got, tt.versions)
			}
			switch {
			case tt.nextAfter == 0 && p.NextAfter != nil:
				t.Errorf("GET events%s next_after = %d, want none", tt.query, *p.NextAfter)
			case tt.nextAfter != 0 && (p.NextAfter == nil || *p.NextAfter != tt.nextAfter):
				t.Errorf("GET events%s next_after = %v, want %d", tt.query, p.NextAfter, tt.nextAfter)
			}
		})
	}
	var st struct {
		Stream  string          `json:"stream"`
		Version uint64          `json:"version"`
		Data    json.RawMessage `json:"data"`
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/streams/order%2F1", acme), http.StatusOK, &st)
	if st.Stream != "order/1" || st.Version != 5 || string(st.Data) != `{"n":5}` {
		t.Errorf("GET stream = %+v", st)
	}
}

func TestBreakGlass(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	api.ingest(t, "acme", [4]string{"s", "e-1", "t", `{"a":1}`})
	ctx := context.Background()

	checkError(t, api.get(t, "/v1/tenants/acme/streams/s", testAdminToken), events.EFORBIDDEN)
	r := api.get(t, "/v1/tenants/acme/streams/s", testAdminToken, httpapi.BreakGlassHeader, "incident 42")
	var st struct {
		Data json.RawMessage `json:"data"`
	}
	mustJSON(t, r, http.StatusOK, &st)
	if string(st.Data) != `{"a":1}` {
		t.Errorf("break-glass read = %s", r.body)
	}
	// The tenant's own read is not flagged; both admin attempts are.
	if r := api.get(t, "/v1/tenants/acme/streams/s", acme); r.status != http.StatusOK {
		t.Fatalf("tenant read = %d %s", r.status, r.body)
	}
	flagged, err := api.audit.List(ctx, audit.Filter{Flagged: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(flagged) != 2 {
		t.Fatalf("flagged records = %d, want 2: %+v", len(flagged), flagged)
	}
	if _, code, _ := audit.Classify(flagged[0]); code != audit.ViolationAdminOnTenant {
		t.Errorf("first flagged record = %+v, want %s", flagged[0], audit.ViolationAdminOnTenant)
	}
	if _, code, _ := audit.Classify(flagged[1]); code != audit.ViolationBreakGlass || flagged[1].Details[audit.DetailBreakGlass] != "incident 42" || flagged[1].Outcome != audit.OutcomeOK {
		t.Errorf("second flagged record = %+v, want an ok %s read with its reason", flagged[1], audit.ViolationBreakGlass)
	}

	// The admin reads the audit log over HTTP, filtered and paged.
	var page struct {
		Records   []audit.Record `json:"records"`
		NextAfter *uint64        `json:"next_after"`
	}
	mustJSON(t, api.get(t, "/v1/audit?flagged=true&limit=1", testAdminToken), http.StatusOK, &page)
	if len(page.Records) != 1 || page.NextAfter == nil || *page.NextAfter != flagged[0].Index {
		t.Fatalf("GET /v1/audit?flagged=true&limit=1 = %+v", page)
	}
	after := *page.NextAfter
	page.Records, page.NextAfter = nil, nil
	mustJSON(t, api.get(t, fmt.Sprintf("/v1/audit?flagged=true&limit=1&after=%d", after), testAdminToken), http.StatusOK, &page)
	if len(page.Records) != 1 || page.Records[0].Index != flagged[1].Index {
		t.Errorf("second audit page = %+v, want record %d", page, flagged[1].Index)
	}
	page.Records, page.NextAfter = nil, nil
	mustJSON(t, api.get(t, "/v1/audit?tenant=acme&action=stream.read", testAdminToken), http.StatusOK, &page)
	if len(page.Records) != 3 || page.NextAfter != nil {
		t.Errorf("GET /v1/audit?tenant=acme&action=stream.read = %d records, next %v, want 3, none", len(page.Records), page.NextAfter)
	}

	// The alerts view lists the same two violations, admin only.
	var al struct {
		Alerts []struct {
			Index     uint64 `json:"index"`
			Violation string `json:"violation"`
			Tenant    string `json:"tenant"`
		} `json:"alerts"`
	}
	mustJSON(t, api.get(t, "/v1/alerts", testAdminToken), http.StatusOK, &al)
	if len(al.Alerts) != 2 || al.Alerts[0].Violation != audit.ViolationAdminOnTenant || al.Alerts[1].Violation != audit.ViolationBreakGlass || al.Alerts[1].Tenant != "acme" {
		t.Errorf("GET /v1/alerts = %+v", al)
	}
	checkError(t, api.get(t, "/v1/alerts", acme), events.EFORBIDDEN)
}

func TestQuarantine(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	topic := events.TopicFor("acme")
	api.ingest(t, "acme", [4]string{"s", "e-1", "t", `{}`})
	if err := api.v.Ingest(context.Background(), topic, []vault.Message{
		{Topic: topic, Offset: 10, Value: []byte("{oops")},
		{Topic: topic, Offset: 11, Value: []byte("{oops again")},
	}); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Quarantine []struct {
			Seq    uint64 `json:"seq"`
			Topic  string `json:"topic"`
			Offset int64  `json:"offset"`
			Code   string `json:"code"`
			Reason string `json:"reason"`
			Raw    []byte `json:"raw"`
		} `json:"quarantine"`
		NextCursor string `json:"next_cursor"`
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/quarantine?limit=1", acme), http.StatusOK, &q)
	if len(q.Quarantine) != 1 || q.Quarantine[0].Offset != 10 || q.Quarantine[0].Code != events.EINVALID || string(q.Quarantine[0].Raw) != "{oops" || q.NextCursor == "" {
		t.Fatalf("quarantine page 1 = %+v", q)
	}
	mustJSON(t, api.get(t, "/v1/tenants/acme/quarantine?limit=1&cursor="+q.NextCursor, acme), http.StatusOK, &q)
	if len(q.Quarantine) != 1 || q.Quarantine[0].Offset != 11 || q.NextCursor != "" {
		t.Errorf("quarantine page 2 = %+v", q)
	}
}
