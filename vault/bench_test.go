package vault_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// BenchmarkRead measures the cost of auditing on query throughput: the same
// stream-state read through a tenant Session (authorisation, key-id
// recording and a durable, group-committed audit record per read) and
// straight from the store with the tenant's cipher (no session, no audit).
// Reads run in parallel, as HTTP requests do. Compare reads/s.
func BenchmarkRead(b *testing.B) {
	tv := MustOpenVault(b, nil)
	token := tv.mustCreateTenant(b, "bench")
	ctx := context.Background()
	var msgs []vault.Message
	for i := 0; i < 200; i++ {
		msgs = append(msgs, vault.Message{Topic: "tenant.bench.events", Offset: int64(i), Value: event(b, fmt.Sprint(i), fmt.Sprintf("s-%d", i%20), `{"n":1}`)})
	}
	if err := tv.v.Ingest(ctx, "tenant.bench.events", msgs); err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	}
	b.Run("session+audit", func(b *testing.B) {
		s := tv.mustSession(b, token, "bench")
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.State(ctx, fmt.Sprintf("s-%d", i%20)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		report(b)
	})
	b.Run("store-only", func(b *testing.B) {
		st, release, err := tv.stores.Acquire(events.TenantID("bench"))
		if err != nil {
			b.Fatal(err)
		}
		defer release()
		c := tv.cipher(b, "bench")
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := st.State(c, fmt.Sprintf("s-%d", i%20)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		report(b)
	})
}

// BenchmarkShred measures crypto-shredding tenants of 1k, 100k and 1M
// events: "unreadable-ns" is the time to make the tenant unreadable (the key
// destruction, step 1, which touches no data: it must stay flat), and
// "shred-ns" the whole shred (which removes the store, so it grows with
// it). Building the 1M-event tenant takes a while; run with -benchtime=1x.
func BenchmarkShred(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			tv := MustOpenVault(b, nil)
			ctx := context.Background()
			admin := tv.admin(b)
			var unreadable, total float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				id := fmt.Sprintf("t%d", i)
				tv.mustCreateTenant(b, id)
				topic := "tenant." + id + ".events"
				for off := 0; off < n; off += 2000 {
					msgs := make([]vault.Message, 0, 2000)
					for j := off; j < min(off+2000, n); j++ {
						msgs = append(msgs, vault.Message{Topic: topic, Offset: int64(j), Value: event(b, fmt.Sprint(j), fmt.Sprintf("s-%d", j%1000), `{"n":1}`)})
					}
					if err := tv.v.Ingest(ctx, topic, msgs); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				start := time.Now()
				r, err := tv.v.Shred(ctx, admin, id, id)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(time.Since(start).Nanoseconds())
				unreadable += float64(r.DestroyKeysNanos)
				if r.Events != uint64(n) {
					b.Fatalf("receipt counts %d events, want %d", r.Events, n)
				}
			}
			b.ReportMetric(unreadable/float64(b.N), "unreadable-ns")
			b.ReportMetric(total/float64(b.N), "shred-ns")
		})
	}
}

// BenchmarkIngest ingests batches of 256 records (64 streams, 256-byte JSON
// data) into one tenant: "events" all valid, "rejects" one in eight
// malformed (each audited as ingest.reject), "redelivery" the same batch
// again and again (all skipped, nothing audited). Each batch but a
// redelivery appends its audit records durably.
func BenchmarkIngest(b *testing.B) {
	const batch, streams = 256, 64
	data := `{"n":1,"pad":"` + strings.Repeat("x", 256-len(`{"n":1,"pad":""}`)) + `"}`
	for _, tc := range []struct {
		name     string
		rejectOf int // one record in rejectOf is malformed; 0: none
		again    bool
	}{
		{"events", 0, false},
		{"rejects", 8, false},
		{"redelivery", 0, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tv := MustOpenVault(b, nil)
			tv.mustCreateTenant(b, "bench")
			ctx := context.Background()
			topic := events.TopicFor("bench")
			msgs := func(iter int) []vault.Message {
				out := make([]vault.Message, batch)
				for j := range out {
					off := int64(iter*batch + j)
					out[j] = vault.Message{Topic: topic, Offset: off, Value: event(b, fmt.Sprintf("e-%d", off), fmt.Sprintf("s-%d", j%streams), data)}
					if tc.rejectOf > 0 && j%tc.rejectOf == tc.rejectOf-1 {
						out[j].Value = []byte("{not json")
					}
				}
				return out
			}
			first := msgs(0)
			if tc.again {
				if err := tv.v.Ingest(ctx, topic, first); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m := first
				if !tc.again {
					b.StopTimer()
					m = msgs(i)
					b.StartTimer()
				}
				if err := tv.v.Ingest(ctx, topic, m); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i*batch)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
