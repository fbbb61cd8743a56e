package main

// -search: the per-tenant vector index against a shared index with a
// tenant filter (the design the seed warns against), on the same corpus
// in the same run.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// searchConfig is -search's.
type searchConfig struct {
	docs, dim, queries, k int
	// tenants is how many tenants the shared index holds, each with docs
	// documents of its own, interleaved as they would arrive; the
	// per-tenant index holds the first tenant's only.
	tenants int
	// recallQueries is how many of the queries are checked against a
	// float64 brute force (recall@k).
	recallQueries int
	seed          uint64
}

// SearchPhase is one index's figures.
type SearchPhase struct {
	Docs          int     // documents the index scans for one query (all tenants' for the shared one)
	QueriesPerSec float64 // one client, queries one after the other
	P50Ms, P99Ms  float64
	RecallAtK     float64
	IndexMiB      float64 // memory the index holds: vectors, ids, attributes (estimated from its contents)
	HeapMiB       float64 `json:",omitempty"` // live heap grown by loading it (after GC)
	// Foreign counts results of another tenant than the query's: 0 with
	// the filter; ForeignWithoutFilter is the share of another tenant's
	// results when the shared index is queried without it (one bug away).
	Foreign              int     `json:",omitempty"`
	ForeignWithoutFilter float64 `json:",omitempty"`
}

// SearchReport is -search's result.
type SearchReport struct {
	Docs, Dim, K, Queries, Tenants  int
	IngestSeconds, IngestDocsPerSec float64
	IndexLoadSeconds                float64
	Vault                           SearchPhase // the tenant's own index, Store.Search (exact scan + the k answers opened)
	VaultSession                    SearchPhase // the same through the tenant session: audited, a durable audit record per search
	Shared                          SearchPhase // one index of every tenant, searched with a tenant filter
	// Ratios of the tenant's own index against the shared one:
	// queries/s (higher is better), p99 and memory (lower is better).
	QPSRatio, P99Ratio, MemoryRatio float64
	SessionQPSRatio                 float64 // VaultSession's queries/s against Shared's
}

// corpus draws tenant t's documents: clustered unit-scale vectors
// (64 centroids plus noise), so nearest neighbours mean something.
type corpus struct {
	dim       int
	centroids [][]float32
}

func newCorpus(r *rand.Rand, dim int) *corpus {
	c := &corpus{dim: dim}
	for range 64 {
		c.centroids = append(c.centroids, gaussian(r, dim, 1))
	}
	return c
}

func gaussian(r *rand.Rand, dim int, scale float64) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func (c *corpus) draw(r *rand.Rand) []float32 {
	v := gaussian(r, c.dim, 0.6)
	ct := c.centroids[r.IntN(len(c.centroids))]
	for i := range v {
		v[i] += ct[i]
	}
	return v
}

