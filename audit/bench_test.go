package audit

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchRecord is a typical read record: a tenant reading one stream.
func benchRecord() Record {
	return Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead,
		Resource: "stream:9f86d081884c7d65", KeyIDs: []uint32{1234567}, Outcome: OutcomeOK}
}

func reportRate(b *testing.B, l *Log) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if n := l.syncs.Load(); n > 0 {
		b.ReportMetric(float64(b.N)/float64(n), "records/fsync")
	}
}

// BenchmarkAppendGroupCommit measures durable appends from many concurrent
// callers (GOMAXPROCS × 32 goroutines): they share writes and fsyncs. The
// log signs checkpoints as in production (every second while records
// arrive).
func BenchmarkAppendGroupCommit(b *testing.B) {
	s, vkey := testKey(b, testOrigin)
	l := MustOpenLog(b, withSigner(s, vkey))
	r := benchRecord()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, l)
}

// BenchmarkAppendSerialSync is the baseline: one caller, so every record
// gets its own write and fsync.
func BenchmarkAppendSerialSync(b *testing.B) {
	l := MustOpenLog(b)
	r := benchRecord()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Append(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, l)
}

// BenchmarkAppendAsync measures the fire-and-forget path, including the
// final flush.
func BenchmarkAppendAsync(b *testing.B) {
	l := MustOpenLog(b)
	r := benchRecord()
	b.ResetTimer()
	for b.Loop() {
		l.AppendAsync(r)
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	reportRate(b, l)
}

// BenchmarkListTenant measures a page of one tenant's records out of a log
// shared by 100 tenants.
func BenchmarkListTenant(b *testing.B) {
	l := MustOpenLog(b)
	tenants := make([]string, 100)
	for i := range tenants {
		tenants[i] = "tenant-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	for i := range 20000 {
		r := benchRecord()
		r.Tenant = tenants[i%len(tenants)]
		l.AppendAsync(r)
	}
	if _, err := l.Append(context.Background(), benchRecord()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		recs, err := l.List(context.Background(), Filter{Tenant: tenants[7], Limit: 100})
		if err != nil || len(recs) != 100 {
			b.Fatalf("List = %d, %v", len(recs), err)
		}
	}
}

// benchLines returns n chained canonical records like benchRecord.
func benchLines(tb testing.TB, n int) [][]byte {
	tb.Helper()
	at := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = benchRecord()
		recs[i].Time = at.Add(time.Duration(i) * time.Millisecond)
	}
	return chainLines(tb, recs)
}

// BenchmarkVerify measures the offline verifier (VerifyExport) over a
// stream of 100,000 records: parse and canonical check, chain, tree, root.
func BenchmarkVerify(b *testing.B) {
	const n = 100_000
	s, vkey := testKey(b, testOrigin)
	lines := benchLines(b, n)
	var t tree
	for _, l := range lines {
		t.append(LeafHash(l))
	}
	cp := mustSignCheckpoint(b, Checkpoint{Origin: testOrigin, Size: n, Root: t.root()}, s)
	stream := joinLines(lines)
	b.SetBytes(int64(len(stream)))
	b.ResetTimer()
	for b.Loop() {
		rep, err := VerifyExport(context.Background(), bytes.NewReader(stream), cp, vkey)
		if err != nil || rep.Records != n {
			b.Fatalf("VerifyExport = %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// mustOpenBig opens a log of n records written straight into its segment.
func mustOpenBig(b *testing.B, n int) *Log {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(0)), joinLines(benchLines(b, n)), 0o600); err != nil {
		b.Fatal(err)
	}
	return mustOpenDir(b, dir)
}

// BenchmarkInclusionProof measures InclusionProof for random records of a
// log at its full size, for two log sizes (the cost should not grow with
// the log): a block of 64 records read from disk (page cache) and hashed,
// the rest from memory.
func BenchmarkInclusionProof(b *testing.B) {
	for _, n := range []uint64{10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			l := mustOpenBig(b, int(n))
			r := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for b.Loop() {
				if _, err := l.InclusionProof(r.Uint64N(n), n); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			l.mu.RLock()
			var hashes int
			for _, lv := range l.tree.levels {
				hashes += len(lv)
			}
			l.mu.RUnlock()
			b.ReportMetric(float64(hashes*HashSize)/float64(n), "tree-bytes/record")
		})
	}
}

// BenchmarkConsistencyProof measures ConsistencyProof from a random older
// size to the full size of a log of 100,000 records.
func BenchmarkConsistencyProof(b *testing.B) {
	const n = 100_000
	l := mustOpenBig(b, n)
	r := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.ConsistencyProof(1+r.Uint64N(n-1), n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures Open of a log of 100,000 records: scan, chain,
// index and tree.
func BenchmarkOpen(b *testing.B) {
	const n = 100_000
	l := mustOpenBig(b, n)
	dir := l.dir
	l.Close()
	b.ResetTimer()
	for b.Loop() {
		l, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
