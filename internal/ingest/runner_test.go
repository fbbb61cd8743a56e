package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// waitTimeout bounds every wait for the broker and the consumers: a
// deadline for polling, never an assertion about speed.
const waitTimeout = 30 * time.Second

// testLogger logs warnings and errors to stderr (kafka-go may log from
// goroutines that outlive a test by a few ms, so not to t.Log).
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// batch is one Ingest call.
type batch struct {
	topic string
	msgs  []vault.Message
	err   error // what Ingest returned
	ctxOK bool  // the context was not done when Ingest returned
}

// fakeIngester records every Ingest call. fail, if set, decides each
// call's error; block, if set, is waited on before each call returns.
type fakeIngester struct {
	mu      sync.Mutex
	batches []batch
	fail    func(call int, topic string, msgs []vault.Message) error
	block   func(ctx context.Context)
}

var _ ingest.Ingester = (*fakeIngester)(nil)

func (f *fakeIngester) Ingest(ctx context.Context, topic string, msgs []vault.Message) error {
	if f.block != nil {
		f.block(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.fail != nil {
		err = f.fail(len(f.batches), topic, msgs)
	}
	// The runner reuses its slice: keep a copy.
	f.batches = append(f.batches, batch{topic: topic, msgs: slices.Clone(msgs), err: err, ctxOK: ctx.Err() == nil})
	return err
}

func (f *fakeIngester) calls() []batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// applied returns the messages of topic in successful calls, in order.
func (f *fakeIngester) applied(topic string) []vault.Message {
	var out []vault.Message
	for _, b := range f.calls() {
		if b.topic == topic && b.err == nil {
			out = append(out, b.msgs...)
		}
	}
	return out
}

// countingLister counts ListTopics calls.
type countingLister struct {
	ingest.TopicLister
	n atomic.Int64
}

func (c *countingLister) ListTopics(ctx context.Context) ([]string, error) {
	defer c.n.Add(1)
	return c.TopicLister.ListTopics(ctx)
}

// kafkaEnv is an embedded broker with clients, closed when the test ends.
type kafkaEnv struct {
	broker *kafka.Embedded
	admin  *kafka.Admin
	pub    *kafka.Publisher
}

// MustStartKafka starts an in-memory embedded broker on a free port.
func MustStartKafka(tb testing.TB) *kafkaEnv { return mustStartKafka(tb, "") }

// MustStartKafkaDir starts an embedded broker persisting to dir.
func MustStartKafkaDir(tb testing.TB, dir string) *kafkaEnv { return mustStartKafka(tb, dir) }

func mustStartKafka(tb testing.TB, dir string) *kafkaEnv {
	tb.Helper()
	e, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: testLogger()})
	if err != nil {
		tb.Fatalf("StartEmbedded: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	a, err := kafka.NewAdmin([]string{e.Addr()}, kafka.Auth{})
	if err != nil {
		tb.Fatalf("NewAdmin: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	p, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{e.Addr()}, Logger: testLogger()})
	if err != nil {
		tb.Fatalf("NewPublisher: %v", err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	return &kafkaEnv{broker: e, admin: a, pub: p}
}

// newSubscriber returns a subscriber in group; the caller closes it.
func (k *kafkaEnv) newSubscriber(tb testing.TB, group string) *kafka.Subscriber {
	tb.Helper()
	s, err := kafka.NewSubscriber(kafka.SubscriberConfig{
		Brokers: []string{k.broker.Addr()}, ConsumerGroup: group,
		CommitInterval: 50 * time.Millisecond, NackResendSleep: 50 * time.Millisecond,
		MaxWait: 100 * time.Millisecond, Logger: testLogger(),
	})
	if err != nil {
		tb.Fatalf("NewSubscriber: %v", err)
	}
	return s
}

func (k *kafkaEnv) mustCreateTopic(tb testing.TB, topic string, partitions int) {
	tb.Helper()
	if err := k.admin.CreateTopic(context.Background(), topic, partitions); err != nil {
		tb.Fatalf("CreateTopic(%q): %v", topic, err)
	}
}

// testMessagesKeyed returns messages with values from..from+n-1, keyed over
// keys streams (stream-<value mod keys>), with a ce_type header.
func testMessagesKeyed(from, n, keys int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		v := strconv.Itoa(from + i)
		m := message.NewMessage("uuid-"+v, []byte(v))
		m.Metadata.Set(kafka.MetadataKey, fmt.Sprintf("stream-%d", (from+i)%keys))
		m.Metadata.Set("ce_type", "test.event")
		msgs[i] = m
	}
	return msgs
}

// testMessages returns messages from..from+n-1 on one stream.
func testMessages(from, n int) []*message.Message { return testMessagesKeyed(from, n, 1) }

// mustPublish publishes testMessagesKeyed(from, n, keys) to topic in one call.
func (k *kafkaEnv) mustPublish(tb testing.TB, topic string, from, n, keys int) {
	tb.Helper()
	if err := k.pub.Publish(topic, testMessagesKeyed(from, n, keys)...); err != nil {
		tb.Fatalf("Publish(%s, %d messages): %v", topic, n, err)
	}
}

// running is a Runner being run.
type running struct {
	r      *ingest.Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startRunner runs a Runner until the test ends (or stop is called).
func startRunner(tb testing.TB, cfg ingest.Config) *running {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	r, err := ingest.New(cfg)
	if err != nil {
		tb.Fatalf("ingest.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Run(ctx) }()
	tb.Cleanup(func() { rr.stop(tb) })
	return rr
}

// stop cancels the runner and waits for Run to return.
func (rr *running) stop(tb testing.TB) {
	tb.Helper()
	rr.cancel()
	rr.once.Do(func() {
		select {
		case err := <-rr.done:
			if err != nil {
				tb.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			tb.Errorf("Run did not return within %s of cancel", waitTimeout)
		}
	})
}

// waitFor polls cond until it holds, failing tb at the deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func active(r *ingest.Runner, topic string) bool { return slices.Contains(r.Active(), topic) }

func TestConfigValidate(t *testing.T) {
	k := &kafka.Admin{}
	sub := &kafka.Subscriber{}
	v := &fakeIngester{}
	tests := []struct {
		name string
		cfg  ingest.Config
		want []string
	}{
		{"valid", ingest.Config{Subscriber: sub, Topics: k, Vault: v}, nil},
		{"empty", ingest.Config{}, []string{"Subscriber is required", "Topics is required", "Vault is required"}},
		{"negative", ingest.Config{Subscriber: sub, Topics: k, Vault: v, MaxBatch: -1}, []string{"must not be negative"}},
		{"negative linger", ingest.Config{Subscriber: sub, Topics: k, Vault: v, Linger: -time.Millisecond}, []string{"must not be negative"}},
		{"negative interval", ingest.Config{Subscriber: sub, Topics: k, Vault: v, DiscoverInterval: -time.Second}, []string{"must not be negative"}},
		{"negative retention interval", ingest.Config{Subscriber: sub, Topics: k, Vault: v, RetentionInterval: -time.Second}, []string{"must not be negative"}},
		{"no deleter", ingest.Config{Subscriber: sub, Topics: &countingLister{TopicLister: k}, Vault: v}, []string{"Deleter is required"}},
		{"deleter", ingest.Config{Subscriber: sub, Topics: &countingLister{TopicLister: k}, Deleter: k, Vault: v}, nil},
		{"keep without deleter", ingest.Config{Subscriber: sub, Topics: &countingLister{TopicLister: k}, Vault: v, KeepIngress: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, nerr := ingest.New(tt.cfg)
			if tt.want == nil {
				if err != nil || nerr != nil {
					t.Fatalf("Validate() = %v, New() = %v, want nil", err, nerr)
				}
				return
			}
			if err == nil || nerr == nil {
				t.Fatalf("Validate() = %v, New() = %v, want errors naming %q", err, nerr, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to name %q", err, w)
				}
			}
		})
	}
}

// A tenant topic someone else creates is found by a later discovery pass;
// other topics are never consumed.
func TestDiscovery(t *testing.T) {
	k := MustStartKafka(t)
	k.mustCreateTopic(t, "orders", 1)
	k.mustPublish(t, "orders", 0, 3, 1)
	k.mustCreateTopic(t, "tenant.events", 1) // tenant-like, not a tenant topic
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	lister := &countingLister{TopicLister: k.admin}
	v := &fakeIngester{}
	rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: lister, Deleter: k.admin, Vault: v, DiscoverInterval: 100 * time.Millisecond})

	waitFor(t, "first discovery", func() bool { return lister.n.Load() >= 1 })
	passes := lister.n.Load()
	const topic = "tenant.acme.events"
	k.mustCreateTopic(t, topic, 1)
	k.mustPublish(t, topic, 0, 3, 1)
	waitFor(t, "topic discovered", func() bool { return active(rr.r, topic) })
	if lister.n.Load() <= passes {
		t.Errorf("topic active after %d discovery passes, want a later pass than %d", lister.n.Load(), passes)
	}
	waitFor(t, "3 messages ingested", func() bool { return len(v.applied(topic)) == 3 })

	for _, b := range v.calls() {
		if b.topic != topic {
			t.Errorf("Ingest(%q, ...) called, want only %q", b.topic, topic)
		}
	}
	if got := rr.r.Active(); !slices.Equal(got, []string{topic}) {
		t.Errorf("Active() = %v, want [%s]", got, topic)
	}
}

// Add starts consuming a topic at once, without waiting for discovery;
// non-tenant topics are ignored.
func TestAdd(t *testing.T) {
	k := MustStartKafka(t)
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	lister := &countingLister{TopicLister: k.admin}
	v := &fakeIngester{}
	rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: lister, Deleter: k.admin, Vault: v, DiscoverInterval: time.Hour})
	waitFor(t, "first discovery", func() bool { return lister.n.Load() >= 1 })

	const topic = "tenant.acme.events"
	k.mustCreateTopic(t, topic, 1)
	k.mustCreateTopic(t, "orders", 1)
	k.mustPublish(t, topic, 0, 5, 2)
	k.mustPublish(t, "orders", 0, 5, 2)
	rr.r.Add("orders")
	rr.r.Add(topic)
	rr.r.Add(topic) // twice: one consumer
	waitFor(t, "5 messages ingested", func() bool { return len(v.applied(topic)) == 5 })
	if got := rr.r.Active(); !slices.Equal(got, []string{topic}) {
		t.Errorf("Active() = %v, want [%s]", got, topic)
	}
	if n := lister.n.Load(); n != 1 {
		t.Errorf("ListTopics called %d times, want 1 (the topic came from Add)", n)
	}
	for _, b := range v.calls() {
		if b.topic != topic {
			t.Errorf("Ingest(%q, ...) called, want only %q", b.topic, topic)
		}
	}
}

// Messages already in flight are handed over in batches, in partition
// order, converted faithfully.
func TestBatching(t *testing.T) {
	const (
		topic = "tenant.acme.events"
		n     = 1000
		parts = 3
	)
	k := MustStartKafka(t)
	k.mustCreateTopic(t, topic, parts)
	k.mustPublish(t, topic, 0, n, 7)
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	v := &fakeIngester{}
	startRunner(t, ingest.Config{Subscriber: sub, Topics: k.admin, Vault: v, Linger: 20 * time.Millisecond})
	waitFor(t, "all messages ingested", func() bool { return len(v.applied(topic)) >= n })

	calls := v.calls()
	t.Logf("%d messages in %d Ingest calls", n, len(calls))
	if len(calls) > n/10 {
		t.Errorf("%d messages took %d Ingest calls, want at most %d", n, len(calls), n/10)
	}
	msgs := v.applied(topic)
	if len(msgs) != n {
		t.Fatalf("ingested %d messages, want %d", len(msgs), n)
	}
	next := map[int]int64{}       // partition → next offset
	lastOfKey := map[string]int{} // key → last value
	seen := map[int]bool{}
	for _, m := range msgs {
		if m.Topic != topic || m.Partition < 0 || m.Partition >= parts {
			t.Fatalf("message %+v: want topic %s, partition in [0,%d)", m, topic, parts)
		}
		if m.Offset != next[m.Partition] {
			t.Fatalf("partition %d: offset %d after %d, want %d (in order, each once)", m.Partition, m.Offset, next[m.Partition]-1, next[m.Partition])
		}
		next[m.Partition]++
		val, err := strconv.Atoi(string(m.Value))
		if err != nil {
			t.Fatalf("value %q: %v", m.Value, err)
		}
		key := string(m.Key)
		if want := fmt.Sprintf("stream-%d", val%7); key != want {
			t.Errorf("value %d key = %q, want %q", val, key, want)
		}
		if last, ok := lastOfKey[key]; ok && val <= last {
			t.Errorf("key %s: value %d after %d, want increasing", key, val, last)
		}
		lastOfKey[key] = val
		seen[val] = true
		var ceType string
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "kafka.") {
				t.Errorf("header %q: kafka.* metadata must not become a header", h.Key)
			}
			if h.Key == "ce_type" {
				ceType = string(h.Value)
			}
		}
		if ceType != "test.event" {
			t.Errorf("message %d: ce_type header = %q, want test.event", val, ceType)
		}
	}
	if len(seen) != n {
		t.Errorf("distinct values = %d, want %d", len(seen), n)
	}
	for _, b := range calls {
		if len(b.msgs) == 0 || len(b.msgs) > 512 {
			t.Errorf("batch of %d messages, want 1 to MaxBatch (512)", len(b.msgs))
		}
	}
}

// A failing Ingest is retried with the same batch, nothing after it is
// handed over meanwhile, and once it succeeds the batch is acked: a new
// consumer of the group starts after it.
func TestRetry(t *testing.T) {
	const topic = "tenant.acme.events"
	k := MustStartKafka(t)
	k.mustCreateTopic(t, topic, 1)
	k.mustPublish(t, topic, 0, 5, 1)
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	const failures = 3
	published := make(chan error, 1)
	v := &fakeIngester{fail: func(call int, _ string, msgs []vault.Message) error {
		if call < failures {
			if call == 0 {
				// More records arrive while the batch fails.
				go func() { published <- k.pub.Publish(topic, testMessages(5, 5)...) }()
			}
			return errors.New("store unavailable")
		}
		return nil
	}}
	rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: k.admin, Vault: v})
	if err := <-published; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitFor(t, "10 messages ingested", func() bool { return len(v.applied(topic)) == 10 })

	calls := v.calls()
	if len(calls) < failures+1 {
		t.Fatalf("%d Ingest calls, want at least %d", len(calls), failures+1)
	}
	offsets := func(b batch) []int64 {
		var o []int64
		for _, m := range b.msgs {
			o = append(o, m.Offset)
		}
		return o
	}
	first := offsets(calls[0])
	if first[0] != 0 {
		t.Errorf("first batch starts at offset %d, want 0", first[0])
	}
	for i := 1; i <= failures; i++ {
		if got := offsets(calls[i]); !slices.Equal(got, first) {
			t.Errorf("call %d offsets = %v, want the failed batch %v again", i, got, first)
		}
	}
	if calls[failures].err != nil {
		t.Errorf("call %d = %v, want success", failures, calls[failures].err)
	}
	for i, b := range calls {
		if (i < failures) != (b.err != nil) {
			t.Errorf("call %d err = %v", i, b.err)
		}
	}
	got := v.applied(topic)
	for i, m := range got {
		if m.Offset != int64(i) {
			t.Fatalf("applied offsets: %d at %d, want each of 0..9 once, in order", m.Offset, i)
		}
	}

	// Acked means committed: after the runner and its subscriber stop, the
	// group resumes after the 10 applied records.
	rr.stop(t)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	k.mustPublish(t, topic, 10, 1, 1)
	sub2 := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub2.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub2.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	select {
	case m := <-ch:
		if o := m.Metadata.Get(kafka.MetadataOffset); o != "10" {
			t.Errorf("resumed at offset %s, want 10", o)
		}
		m.Ack()
	case <-time.After(waitTimeout):
		t.Fatalf("no message within %s", waitTimeout)
	}
}

// A batch being applied when shutdown starts is finished, with a context
// that is not cancelled, and Run returns after it.
func TestShutdownFinishesBatch(t *testing.T) {
	const topic = "tenant.acme.events"
	k := MustStartKafka(t)
	k.mustCreateTopic(t, topic, 1)
	k.mustPublish(t, topic, 0, 3, 1)
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	entered := make(chan struct{})
	release := make(chan struct{})
	var first sync.Once
	v := &fakeIngester{block: func(ctx context.Context) {
		first.Do(func() {
			close(entered)
			<-release
		})
	}}
	rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: k.admin, Vault: v})
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no Ingest call within %s", waitTimeout)
	}
	rr.cancel()
	select {
	case err := <-rr.done:
		t.Fatalf("Run returned %v while a batch was being applied", err)
	default:
	}
	close(release)
	rr.stop(t)
	calls := v.calls()
	if len(calls) == 0 || !calls[0].ctxOK {
		t.Errorf("Ingest calls = %+v, want the first one with a live context", calls)
	}
}