func runSearch(ctx context.Context, sc searchConfig, dir string, w io.Writer, out string) (SearchReport, error) {
	if sc.docs < sc.k || sc.dim < 1 || sc.dim > events.MaxEmbeddingDim || sc.k < 1 || sc.k > events.MaxSearchK || sc.queries < 1 || sc.tenants < 1 {
		return SearchReport{}, fmt.Errorf("want -search-docs >= -search-k (1..%d), -search-dim 1..%d, -search-queries >= 1, -search-tenants >= 1", events.MaxSearchK, events.MaxEmbeddingDim)
	}
	sc.recallQueries = min(max(sc.recallQueries, 1), sc.queries)
	rep := SearchReport{Docs: sc.docs, Dim: sc.dim, K: sc.k, Queries: sc.queries, Tenants: sc.tenants}
	r := rand.New(rand.NewPCG(sc.seed, 1))
	cp := newCorpus(r, sc.dim)
	own := make([][]float32, sc.docs)
	for i := range own {
		own[i] = cp.draw(r)
	}
	queries := make([][]float32, sc.queries)
	for i := range queries {
		q := slices.Clone(own[r.IntN(len(own))])
		for j := range q {
			q[j] += float32(r.NormFloat64() * 0.3)
		}
		queries[i] = q
	}
	fmt.Fprintf(w, "search: %d documents of dim %d in one tenant, %d queries at k=%d; peer: one shared index of %d tenants × %d documents with a tenant filter\n",
		sc.docs, sc.dim, sc.queries, sc.k, sc.tenants, sc.docs)

	// Exact answers (float64 brute force) of the first recallQueries.
	exact := make([]map[int]bool, sc.recallQueries)
	for i := range exact {
		exact[i] = bruteForce(own, queries[i], sc.k)
	}

	if err := searchVault(ctx, sc, dir, own, queries, exact, &rep, w); err != nil {
		return rep, err
	}
	if err := searchShared(sc, r, cp, own, queries, exact, &rep, w); err != nil {
		return rep, err
	}
	rep.QPSRatio = rep.Vault.QueriesPerSec / rep.Shared.QueriesPerSec
	rep.P99Ratio = rep.Vault.P99Ms / rep.Shared.P99Ms
	rep.MemoryRatio = rep.Vault.IndexMiB / rep.Shared.IndexMiB
	rep.SessionQPSRatio = rep.VaultSession.QueriesPerSec / rep.Shared.QueriesPerSec
	fmt.Fprintf(w, "ratio vault/shared: queries/s %.2f, p99 %.2f, index memory %.2f; audited session/shared queries/s %.2f\n",
		rep.QPSRatio, rep.P99Ratio, rep.MemoryRatio, rep.SessionQPSRatio)
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(out, b, 0o644); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// bruteForce returns the rows of the k vectors most similar to q (cosine,
// float64).
func bruteForce(vecs [][]float32, q []float32, k int) map[int]bool {
	type sc struct {
		row int
		s   float64
	}
	var nq float64
	for _, x := range q {
		nq += float64(x) * float64(x)
	}
	all := make([]sc, len(vecs))
	for i, v := range vecs {
		var dot, nv float64
		for j := range v {
			dot += float64(v[j]) * float64(q[j])
			nv += float64(v[j]) * float64(v[j])
		}
		all[i] = sc{i, dot / math.Sqrt(nv*nq)}
	}
	slices.SortFunc(all, func(a, b sc) int {
		if a.s != b.s {
			if a.s > b.s {
				return -1
			}
			return 1
		}
		return a.row - b.row
	})
	out := map[int]bool{}
	for _, x := range all[:k] {
		out[x.row] = true
	}
	return out
}

// latencies summarises per-query durations.
func latencies(d []time.Duration, total time.Duration) (qps, p50, p99 float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	ms := func(q float64) float64 {
		return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
	}
	return float64(len(d)) / total.Seconds(), ms(0.50), ms(0.99)
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// searchVault ingests the corpus into one tenant of a real vault (keys,
// Badger store, audit log, the vault's ingest: decode, seal, index) and
// measures Store.Search and Session.Search.
func searchVault(ctx context.Context, sc searchConfig, dir string, own, queries [][]float32, exact []map[int]bool, rep *SearchReport, w io.Writer) (err error) {
	dir = filepath.Join(dir, "search")
	discard := slog.New(slog.DiscardHandler)
	ks, err := keys.OpenKeystore(filepath.Join(dir, "keys"), "local://"+filepath.Join(dir, "master.key"), discard)
	if err != nil {
		return err
	}
	defer ks.Close()
	stores, err := projections.OpenStores(projections.Config{Dir: filepath.Join(dir, "tenants"), Logger: discard})
	if err != nil {
		return err
	}
	defer stores.Close()
	alog, err := audit.Open(audit.Options{Dir: filepath.Join(dir, "audit"), Logger: discard})
	if err != nil {
		return err
	}
	defer alog.Close()
	const adminToken = "vaultbench-search-admin-token"
	v, err := vault.Open(vault.Config{DataDir: dir, Keys: vault.KeysOf(ks), Stores: stores, Audit: alog, Topics: nopTopics{}, AdminToken: adminToken, Logger: discard})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, v.Close()) }()
	admin, err := v.Authenticate(ctx, adminToken, audit.ActionTenantCreate, "tenants")
	if err != nil {
		return err
	}
	const tenant = events.TenantID("bench")
	_, token, err := v.CreateTenant(ctx, admin, string(tenant))
	if err != nil {
		return err
	}

	topic := events.TopicFor(tenant)
	start := time.Now()
	const batch = 256
	for first := 0; first < len(own); first += batch {
		var msgs []vault.Message
		for i := first; i < min(first+batch, len(own)); i++ {
			msgs = append(msgs, vault.Message{Topic: topic, Offset: int64(i), Value: docEvent(i, own[i])})
		}
		if err := v.Ingest(ctx, topic, msgs); err != nil {
			return err
		}
	}
	rep.IngestSeconds = time.Since(start).Seconds()
	rep.IngestDocsPerSec = float64(len(own)) / rep.IngestSeconds
	fmt.Fprintf(w, "  vault ingest: %d documents in %.1fs (%.0f documents/s: decode, seal, Badger, audit)\n", len(own), rep.IngestSeconds, rep.IngestDocsPerSec)

	st, release, err := stores.Acquire(tenant)
	if err != nil {
		return err
	}
	defer release()
	c, err := ks.Cipher(tenant)
	if err != nil {
		return err
	}
	before := heapMiB()
	start = time.Now()
	if _, err := st.Search(c, projections.SearchQuery{Vector: queries[0], K: sc.k}); err != nil {
		return err
	}
	rep.IndexLoadSeconds = time.Since(start).Seconds()
	is := st.IndexStats()
	if is.Documents != len(own) {
		return fmt.Errorf("the index holds %d documents, want %d", is.Documents, len(own))
	}
	rep.Vault = SearchPhase{Docs: is.Documents, IndexMiB: float64(is.Bytes) / (1 << 20), HeapMiB: heapMiB() - before}

	d := make([]time.Duration, len(queries))
	var hits [][]projections.Hit
	start = time.Now()
	for i, q := range queries {
		t0 := time.Now()
		h, err := st.Search(c, projections.SearchQuery{Vector: q, K: sc.k})
		if err != nil {
			return err
		}
		d[i] = time.Since(t0)
		if i < len(exact) {
			hits = append(hits, h)
		}
	}
	rep.Vault.QueriesPerSec, rep.Vault.P50Ms, rep.Vault.P99Ms = latencies(d, time.Since(start))
	rep.Vault.RecallAtK = recallOf(hits, exact, sc.k, func(h projections.Hit) int { n, _ := strconv.Atoi(h.ID[len("doc-"):]); return n })
	fmt.Fprintf(w, "  vault index (Store.Search):       %7.1f queries/s  p50 %6.2f ms  p99 %6.2f ms  recall@%d %.3f  index %.1f MiB (heap +%.1f MiB, loaded in %.1fs)\n",
		rep.Vault.QueriesPerSec, rep.Vault.P50Ms, rep.Vault.P99Ms, sc.k, rep.Vault.RecallAtK, rep.Vault.IndexMiB, rep.Vault.HeapMiB, rep.IndexLoadSeconds)

	p, err := v.Authenticate(ctx, token, audit.ActionSearch, "search")
	if err != nil {
		return err
	}
	s, err := v.Session(ctx, p, vault.Access{Tenant: string(tenant), Action: audit.ActionSearch, Resource: "search"})
	if err != nil {
		return err
	}
	defer s.Close()
	n := min(len(queries), 200)
	start = time.Now()
	for i, q := range queries[:n] {
		t0 := time.Now()
		if _, err := s.Search(ctx, vault.SearchRequest{Vector: q, K: sc.k}); err != nil {
			return err
		}
		d[i] = time.Since(t0)
	}
	rep.VaultSession = SearchPhase{Docs: is.Documents, RecallAtK: rep.Vault.RecallAtK, IndexMiB: rep.Vault.IndexMiB}
	rep.VaultSession.QueriesPerSec, rep.VaultSession.P50Ms, rep.VaultSession.P99Ms = latencies(d[:n], time.Since(start))
	fmt.Fprintf(w, "  vault session (audited, %d):     %7.1f queries/s  p50 %6.2f ms  p99 %6.2f ms  (a durable audit record per search)\n",
		n, rep.VaultSession.QueriesPerSec, rep.VaultSession.P50Ms, rep.VaultSession.P99Ms)
	return nil
}

