package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// benchRestoreRecords is the size of the changelog BenchmarkReadToEnd
// restores.
const benchRestoreRecords = 200_000

// mustFillChangelog writes n 256-byte records to topic's partition 0 in
// committed transactions of 10000 records.
func mustFillChangelog(b *testing.B, addr, topic string, n int) {
	b.Helper()
	mustEnsureChangelog(b, addr, topic)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("fill"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i := 0; i < n; i += 10000 {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for j := i; j < min(n, i+10000); j++ {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte("k" + string(rune('a'+j%26))), Value: benchPayload}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadToEnd measures restoring 200k 256-byte records from a
// changelog (records/s): ReadToEnd (read_committed, to the last stable
// offset), and as the baseline in the same run a plain kgo consume of the
// same partition (read_uncommitted, to the high watermark).
func BenchmarkReadToEnd(b *testing.B) {
	e := MustStartEmbedded(b)
	const topic = "tenant.bench.sealed"
	mustFillChangelog(b, e.Addr(), topic, benchRestoreRecords)
	ctx := context.Background()

	b.Run("ReadToEnd", func(b *testing.B) {
		b.SetBytes(benchRestoreRecords * int64(len(benchPayload)))
		start := time.Now()
		for b.Loop() {
			n := 0
			if _, err := ReadToEnd(ctx, []string{e.Addr()}, Auth{}, topic, 0, 0, func(Record) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != benchRestoreRecords {
				b.Fatalf("read %d records, want %d", n, benchRestoreRecords)
			}
		}
		b.ReportMetric(float64(b.N*benchRestoreRecords)/time.Since(start).Seconds(), "records/s")
	})
	b.Run("plain-kgo", func(b *testing.B) {
		b.SetBytes(benchRestoreRecords * int64(len(benchPayload)))
		start := time.Now()
		for b.Loop() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()),
				kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for n < benchRestoreRecords {
				fs := cl.PollFetches(ctx)
				if err := fs.Err0(); err != nil {
					b.Fatal(err)
				}
				n += fs.NumRecords()
			}
			cl.Close()
		}
		b.ReportMetric(float64(b.N*benchRestoreRecords)/time.Since(start).Seconds(), "records/s")
	})
}

// benchRoundRecords is the size of one round in BenchmarkTxnRound and
// BenchmarkPlainRound.
const benchRoundRecords = 100

// BenchmarkTxnRound measures one TxnConsumer round of 100 256-byte
// records: Poll, Begin, a sealed record produced per record, End(commit).
// BenchmarkPlainRound is the same round with a Consumer: Poll, the same
// records produced (idempotent, acknowledged) and a Commit: the overhead
// of the transaction is the difference.
func BenchmarkTxnRound(b *testing.B) {
	e := MustStartEmbedded(b)
	mustFillIngress(b, e.Addr(), (b.N+1)*benchRoundRecords)
	mustEnsureChangelog(b, e.Addr(), "tenant.bench.sealed")
	c := mustNewTxnConsumer(b, e.Addr(), "vault", "tenantvault-bench", func(c *TxnConsumerConfig) { c.MaxPollRecords = benchRoundRecords })
	round := func() {
		recs := pollN(b, c, benchRoundRecords)
		if err := c.Begin(); err != nil {
			b.Fatal(err)
		}
		for _, r := range recs["tenant.bench.events"] {
			c.Produce(context.Background(), "tenant.bench.sealed", r.Key, r.Value)
		}
		if ok, err := c.End(context.Background(), true); !ok || err != nil {
			b.Fatalf("End = %v, %v", ok, err)
		}
		c.AllowRebalance()
	}
	round() // join, warm up
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		round()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rounds/s")
}

func BenchmarkPlainRound(b *testing.B) {
	e := MustStartEmbedded(b)
	mustFillIngress(b, e.Addr(), (b.N+1)*benchRoundRecords)
	mustEnsureChangelog(b, e.Addr(), "tenant.bench.sealed")
	c, err := NewConsumer(ConsumerConfig{Brokers: []string{e.Addr()}, Group: "vault", Topics: txnTopics,
		MaxPollRecords: benchRoundRecords, FetchMaxWait: 50 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pr, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer pr.Close()
	ctx := context.Background()
	round := func() {
		var recs []*kgo.Record
		ps := Positions{}
		for len(recs) < benchRoundRecords {
			bs, err := c.Poll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, bt := range bs {
				for _, r := range bt.Records {
					recs = append(recs, &kgo.Record{Topic: "tenant.bench.sealed", Key: r.Key, Value: r.Value})
				}
				ps.Set(bt.Topic, bt.Partition, bt.Next())
			}
		}
		if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		if err := c.Commit(ctx, ps); err != nil {
			b.Fatal(err)
		}
		c.AllowRebalance()
	}
	round()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		round()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rounds/s")
}

// mustFillIngress writes n 256-byte records to tenant.bench.events.
func mustFillIngress(b *testing.B, addr string, n int) {
	b.Helper()
	ctx := context.Background()
	if err := MustNewAdmin(b, addr).CreateTopic(ctx, "tenant.bench.events", 1); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: "tenant.bench.events", Key: []byte("k"), Value: benchPayload}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
