package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// docEvent is a document event of stream with text, embedding and
// attributes (nil: none).
func docEvent(id, stream, text string, emb []float32, attrs map[string]any) *events.Event {
	d := map[string]any{"text": text}
	if emb != nil {
		d["embedding"] = emb
	}
	if attrs != nil {
		d["attributes"] = attrs
	}
	b, _ := json.Marshal(d)
	e := newEvent(id, stream, string(b))
	e.Type = "kb.document"
	return e
}

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func ids(hits []Hit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.ID)
	}
	return out
}

func mustSearch(tb testing.TB, st *Store, c Cipher, q SearchQuery) []Hit {
	tb.Helper()
	hits, err := st.Search(c, q)
	if err != nil {
		tb.Fatalf("Search(k=%d, filter %v) = %v", q.K, q.Filter, err)
	}
	return hits
}

func TestIndexApplyAndSearch(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	res := MustApply(t, st, c, []Record{
		rec(0, 0, docEvent("d1", "doc-x", "about x", []float32{1, 0, 0}, map[string]any{"lang": "en", "year": 2024})),
		rec(0, 1, docEvent("d2", "doc-y", "about y", []float32{0, 1, 0}, map[string]any{"lang": "de"})),
		rec(0, 2, docEvent("d3", "doc-xy", "about x and y", []float32{1, 1, 0}, map[string]any{"lang": "en"})),
		rec(0, 3, docEvent("d4", "doc-bad-dim", "four", []float32{1, 0, 0, 0}, nil)),
		rec(0, 4, docEvent("d5", "doc-no-emb", "none", nil, nil)),
		rec(0, 5, newEvent("e6", "cust-1", `{"name":"not a document"}`)),
	})
	if res.Applied != 4 || res.Quarantined != 2 {
		t.Fatalf("Apply = %+v, want 4 applied, 2 quarantined", res)
	}
	q, _, err := st.Quarantine(c, "", 0)
	if err != nil || len(q) != 2 {
		t.Fatalf("Quarantine = %v, %v", q, err)
	}
	if !strings.Contains(q[0].Reason, "4 values, the tenant's documents 3") || !strings.Contains(q[1].Reason, "no data.embedding") {
		t.Errorf("quarantine reasons = %q, %q", q[0].Reason, q[1].Reason)
	}
	if st.IndexStats().Loaded {
		t.Fatal("index loaded before the first search")
	}

	tests := []struct {
		name   string
		q      SearchQuery
		want   []string
		reason string
	}{
		{"nearest", SearchQuery{Vector: []float32{1, 0.1, 0}, K: 2}, []string{"doc-x", "doc-xy"}, ""},
		{"all", SearchQuery{Vector: []float32{0, 1, 0}, K: 10}, []string{"doc-y", "doc-xy", "doc-x"}, ""},
		{"filter", SearchQuery{Vector: []float32{0, 1, 0}, K: 10, Filter: map[string]string{"lang": "en"}}, []string{"doc-xy", "doc-x"}, ""},
		{"filter two terms", SearchQuery{Vector: []float32{0, 1, 0}, K: 10, Filter: map[string]string{"lang": "en", "year": "2024"}}, []string{"doc-x"}, ""},
		{"filter matches none", SearchQuery{Vector: []float32{0, 1, 0}, K: 10, Filter: map[string]string{"lang": "fr"}}, nil, ""},
		{"k 0", SearchQuery{Vector: []float32{1, 0, 0}, K: 0}, nil, events.ReasonSearchKInvalid},
		{"k too large", SearchQuery{Vector: []float32{1, 0, 0}, K: events.MaxSearchK + 1}, nil, events.ReasonSearchKInvalid},
		{"other dimension", SearchQuery{Vector: []float32{1, 0}, K: 3}, nil, events.ReasonEmbeddingDimension},
		{"zero vector", SearchQuery{Vector: []float32{0, 0, 0}, K: 3}, nil, events.ReasonEmbeddingInvalid},
		{"NaN", SearchQuery{Vector: []float32{float32(math.NaN()), 0, 0}, K: 3}, nil, events.ReasonEmbeddingInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits, err := st.Search(c, tt.q)
			if got := events.ErrorReason(err); got != tt.reason {
				t.Fatalf("Search = %v, want reason %q", err, tt.reason)
			}
			if got := ids(hits); !slices.Equal(got, tt.want) {
				t.Errorf("Search = %v, want %v", got, tt.want)
			}
			for i := 1; i < len(hits); i++ {
				if hits[i].Score > hits[i-1].Score {
					t.Errorf("hits not best first: %+v", hits)
				}
			}
		})
	}
	hits := mustSearch(t, st, c, SearchQuery{Vector: []float32{1, 0, 0}, K: 1})
	if h := hits[0]; h.Text != "about x" || h.Attributes["year"] != "2024" || math.Abs(float64(h.Score)-1) > 1e-6 {
		t.Errorf("top hit = %+v, want doc-x, its text and attributes, score 1", h)
	}
	if is := st.IndexStats(); !is.Loaded || is.Documents != 3 || is.Dimension != 3 || is.Bytes <= 0 {
		t.Errorf("IndexStats = %+v, want loaded, 3 documents of dim 3", is)
	}

	// A new version replaces the document, a delete removes it: in memory
	// and in the store.
	MustApply(t, st, c, []Record{
		rec(0, 6, docEvent("d7", "doc-y", "y moved", []float32{0, 0, 1}, nil)),
		rec(0, 7, func() *events.Event { e := newEvent("d8", "doc-x", ""); e.Type = "kb.document.deleted"; return e }()),
	})
	want := []string{"doc-y", "doc-xy"}
	if got := ids(mustSearch(t, st, c, SearchQuery{Vector: []float32{0, 0.1, 1}, K: 10})); !slices.Equal(got, want) {
		t.Errorf("after replace and delete: Search = %v, want %v", got, want)
	}
	st.dropIndex()
	if got := ids(mustSearch(t, st, c, SearchQuery{Vector: []float32{0, 0.1, 1}, K: 10})); !slices.Equal(got, want) {
		t.Errorf("after reload: Search = %v, want %v", got, want)
	}
}