func recallOf[H any](hits [][]H, exact []map[int]bool, k int, row func(H) int) float64 {
	found := 0
	for i, hs := range hits {
		for _, h := range hs {
			if exact[i][row(h)] {
				found++
			}
		}
	}
	return float64(found) / float64(len(hits)*k)
}

// docEvent is document i as a producer publishes it.
func docEvent(i int, emb []float32) []byte {
	b := make([]byte, 0, 200+len(emb)*12)
	id := "doc-" + strconv.Itoa(i)
	b = append(b, `{"specversion":"1.0","id":"`...)
	b = append(b, id...)
	b = append(b, `","source":"vaultbench","type":"kb.document","subject":"`...)
	b = append(b, id...)
	b = append(b, `","data":{"text":"document `...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `","embedding":[`...)
	for j, x := range emb {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 32)
	}
	return append(b, "]}}"...)
}

type nopTopics struct{}

func (nopTopics) CreateTopic(context.Context, string, int) error { return nil }

// sharedIndex is the peer: every tenant's documents in one flat index,
// row-major unit vectors, each row tagged with its tenant; a search scans
// the rows of the query's tenant (the filter checked per row, before the
// dot product: exact, no over-fetch).
type sharedIndex struct {
	dim     int
	tenants []uint16
	rows    []int // the row's index in its tenant's corpus
	vecs    []float32
}