// Run returns after its context is cancelled and leaves no goroutine behind.
func TestRunNoGoroutineLeak(t *testing.T) {
	k := MustStartKafka(t)
	topics := []string{"tenant.a1.events", "tenant.a2.events", "tenant.a3.events"}
	for _, tp := range topics {
		k.mustCreateTopic(t, tp, 2)
		k.mustPublish(t, tp, 0, 20, 3)
	}
	// The publisher's idle connections would linger for kafka-go's idle
	// timeout and blur the count: close it first.
	if err := k.pub.Close(); err != nil {
		t.Fatal(err)
	}
	// The admin's client keeps a connection per kind of request open until
	// it idles out: make the one discovery uses before counting.
	if _, err := k.admin.ListTopics(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })
	before := runtime.NumGoroutine()

	v := &fakeIngester{}
	r, err := ingest.New(ingest.Config{Subscriber: sub, Topics: k.admin, Vault: v, DiscoverInterval: 50 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for _, tp := range topics {
		waitFor(t, tp+" ingested", func() bool { return len(v.applied(tp)) == 20 })
	}
	during := runtime.NumGoroutine()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %s of cancel", waitTimeout)
	}
	if got := r.Active(); len(got) != 0 {
		t.Errorf("Active() after Run = %v, want none", got)
	}

	// Subscriptions end with the context; their connections close on
	// both sides shortly after.
	const tolerance = 2
	deadline := time.Now().Add(waitTimeout)
	for {
		after := runtime.NumGoroutine()
		if after <= before+tolerance {
			t.Logf("goroutines: %d before Run, %d while consuming, %d after", before, during, after)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before Run, %d after it returned\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