// The index goes with the store: an evicted store drops its vectors, and
// the store opened again loads them lazily.
func TestIndexEvictedWithStore(t *testing.T) {
	s := MustOpenStores(t, func(c *Config) { c.MaxOpen = 1 })
	c := newTestCipher(t, "acme")
	for _, tn := range []events.TenantID{"acme", "globex"} {
		if err := s.Create(tn); err != nil {
			t.Fatal(err)
		}
	}
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	MustApply(t, st, c, []Record{rec(0, 0, docEvent("d1", "doc-1", "one", []float32{1, 2}, nil))})
	mustSearch(t, st, c, SearchQuery{Vector: []float32{1, 2}, K: 1})
	release()
	_, release2, err := s.Acquire("globex") // evicts acme
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if st.IndexStats().Loaded {
		t.Fatal("evicted store still holds its index")
	}
	st, release, err = s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if st.IndexStats().Loaded {
		t.Fatal("reopened store loaded its index before a search")
	}
	if got := ids(mustSearch(t, st, c, SearchQuery{Vector: []float32{1, 2}, K: 1})); !slices.Equal(got, []string{"doc-1"}) {
		t.Fatalf("Search after reopen = %v", got)
	}
}

// deleteIndex removes every key of the index from the store, as a lost
// index would.
func deleteIndex(tb testing.TB, st *Store) {
	tb.Helper()
	err := st.db.Update(func(txn *badger.Txn) error {
		var keys [][]byte
		for _, p := range []string{prefixVector, prefixDim, string(vindexMarker)} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	st.dropIndex()
}

// The index is rebuilt from the sealed log: when it is lost (at the next
// search), and on demand, to the same answers.
func TestIndexRebuildFromLog(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	r := rand.New(rand.NewPCG(1, 2))
	var batch []Record
	for i := range 200 {
		batch = append(batch, rec(0, int64(i), docEvent(fmt.Sprintf("d%d", i), fmt.Sprintf("doc-%d", i%150), fmt.Sprintf("text %d", i), randVec(r, 16), map[string]any{"even": i%2 == 0})))
	}
	del := newEvent("del", "doc-7", "null")
	batch = append(batch, rec(0, 200, del))
	MustApply(t, st, c, batch)
	queries := make([][]float32, 20)
	for i := range queries {
		queries[i] = randVec(r, 16)
	}
	answers := func() [][]Hit {
		var out [][]Hit
		for _, q := range queries {
			out = append(out, mustSearch(t, st, c, SearchQuery{Vector: q, K: 10, Filter: map[string]string{"even": "true"}}))
		}
		return out
	}
	before := answers()
	if n := st.IndexStats().Documents; n != 149 {
		t.Fatalf("index holds %d documents, want 149 (150 streams, one deleted)", n)
	}

	deleteIndex(t, st)
	if after := answers(); !equalHits(before, after) {
		t.Fatalf("answers after the index was lost and rebuilt differ:\n%v\n%v", before, after)
	}
	n, err := st.RebuildIndex(c)
	if err != nil || n != 149 {
		t.Fatalf("RebuildIndex = %d, %v; want 149", n, err)
	}
	if after := answers(); !equalHits(before, after) {
		t.Fatal("answers after RebuildIndex differ")
	}
	// The dimension is rebuilt too: another one is still refused.
	res := MustApply(t, st, c, []Record{rec(0, 201, docEvent("x", "doc-x", "x", []float32{1, 2}, nil))})
	if res.Quarantined != 1 {
		t.Fatalf("document of another dimension after rebuild: %+v, want quarantined", res)
	}
}

func equalHits(a, b [][]Hit) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j].ID != b[i][j].ID || a[i][j].Text != b[i][j].Text || math.Abs(float64(a[i][j].Score-b[i][j].Score)) > 1e-6 {
				return false
			}
		}
	}
	return true
}

