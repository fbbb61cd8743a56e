package audit

import (
	"context"
	"testing"
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
// callers (GOMAXPROCS × 32 goroutines): they share writes and fsyncs.
func BenchmarkAppendGroupCommit(b *testing.B) {
	l := MustOpenLog(b)
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
