package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/alerts"
	"github.com/tenantvault/tenantvault/internal/server"
	"github.com/tenantvault/tenantvault/projections"
)

// webhook collects the alerts POSTed to it.
type webhook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	alerts []alerts.Alert
	at     []time.Time
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var a alerts.Alert
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &a); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		w.mu.Lock()
		w.alerts = append(w.alerts, a)
		w.at = append(w.at, time.Now())
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.alerts)
}

func (w *webhook) last() alerts.Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.alerts[len(w.alerts)-1]
}

func startWithWebhook(t *testing.T, dir, hook string) *vault {
	t.Helper()
	v := &vault{tb: t, dataDir: dir, done: make(chan error, 1)}
	v.srv = &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MaxEventBytes: maxEventBytes, AlertWebhook: hook}}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	if err := v.srv.Open(ctx); err != nil {
		cancel()
		t.Fatalf("Open: %v", err)
	}
	go func() { v.done <- v.srv.Run(ctx) }()
	v.base = "http://" + v.srv.HTTPAddr()
	t.Cleanup(v.stop)
	return v
}

// request sends one request with an Authorization header as given.
func (v *vault) request(method, path, auth string, header map[string]string, body string) int {
	v.tb.Helper()
	req, _ := http.NewRequest(method, v.base+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.tb.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (v *vault) metric(name string) string {
	req, err := http.NewRequest(http.MethodGet, v.base+"/metrics", nil)
	if err != nil {
		v.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+v.srv.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return "0"
}

// TestCrossTenantMatrix sends every endpoint every kind of credential and
// checks the status, and that every boundary crossing gives exactly one
// flagged audit record, one webhook alert, and one counter increment.
func TestCrossTenantMatrix(t *testing.T) {
	hook := newWebhook(t)
	v := startWithWebhook(t, t.TempDir(), hook.srv.URL)
	acme, globex := v.createTenant("acme"), v.createTenant("globex")
	v.publish("tenant.acme.events", rec("o-1", event("m1", "o-1", "order.placed", `{"n":1}`)))
	v.waitVersion("acme", acme, "o-1", 1)
	admin := v.srv.AdminToken()

	type cred struct {
		name, auth string
		header     map[string]string
	}
	creds := []cred{
		{"own", "Bearer " + acme, nil},
		{"other", "Bearer " + globex, nil},
		{"admin", "Bearer " + admin, nil},
		{"admin+break-glass", "Bearer " + admin, map[string]string{"X-Tenantvault-Break-Glass": "INC-42 customer asked"}},
		{"none", "", nil},
		{"malformed", "Basic dXNlcjpwYXNz", nil},
		{"unknown", "Bearer tvt_forged", nil},
	}
	tenantEndpoints := []string{"/v1/tenants/acme/streams", "/v1/tenants/acme/streams/o-1", "/v1/tenants/acme/streams/o-1/events", "/v1/tenants/acme/quarantine"}
	// want: status, and the violation a crossing must raise ("" = none).
	tenantWant := map[string]struct {
		status    int
		violation string
	}{
		"own": {200, ""}, "other": {403, audit.ViolationTokenTenant}, "admin": {403, audit.ViolationAdminOnTenant},
		"admin+break-glass": {200, audit.ViolationBreakGlass}, "none": {401, ""}, "malformed": {401, ""}, "unknown": {401, ""},
	}
	adminEndpoints := []struct{ method, path, body string }{
		{"GET", "/v1/tenants", ""}, {"GET", "/v1/audit", ""}, {"GET", "/v1/alerts", ""}, {"POST", "/v1/tenants", `{"id":"%s"}`},
	}
	adminWant := map[string]int{"own": 403, "other": 403, "admin": 200, "admin+break-glass": 200, "none": 401, "malformed": 401, "unknown": 401}

	flagged := func() int { return len(v.audit("flagged=true").Records) }
	var maxLatency time.Duration
	n := 0
	for _, c := range creds {
		for _, ep := range tenantEndpoints {
			want := tenantWant[c.name]
			beforeFlagged, beforeHooks := flagged(), hook.count()
			beforeCounter := v.metric(fmt.Sprintf(`tenantvault_boundary_violations_total{reason=%q,tenant="acme"}`, want.violation))
			sent := time.Now()
			if st := v.request("GET", ep, c.auth, c.header, ""); st != want.status {
				t.Errorf("GET %s with %s credential = %d, want %d", ep, c.name, st, want.status)
			}
			wantNew := 0
			if want.violation != "" {
				wantNew = 1
			}
			if got := flagged() - beforeFlagged; got != wantNew {
				t.Errorf("GET %s with %s credential: %d new flagged records, want %d", ep, c.name, got, wantNew)
			}
			if wantNew == 0 {
				continue
			}
			deadline := time.Now().Add(5 * time.Second)
			for hook.count() < beforeHooks+1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			maxLatency = max(maxLatency, time.Since(sent))
			if got := hook.count() - beforeHooks; got != 1 {
				t.Fatalf("GET %s with %s credential: %d webhook alerts, want 1", ep, c.name, got)
			}
			if a := hook.last(); a.Violation != want.violation || a.Tenant != "acme" {
				t.Errorf("alert = %+v, want violation %s on acme", a, want.violation)
			}
			after := v.metric(fmt.Sprintf(`tenantvault_boundary_violations_total{reason=%q,tenant="acme"}`, want.violation))
			var b, a int
			fmt.Sscan(beforeCounter, &b)
			fmt.Sscan(after, &a)
			if a != b+1 {
				t.Errorf("counter %s: %d → %d, want +1", want.violation, b, a)
			}
			n++
		}
		for i, ep := range adminEndpoints {
			body := ep.body
			if body != "" {
				body = fmt.Sprintf(body, fmt.Sprintf("t-%d-%d", len(c.name), i))
			}
			want := adminWant[c.name]
			if ep.method == "POST" && want == 200 {
				want = 201
				body = fmt.Sprintf(`{"id":"new-%s"}`, strings.ReplaceAll(c.name, "+", "-"))
			}
			before := flagged()
			if st := v.request(ep.method, ep.path, c.auth, c.header, body); st != want {
				t.Errorf("%s %s with %s credential = %d, want %d", ep.method, ep.path, c.name, st, want)
			}
			if got := flagged() - before; got != 0 {
				t.Errorf("%s %s with %s credential raised %d flags, want 0 (not a boundary crossing)", ep.method, ep.path, c.name, got)
			}
		}
	}
	t.Logf("%d crossings; slowest alert reached the webhook %v after the request was sent", n, maxLatency)

	// The Kafka alert topic got the same alerts.
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.brokers()...), kgoAuth(v.srv.KafkaAuth()), kgo.ConsumeTopics("vault.alerts"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for got < hook.count() && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var a alerts.Alert
			if json.Unmarshal(r.Value, &a) == nil && a.Violation != "" {
				got++
			}
		})
	}
	if got != hook.count() {
		t.Fatalf("vault.alerts holds %d alerts, the webhook got %d", got, hook.count())
	}
}

