package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/metrics"
	"github.com/tenantvault/tenantvault/internal/vaulttest"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

const testAdminToken = vaulttest.AdminToken

// testAPI is the API of a real vault, served by httptest.
type testAPI struct {
	h     *vaulttest.Harness
	v     *vault.Vault // h.Vault
	audit *audit.Log   // h.Audit
	srv   *httptest.Server
	// metrics is the registry the API is given.
	metrics *metrics.Registry

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
	var opts []vaulttest.Option
	if editVault != nil {
		opts = append(opts, vaulttest.Config(editVault))
	}
	h := vaulttest.MustOpen(tb, opts...)
	api := &testAPI{h: h, v: h.Vault, audit: h.Audit}
	api.metrics = metrics.New(metrics.Config{Known: api.v.Exists})
	api.metrics.CounterFunc("test_extra_total", "A counter registered besides the API's.", func() float64 { return 7 })
	o := httpapi.Options{Ready: api.ready, Logger: slog.New(slog.DiscardHandler), Metrics: api.metrics}
	if editOpts != nil {
		editOpts(&o)
	}
	api.srv = httptest.NewServer(httpapi.New(api.v, o))
	// Registered after the harness's cleanup, so it runs first: no request
	// holds a store once the vault closes.
	tb.Cleanup(api.srv.Close)
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
	return a.h.MustCreateTenant(tb, id)
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
