package vault_test

import (
	"context"
	"fmt"
	"testing"

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
