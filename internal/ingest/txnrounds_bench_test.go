package ingest_test

import (
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/vaulttest"
)

// BenchmarkRoundPath compares the events/s of the two round paths, in
// one run, on the embedded broker and real stores: "single" (one node: a
// plain group commit after the stores commit) and "cluster" (each round
// one Kafka transaction: changelog records and offsets, then the stores
// commit). Each applies b.N events of one tenant, timed from their
// publish to the last one applied; run with -benchtime=20000x.
func BenchmarkRoundPath(b *testing.B) {
	for _, mode := range []string{"single", "cluster"} {
		b.Run(mode, func(b *testing.B) {
			k := MustStartKafka(b)
			var h *vaulttest.Harness
			if mode == "cluster" {
				h = openNode(b, k, b.TempDir(), "")
			} else {
				h = vaulttest.MustOpen(b)
			}
			const tenant = events.TenantID("acme")
			h.MustCreateTenant(b, string(tenant))
			topic := events.TopicFor(tenant)
			k.mustCreateTopic(b, topic, 1)
			if mode == "cluster" {
				startTxnRounds(b, k, k.newTxnConsumer(b, "vault", "a", nil), h.Vault, nil)
			} else {
				startRounds(b, k, k.newConsumer(b, "vault"), h.Vault, func(c *ingest.RoundsConfig) { c.KeepIngress = true })
			}
			publishEvents(b, k, topic, 0, 1) // the group joined, the store open
			waitUntil(b, 30*time.Second, "warm-up applied", func() bool { return storeOffset(b, h, tenant, topic) == 0 })
			b.ResetTimer()
			start := time.Now()
			publishEvents(b, k, topic, 1, b.N)
			waitUntil(b, 10*time.Minute, "all applied", func() bool { return storeOffset(b, h, tenant, topic) == int64(b.N) })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