// Exact search: the same top 10 as a float64 brute force over every
// document (recall@10 = 1).
func TestSearchIsExact(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	r := rand.New(rand.NewPCG(3, 4))
	const n, dim = 2000, 32
	vecs := make([][]float32, n)
	var batch []Record
	for i := range vecs {
		vecs[i] = randVec(r, dim)
		batch = append(batch, rec(0, int64(i), docEvent(fmt.Sprintf("d%d", i), fmt.Sprintf("doc-%04d", i), "t", vecs[i], nil)))
	}
	MustApply(t, st, c, batch)
	for range 50 {
		q := randVec(r, dim)
		type sc struct {
			id string
			s  float64
		}
		var all []sc
		for i, v := range vecs {
			var dot, nv, nq float64
			for j := range v {
				dot += float64(v[j]) * float64(q[j])
				nv += float64(v[j]) * float64(v[j])
				nq += float64(q[j]) * float64(q[j])
			}
			all = append(all, sc{fmt.Sprintf("doc-%04d", i), dot / math.Sqrt(nv*nq)})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].s > all[j].s })
		want := map[string]bool{}
		for _, x := range all[:10] {
			want[x.id] = true
		}
		got := mustSearch(t, st, c, SearchQuery{Vector: q, K: 10})
		hit := 0
		for _, h := range got {
			if want[h.ID] {
				hit++
			}
		}
		if hit != 10 {
			t.Fatalf("recall@10 = %d/10: got %v", hit, ids(got))
		}
	}
}

// Nothing of a document is on disk in clear: neither its text nor the
// float32 little-endian bytes of its embedding.
func TestIndexSealedOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenStores(t, func(c *Config) { c.Dir = dir })
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	const marker = "vector-text-marker-5a1f"
	emb := []float32{0.123456789, -9.87654321, 3.14159265, 2.71828182, 1.41421356, -0.5772156649}
	var needle []byte
	for _, x := range emb[:4] {
		needle = binary.LittleEndian.AppendUint32(needle, math.Float32bits(x))
	}
	MustApply(t, st, c, []Record{rec(0, 0, docEvent("d1", "doc-1", marker, emb, map[string]any{"secret": marker}))})
	mustSearch(t, st, c, SearchQuery{Vector: emb, K: 1})
	if _, err := st.RebuildIndex(c); err != nil {
		t.Fatal(err)
	}
	if err := st.db.Sync(); err != nil {
		t.Fatal(err)
	}
	var files int
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(path)
		files++
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, needle) {
			t.Errorf("%s holds the document's text or embedding in clear", path)
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no files scanned")
	}
}

