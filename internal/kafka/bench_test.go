package kafka

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// benchPayload is the 256-byte value of every benchmark message.
var benchPayload = make([]byte, 256)

func benchMessages(n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		m := message.NewMessage(strconv.Itoa(i), benchPayload)
		m.Metadata.Set(MetadataKey, "stream-"+strconv.Itoa(i%64))
		msgs[i] = m
	}
	return msgs
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// BenchmarkPublish measures acknowledged publishes of 256-byte messages to
// the embedded broker: 1000 messages per Publish call, on an in-memory
// broker and on one with a DataDir (with and without SyncWrites), and one
// message per call from many goroutines (as a watermill Router publishes).
func BenchmarkPublish(b *testing.B) {
	for _, store := range []struct {
		name string
		dir  bool
		sync bool
	}{{"memory", false, false}, {"datadir", true, false}, {"datadir+sync", true, true}} {
		b.Run("batch1000/"+store.name, func(b *testing.B) {
			cfg := EmbeddedConfig{Addr: "127.0.0.1:0", SyncWrites: store.sync, Logger: testLogger()}
			if store.dir {
				cfg.DataDir = b.TempDir()
			}
			e, err := StartEmbedded(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			pub := MustNewPublisher(b, e.Addr())
			batch := benchMessages(1000)
			mustPublish(b, pub, "bench", 0, 1) // create the topic, warm up
			b.SetBytes(int64(len(benchPayload)))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += len(batch) {
				n := min(len(batch), b.N-i)
				if err := pub.Publish("bench", batch[:n]...); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, start)
		})
	}

	b.Run("parallel1", func(b *testing.B) {
		e := MustStartEmbedded(b)
		pub := MustNewPublisher(b, e.Addr())
		mustPublish(b, pub, "bench", 0, 1)
		b.SetBytes(int64(len(benchPayload)))
		b.SetParallelism(64)
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			msg := benchMessages(1)
			for pb.Next() {
				if err := pub.Publish("bench", msg...); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, start)
	})
}

// BenchmarkConsume measures receiving and acking 256-byte messages from the
// embedded broker: with the default window and with MaxInFlight 1, each
// message acked at once, and with the default window and acks as the ingest
// runner gives them (256 received, then all acked). Offsets are committed
// asynchronously. The group join and the first message are outside the
// timing.
func BenchmarkConsume(b *testing.B) {
	for _, tc := range []struct {
		name             string
		window, ackEvery int
	}{{"maxinflight4096", 4096, 1}, {"maxinflight1", 1, 1}, {"batchack256", 4096, 256}} {
		b.Run(tc.name, func(b *testing.B) { benchConsume(b, tc.window, tc.ackEvery) })
	}
}

func benchConsume(b *testing.B, window, ackEvery int) {
	e := MustStartEmbedded(b)
	pub := MustNewPublisher(b, e.Addr())
	batch := benchMessages(1000)
	total := b.N + 1
	for i := 0; i < total; i += len(batch) {
		if err := pub.Publish("bench", batch[:min(len(batch), total-i)]...); err != nil {
			b.Fatal(err)
		}
	}
	sub := MustNewSubscriber(b, e.Addr(), "bench", func(c *SubscriberConfig) {
		c.MaxInFlight = window
		c.CommitInterval = 200 * time.Millisecond
	})
	ch, err := sub.Subscribe(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	recv(b, ch, 30*time.Second).Ack()
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	start := time.Now()
	held := make([]*message.Message, 0, ackEvery)
	for i := 0; i < b.N; i++ {
		m, ok := <-ch
		if !ok {
			b.Fatal("channel closed")
		}
		if held = append(held, m); len(held) == ackEvery || i == b.N-1 {
			for _, m := range held {
				m.Ack()
			}
			held = held[:0]
		}
	}
	reportRate(b, start)
}
