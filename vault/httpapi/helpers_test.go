package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

const testAdminToken = "admin-token-0123456789abcdef"

// nopTopics accepts every topic.
type nopTopics struct{}

func (nopTopics) CreateTopic(context.Context, string, int) error { return nil }

var (
	_ vault.TenantKeys[*keys.TenantCipher] = (*keys.Keystore)(nil)
	_ vault.Cipher                         = (*keys.TenantCipher)(nil)
	_ vault.Topics                         = nopTopics{}
)

// testAPI is the API of a real vault, served by httptest.
type testAPI struct {
	v     *vault.Vault
	audit *audit.Log
	srv   *httptest.Server

	mu         sync.Mutex
	notReady   error
	nextOffset map[string]int64 // next Kafka offset of each topic, for ingest
}

// MustStartAPI serves the API of a new vault on a temporary directory.
func MustStartAPI(tb testing.TB) *testAPI {
	tb.Helper()
	return mustStartAPIWith(tb, nil, nil)
}

// mustStartAPIWith is MustStartAPI with the vault's config and the API's
// options edited (either edit may be nil).
func mustStartAPIWith(tb testing.TB, editVault func(*vault.Config), editOpts func(*httpapi.Options)) *testAPI {
	tb.Helper()
	dir := tb.TempDir()
	discard := slog.New(slog.DiscardHandler)
	ks, err := keys.OpenKeystore(filepath.Join(dir, "keys"), "local://"+filepath.Join(dir, "master.key"), discard)
	if err != nil {
		tb.Fatalf("OpenKeystore: %v", err)
	}
	stores, err := projections.OpenStores(projections.Config{Dir: filepath.Join(dir, "tenants"), NoSync: true, Logger: discard})
	if err != nil {
		ks.Close()
		tb.Fatalf("OpenStores: %v", err)
	}
	al, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "audit"), Logger: discard})
	if err != nil {
		stores.Close()
		ks.Close()
		tb.Fatalf("audit.Open: %v", err)
	}
	api := &testAPI{audit: al}
	tb.Cleanup(func() {
		if api.srv != nil {
			api.srv.Close() // first: no request holds a store after this
		}
		var verr error
		if api.v != nil {
			verr = api.v.Close() // before the audit log: it writes the open aggregates
		}
		if err := errors.Join(verr, stores.Close(), al.Close(), ks.Close()); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	cfg := vault.Config{DataDir: dir, Keys: vault.KeysOf(ks), Stores: stores, Audit: al, Topics: nopTopics{}, AdminToken: testAdminToken, Logger: discard}
	if editVault != nil {
		editVault(&cfg)
	}
	api.v, err = vault.Open(cfg)
	if err != nil {
		tb.Fatalf("vault.Open: %v", err)
	}
	extra := func(w io.Writer) error {
		_, err := io.WriteString(w, "# TYPE test_extra_total counter\ntest_extra_total 7\n")
		return err
	}
	opts := httpapi.Options{Ready: api.ready, Logger: discard, Metrics: []func(io.Writer) error{extra}}
	if editOpts != nil {
		editOpts(&opts)
	}
	api.srv = httptest.NewServer(httpapi.New(api.v, opts))
	return api
}

func (a *testAPI) ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.notReady
}

func (a *testAPI) setNotReady(err error) {
	a.mu.Lock()
	a.notReady = err
	a.mu.Unlock()
}

// mustCreateTenant creates tenant id through the vault and returns its token.
func (a *testAPI) mustCreateTenant(tb testing.TB, id string) string {
	tb.Helper()
	p, err := a.v.Authenticate(context.Background(), testAdminToken, "test", "test")
	if err != nil {
		tb.Fatal(err)
	}
	_, tok, err := a.v.CreateTenant(context.Background(), p, id)
	if err != nil {
		tb.Fatalf("CreateTenant(%q): %v", id, err)
	}
	return tok
}

// ingest applies events to tenant t: each is {stream, id, type, data}.
func (a *testAPI) ingest(tb testing.TB, t string, evs ...[4]string) {
	tb.Helper()
	topic := events.TopicFor(events.TenantID(t))
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.nextOffset[topic]
	msgs := make([]vault.Message, len(evs))
	for i, e := range evs {
		attrs := map[string]any{"specversion": "1.0", "id": e[1], "source": "test", "type": e[2], "subject": e[0]}
		if e[3] != "" {
			attrs["data"] = json.RawMessage(e[3])
		}
		b, err := json.Marshal(attrs)
		if err != nil {
			tb.Fatal(err)
		}
		msgs[i] = vault.Message{Topic: topic, Offset: st + int64(i), Key: []byte(e[0]), Value: b}
	}
	if err := a.v.Ingest(context.Background(), topic, msgs); err != nil {
		tb.Fatalf("Ingest: %v", err)
	}
	if a.nextOffset == nil {
		a.nextOffset = map[string]int64{}
	}
	a.nextOffset[topic] = st + int64(len(evs))
}

// response is an answer of the API.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with token (if any) and extra headers.
func (a *testAPI) do(tb testing.TB, method, path, token string, body io.Reader, header ...string) response {
	tb.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (a *testAPI) get(tb testing.TB, path, token string, header ...string) response {
	tb.Helper()
	return a.do(tb, http.MethodGet, path, token, nil, header...)
}

func (a *testAPI) post(tb testing.TB, path, token, body string) response {
	tb.Helper()
	return a.do(tb, http.MethodPost, path, token, bytes.NewBufferString(body))
}

// mustJSON decodes r's body into v, failing tb unless the status is want.
func mustJSON(tb testing.TB, r response, want int, v any) {
	tb.Helper()
	if r.status != want {
		tb.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		tb.Fatalf("body %s: %v", r.body, err)
	}
}
