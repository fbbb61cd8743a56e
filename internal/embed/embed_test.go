package embed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/embed"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestHash(t *testing.T) {
	h := embed.Hash{Dim: 384}
	vs, err := h.Embed(context.Background(), []string{"refund policy for orders", "Refund POLICY, for orders!", "kubernetes pod eviction", ""})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if len(v) != 384 {
			t.Fatalf("vector %d has %d values", i, len(v))
		}
		if n := dot(v, v); n < 0.999 || n > 1.001 {
			t.Errorf("vector %d has squared norm %v, want 1", i, n)
		}
	}
	if s := dot(vs[0], vs[1]); s < 0.999 {
		t.Errorf("same words, other case and punctuation: similarity %v, want 1", s)
	}
	if near, far := dot(vs[0], h.Vector("what is the refund policy")), dot(vs[0], vs[2]); near <= far {
		t.Errorf("similarity of texts sharing words %v <= of unrelated texts %v", near, far)
	}
	if again := h.Vector("refund policy for orders"); fmt.Sprint(again) != fmt.Sprint(vs[0]) {
		t.Error("Hash is not deterministic")
	}
	if _, err := (embed.Hash{}).Embed(context.Background(), []string{"x"}); err == nil {
		t.Error("Hash{Dim: 0}.Embed succeeded")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec, want string
		ok         bool
	}{
		{"", "<nil>", true},
		{"hash:384", "embed.Hash{Dim:384}", true},
		{"hash:0", "", false},
		{"hash:5000", "", false},
		{"hash:x", "", false},
		{"http://127.0.0.1:8000", "embedder http://127.0.0.1:8000/v1/embeddings", true},
		{"https://api.example/v1", "embedder https://api.example/v1/embeddings", true},
		{"https://api.example/v1/embeddings", "embedder https://api.example/v1/embeddings", true},
		{"https://u:p@api.example/v1", "", false},
		{"ftp://x", "", false},
		{"/v1/embeddings", "", false},
	}
	for _, tt := range tests {
		e, err := embed.Parse(tt.spec, "m", "k")
		if (err == nil) != tt.ok {
			t.Errorf("Parse(%q) = %v, want ok %v", tt.spec, err, tt.ok)
			continue
		}
		if err != nil {
			continue
		}
		got := fmt.Sprintf("%#v", e)
		if c, ok := e.(*embed.Client); ok {
			got = c.String()
		}
		if e == nil {
			got = "<nil>"
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.spec, got, tt.want)
		}
	}
}

// fakeEmbedder is an OpenAI-compatible endpoint answering Hash's
// vectors, after failing the first fail calls with status.
func fakeEmbedder(t *testing.T, fail int, status int) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	h := embed.Hash{Dim: 8}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer sk-test" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if int(n) <= fail {
			http.Error(w, "no", status)
			return
		}
		var req struct {
			Model  string   `json:"model"`
			Input  []string `json:"input"`
			Format string   `json:"encoding_format"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &req); err != nil || req.Model != "test-model" || req.Format != "float" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var data []item
		for i := len(req.Input) - 1; i >= 0; i-- { // out of order: the index places them
			data = append(data, item{i, h.Vector(req.Input[i])})
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestClient(t *testing.T) {
	ctx := context.Background()
	texts := []string{"first text SECRET-1", "second text SECRET-2"}
	want := embed.Hash{Dim: 8}
	tests := []struct {
		name      string
		fail      int
		status    int
		ok        bool
		wantCalls int32
	}{
		{"answers", 0, 0, true, 1},
		{"retries a 503", 2, http.StatusServiceUnavailable, true, 3},
		{"retries a 429", 1, http.StatusTooManyRequests, true, 2},
		{"gives up after its retries", 5, http.StatusBadGateway, false, 3},
		{"does not retry a 400", 1, http.StatusBadRequest, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, calls := fakeEmbedder(t, tt.fail, tt.status)
			e, err := embed.Parse(srv.URL, "test-model", "sk-test")
			if err != nil {
				t.Fatal(err)
			}
			c := e.(*embed.Client)
			c.Backoff = time.Millisecond
			vs, err := c.Embed(ctx, texts)
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("%d calls, want %d", got, tt.wantCalls)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("Embed succeeded")
				}
				for _, s := range []string{"SECRET", "sk-test"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q holds %s", err, s)
					}
				}
				if tt.status >= 500 && !errors.Is(err, embed.ErrUnavailable) {
					t.Errorf("error %v is not ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Embed = %v", err)
			}
			for i, v := range vs {
				if fmt.Sprint(v) != fmt.Sprint(want.Vector(texts[i])) {
					t.Errorf("embedding %d = %v, want the endpoint's for text %d", i, v, i)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv, _ := fakeEmbedder(t, 0, 0)
		srv.Close()
		c := &embed.Client{URL: srv.URL + "/v1/embeddings", Backoff: time.Millisecond}
		if _, err := c.Embed(ctx, texts); !errors.Is(err, embed.ErrUnavailable) {
			t.Fatalf("Embed of a closed server = %v, want ErrUnavailable", err)
		}
	})
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name, body string
		n          int
		ok         bool
	}{
		{"two", `{"data":[{"index":1,"embedding":[1,2]},{"index":0,"embedding":[3,4]}]}`, 2, true},
		{"no index", `{"data":[{"embedding":[1]}]}`, 1, true},
		{"count", `{"data":[{"index":0,"embedding":[1]}]}`, 2, false},
		{"repeated index", `{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}`, 2, false},
		{"dimensions differ", `{"data":[{"index":0,"embedding":[1]},{"index":1,"embedding":[1,2]}]}`, 2, false},
		{"empty", `{"data":[{"index":0,"embedding":[]}]}`, 1, false},
		{"out of range", `{"data":[{"index":0,"embedding":[1e300]}]}`, 1, false},
		{"not JSON", `SECRET`, 1, false},
	}
	for _, tt := range tests {
		vs, err := embed.ParseResponse([]byte(tt.body), tt.n)
		if (err == nil) != tt.ok {
			t.Errorf("%s: ParseResponse = %v, %v; want ok %v", tt.name, vs, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: error quotes the body", tt.name)
		}
	}
	vs, _ := embed.ParseResponse([]byte(tests[0].body), 2)
	if vs[0][0] != 3 || vs[1][0] != 1 {
		t.Errorf("ParseResponse placed embeddings by position, not index: %v", vs)
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"data":[{"index":0,"embedding":[0.5,-1]}]}`), 1)
	f.Add([]byte(`{"data":[{"index":1,"embedding":[1]},{"index":0,"embedding":[2]}]}`), 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		vs, err := embed.ParseResponse(b, n)
		if err != nil {
			return
		}
		if len(vs) != n {
			t.Fatalf("%d embeddings for %d", len(vs), n)
		}
		for _, v := range vs {
			if len(v) == 0 || len(v) != len(vs[0]) {
				t.Fatalf("embeddings of dimensions %d and %d", len(v), len(vs[0]))
			}
		}
	})
}

// Hash gives every text the same vector on every machine: what tests and
// vaultbench use instead of a model.
func ExampleHash() {
	h := embed.Hash{Dim: 4}
	fmt.Printf("%.3f\n", h.Vector("refund policy"))
	// Output: [-0.120 0.239 -0.956 0.120]
}