// An index value copied to another key, or into another tenant's store,
// does not open.
func TestIndexValuesAreBound(t *testing.T) {
	s := MustOpenStores(t)
	acme, globex := MustCreateStore(t, s, "acme"), MustCreateStore(t, s, "globex")
	c := newTestCipher(t, "shared-seed") // the same key: only the AAD binds
	MustApply(t, acme, c, []Record{rec(0, 0, docEvent("d1", "doc-1", "acme's", []float32{1, 0}, nil))})
	MustApply(t, globex, c, []Record{rec(0, 0, docEvent("d1", "doc-1", "globex's", []float32{1, 0}, nil))})
	copyVector := func(from, to *Store) {
		var k, v []byte
		from.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixVector)})
			defer it.Close()
			it.Rewind()
			k = it.Item().KeyCopy(nil)
			v, _ = it.Item().ValueCopy(nil)
			return nil
		})
		to.db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) })
		to.dropIndex()
	}
	mustSearch(t, acme, c, SearchQuery{Vector: []float32{1, 0}, K: 1}) // the index is built
	copyVector(globex, acme)
	if _, err := acme.Search(c, SearchQuery{Vector: []float32{1, 0}, K: 1}); err == nil {
		t.Fatal("Search over a vector copied from another tenant's store succeeded")
	}
}

func TestVectorRecordCodec(t *testing.T) {
	for _, r := range []vectorRecord{
		{ID: "a", Text: "b", Embedding: []float32{1}},
		{ID: "doc/1", Text: strings.Repeat("x", 1000), Attributes: map[string]string{"k": "v", "n": "1"}, Embedding: []float32{-1, 0.5, 3e-20}},
	} {
		b, _ := r.MarshalBinary()
		var got vectorRecord
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(MarshalBinary(%+v)) = %v", r, err)
		}
		if got.ID != r.ID || got.Text != r.Text || !slices.Equal(got.Embedding, r.Embedding) || len(got.Attributes) != len(r.Attributes) {
			t.Errorf("round trip of %+v = %+v", r, got)
		}
		head := vectorRecord{head: true}
		if err := head.UnmarshalBinary(b); err != nil || head.Embedding != nil || head.Text != r.Text {
			t.Errorf("head decode = %+v, %v", head, err)
		}
	}
}

// FuzzVectorRecord: the decoder of sealed index values never panics, and
// what it accepts encodes back to the same bytes' meaning.
func FuzzVectorRecord(f *testing.F) {
	b, _ := vectorRecord{ID: "a", Text: "b", Attributes: map[string]string{"k": "v"}, Embedding: []float32{1, 2}}.MarshalBinary()
	f.Add(b)
	f.Add([]byte{vectorCodecV1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r vectorRecord
		if r.UnmarshalBinary(b) != nil {
			return
		}
		again, _ := r.MarshalBinary()
		var r2 vectorRecord
		if err := r2.UnmarshalBinary(again); err != nil || r2.ID != r.ID || r2.Text != r.Text || len(r2.Embedding) != len(r.Embedding) {
			t.Fatalf("re-encoding %+v: %+v, %v", r, r2, err)
		}
	})
}

func TestTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range []int{1, 3, 10} {
		scores := make([]float32, 100)
		top := NewTopK(k)
		for i := range scores {
			scores[i] = float32(r.IntN(20)) // ties
			top.Offer(i, scores[i])
		}
		rows, got := top.Rows()
		idx := make([]int, len(scores))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
		if !slices.Equal(rows, idx[:k]) {
			t.Errorf("TopK(%d) rows = %v (%v), want %v", k, rows, got, idx[:k])
		}
	}
}

// BenchmarkSearch is the exact scan of one tenant's index.
func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("docs=%d/dim=384", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(7, 8))
			ix := newVectorIndex(384)
			for i := range n {
				ix.put(fmt.Sprint(i), &vectorRecord{ID: fmt.Sprint(i), Embedding: randVec(r, 384)})
			}
			q := randVec(r, 384)
			b.ResetTimer()
			for range b.N {
				ix.search(q, 10, nil)
			}
		})
	}
}
