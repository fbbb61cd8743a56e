package kafka

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testLogger logs warnings and errors to stderr (not t.Log: kafka-go and
// kfake may log from goroutines that outlive a subtest by a few ms).
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// MustStartEmbedded starts an in-memory embedded broker on a free port,
// closed when tb ends.
func MustStartEmbedded(tb testing.TB) *Embedded {
	tb.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		tb.Fatalf("StartEmbedded: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

// MustNewPublisher returns a Publisher to addr, closed when tb ends.
func MustNewPublisher(tb testing.TB, addr string) *Publisher {
	tb.Helper()
	p, err := NewPublisher(PublisherConfig{Brokers: []string{addr}, Logger: testLogger()})
	if err != nil {
		tb.Fatalf("NewPublisher: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return p
}

// MustNewSubscriber returns a Subscriber to addr in group, closed when tb
// ends; edit may change its config.
func MustNewSubscriber(tb testing.TB, addr, group string, edit func(*SubscriberConfig)) *Subscriber {
	tb.Helper()
	cfg := SubscriberConfig{
		Brokers:         []string{addr},
		ConsumerGroup:   group,
		CommitInterval:  50 * time.Millisecond,
		NackResendSleep: 50 * time.Millisecond,
		MaxWait:         100 * time.Millisecond,
		Logger:          testLogger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewSubscriber(cfg)
	if err != nil {
		tb.Fatalf("NewSubscriber: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// MustNewAdmin returns an Admin for addr, closed when tb ends.
func MustNewAdmin(tb testing.TB, addr string) *Admin {
	tb.Helper()
	a, err := NewAdmin([]string{addr}, Auth{})
	if err != nil {
		tb.Fatalf("NewAdmin: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// testMessages returns n messages whose payloads are "from".."from+n-1",
// keyed over a few streams.
func testMessages(from, n int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		v := strconv.Itoa(from + i)
		m := message.NewMessage("uuid-"+v, []byte(v))
		m.Metadata.Set(MetadataKey, fmt.Sprintf("stream-%d", (from+i)%5))
		m.Metadata.Set("ce_type", "test.event")
		msgs[i] = m
	}
	return msgs
}

// mustPublish publishes messages from..from+n-1 to topic in one call.
func mustPublish(tb testing.TB, p *Publisher, topic string, from, n int) {
	tb.Helper()
	if err := p.Publish(topic, testMessages(from, n)...); err != nil {
		tb.Fatalf("Publish(%s, %d messages): %v", topic, n, err)
	}
}

// recv returns the next message of ch, failing tb after timeout.
func recv(tb testing.TB, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	tb.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			tb.Fatalf("messages channel closed")
		}
		return m
	case <-time.After(timeout):
		tb.Fatalf("no message within %s", timeout)
	}
	return nil
}

// offsetOf returns a consumed message's Kafka offset.
func offsetOf(tb testing.TB, m *message.Message) int64 {
	tb.Helper()
	o, err := strconv.ParseInt(m.Metadata.Get(MetadataOffset), 10, 64)
	if err != nil {
		tb.Fatalf("message %s: offset %q: %v", m.UUID, m.Metadata.Get(MetadataOffset), err)
	}
	return o
}

// committed returns group's committed offset of topic's partition 0, -1 if
// none.
func committed(tb testing.TB, addr, group, topic string) int64 {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		tb.Fatalf("kgo.NewClient: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		tb.Fatalf("FetchOffsets(%s): %v", group, err)
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok {
		return -1
	}
	return o.At
}

// waitCommitted waits until group's committed offset of topic/0 is want.
func waitCommitted(tb testing.TB, addr, group, topic string, want int64) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got int64
	for time.Now().Before(deadline) {
		if got = committed(tb, addr, group, topic); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("committed offset of %s in %s = %d, want %d", topic, group, got, want)
}

// logBuffer collects a logger's lines (Info and above), safe for use from
// several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger returns a logger that writes Info and above to b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startOffset returns the log start offset of topic's partition.
func startOffset(tb testing.TB, a *Admin, topic string, partition int) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := a.LogStartOffsets(ctx, topic)
	if err != nil {
		tb.Fatalf("LogStartOffsets(%s): %v", topic, err)
	}
	o, ok := offs[partition]
	if !ok {
		tb.Fatalf("LogStartOffsets(%s) = %v: no partition %d", topic, offs, partition)
	}
	return o
}

// filesHolding returns the files under dir whose bytes contain s.
func filesHolding(tb testing.TB, dir, s string) []string {
	tb.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			rel, _ := filepath.Rel(dir, path)
			hits = append(hits, rel)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("scan %s: %v", dir, err)
	}
	return hits
}