func (s *sharedIndex) search(q []float32, k int, tenant int, filter bool) ([]int, []int) {
	nq := make([]float32, len(q))
	var n float64
	for _, x := range q {
		n += float64(x) * float64(x)
	}
	for i, x := range q {
		nq[i] = float32(float64(x) / math.Sqrt(n))
	}
	top := projections.NewTopK(k)
	for i, t := range s.tenants {
		if filter && int(t) != tenant {
			continue
		}
		top.Offer(i, projections.Dot(nq, s.vecs[i*s.dim:(i+1)*s.dim]))
	}
	rows, _ := top.Rows()
	var own, tenants []int
	for _, r := range rows {
		own, tenants = append(own, s.rows[r]), append(tenants, int(s.tenants[r]))
	}
	return own, tenants
}

func searchShared(sc searchConfig, r *rand.Rand, cp *corpus, own, queries [][]float32, exact []map[int]bool, rep *SearchReport, w io.Writer) error {
	before := heapMiB()
	total := sc.docs * sc.tenants
	s := &sharedIndex{dim: sc.dim, tenants: make([]uint16, 0, total), rows: make([]int, 0, total), vecs: make([]float32, 0, total*sc.dim)}
	// The same corpus for tenant 0, the others' from the same
	// distribution, interleaved as they arrive.
	next := make([]int, sc.tenants)
	add := func(t int, v []float32) {
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		for _, x := range v {
			s.vecs = append(s.vecs, float32(float64(x)/math.Sqrt(n)))
		}
		s.tenants = append(s.tenants, uint16(t))
		s.rows = append(s.rows, next[t])
		next[t]++
	}
	for _, v := range own {
		add(0, v)
		for t := 1; t < sc.tenants; t++ {
			add(t, cp.draw(r))
		}
	}
	memMiB := float64(cap(s.vecs)*4+cap(s.tenants)*2+cap(s.rows)*8) / (1 << 20)
	rep.Shared = SearchPhase{Docs: total, IndexMiB: memMiB, HeapMiB: heapMiB() - before}

	d := make([]time.Duration, len(queries))
	var hits [][]int
	start := time.Now()
	for i, q := range queries {
		t0 := time.Now()
		rows, tenants := s.search(q, sc.k, 0, true)
		d[i] = time.Since(t0)
		for _, t := range tenants {
			if t != 0 {
				rep.Shared.Foreign++
			}
		}
		if i < len(exact) {
			hits = append(hits, rows)
		}
	}
	rep.Shared.QueriesPerSec, rep.Shared.P50Ms, rep.Shared.P99Ms = latencies(d, time.Since(start))
	rep.Shared.RecallAtK = recallOf(hits, exact, sc.k, func(r int) int { return r })
	foreign := 0
	for _, q := range queries[:len(exact)] {
		_, tenants := s.search(q, sc.k, 0, false)
		for _, t := range tenants {
			if t != 0 {
				foreign++
			}
		}
	}
	rep.Shared.ForeignWithoutFilter = float64(foreign) / float64(len(exact)*sc.k)
	fmt.Fprintf(w, "  shared index + tenant filter:     %7.1f queries/s  p50 %6.2f ms  p99 %6.2f ms  recall@%d %.3f  index %.1f MiB (heap +%.1f MiB), %d documents of %d tenants; other tenants' results: %d with the filter, %.0f%% without it\n",
		rep.Shared.QueriesPerSec, rep.Shared.P50Ms, rep.Shared.P99Ms, sc.k, rep.Shared.RecallAtK, rep.Shared.IndexMiB, rep.Shared.HeapMiB, total, sc.tenants,
		rep.Shared.Foreign, 100*rep.Shared.ForeignWithoutFilter)
	runtime.KeepAlive(s)
	return nil
}

// runSearchIn runs -search in c.dir (default a temporary directory,
// removed after).
func runSearchIn(ctx context.Context, c config, w io.Writer) error {
	dir := c.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vaultbench-search-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	_, err := runSearch(ctx, c.sc, dir, w, c.out)
	return err
}