// TestForeignCiphertext copies a sealed record out of globex's store into
// acme's, exactly as an attacker with disk access would: reading it while
// serving acme is refused, flagged, and alerted, naming globex as the key's
// owner.
func TestForeignCiphertext(t *testing.T) {
	dir := t.TempDir()
	hook := newWebhook(t)
	v := startWithWebhook(t, dir, hook.srv.URL)
	acme, globex := v.createTenant("acme"), v.createTenant("globex")
	v.publish("tenant.acme.events", rec("a-1", event("x1", "a-1", "t.created", `{"who":"acme"}`)))
	v.publish("tenant.globex.events", rec("g-1", event("y1", "g-1", "t.created", `{"who":"globex"}`)))
	v.waitVersion("acme", acme, "a-1", 1)
	v.waitVersion("globex", globex, "g-1", 1)
	v.stop()

	open := func(tenant string) *badger.DB {
		db, err := badger.Open(projections.Config{Dir: dir}.BadgerOptionsFor(filepath.Join(dir, "tenants", tenant)))
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	firstState := func(db *badger.DB) (k, val []byte) {
		db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("s/")})
			defer it.Close()
			it.Rewind()
			if it.Valid() {
				k = it.Item().KeyCopy(nil)
				val, _ = it.Item().ValueCopy(nil)
			}
			return nil
		})
		return
	}
	gdb := open("globex")
	_, stolen := firstState(gdb)
	gdb.Close()
	adb := open("acme")
	key, _ := firstState(adb)
	if key == nil || stolen == nil {
		t.Fatal("no state rows found to copy")
	}
	if err := adb.Update(func(txn *badger.Txn) error { return txn.Set(key, stolen) }); err != nil {
		t.Fatal(err)
	}
	adb.Close()

	v = startWithWebhook(t, dir, hook.srv.URL)
	var body map[string]map[string]string
	if st := v.do("GET", "/v1/tenants/acme/streams/a-1", acme, nil, &body); st != 403 || body["error"]["code"] != "forbidden" {
		t.Fatalf("read of a record sealed under globex's key = %d %v, want 403 forbidden", st, body)
	}
	if strings.Contains(fmt.Sprint(body), "globex") {
		t.Fatalf("the error names the other tenant: %v", body)
	}
	recs := v.audit("flagged=true&tenant=acme").Records
	last := recs[len(recs)-1]
	if last.Action != "stream.read" || last.Details[audit.DetailKeyOwner] != "globex" || last.Reason != "ciphertext sealed under another tenant's key" {
		t.Fatalf("flagged record = %+v", last)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hook.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if hook.count() != 1 || hook.last().Violation != audit.ViolationForeignKey {
		t.Fatalf("webhook alerts = %d (last %+v), want one foreign_key alert", hook.count(), hook.last())
	}
}
