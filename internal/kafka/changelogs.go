package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Changelogs writes and reads per-tenant changelog topics (one partition,
// compacted; see EnsureChangelogTopic) for a node that is not in a Kafka
// transaction: Append produces with the idempotent producer, acks from
// every in-sync replica, and returns once durable.
type Changelogs struct {
	brokers []string
	auth    Auth
	admin   *Admin
	cl      *kgo.Client

	mu      sync.Mutex
	ensured map[string]bool
}

// NewChangelogs returns Changelogs on the cluster at brokers, as auth,
// creating topics with admin.
func NewChangelogs(brokers []string, auth Auth, admin *Admin, logger *slog.Logger) (*Changelogs, error) {
	if len(brokers) == 0 || admin == nil {
		return nil, errors.New("changelogs: brokers and admin are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(16 << 20),
		kgo.WithLogger(kgoLogger{logger}),
	}, auth.kgoOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("changelogs: %w", err)
	}
	return &Changelogs{brokers: brokers, auth: auth, admin: admin, cl: cl, ensured: make(map[string]bool)}, nil
}

func (c *Changelogs) ensure(ctx context.Context, topic string) error {
	c.mu.Lock()
	done := c.ensured[topic]
	c.mu.Unlock()
	if done {
		return nil
	}
	if err := EnsureChangelogTopic(ctx, c.admin, topic); err != nil {
		return err
	}
	c.mu.Lock()
	c.ensured[topic] = true
	c.mu.Unlock()
	return nil
}

// Append writes recs (key, value) to topic's partition 0, creating topic
// as a changelog first if needed, and returns the offset after the last.
func (c *Changelogs) Append(ctx context.Context, topic string, recs [][2][]byte) (int64, error) {
	if len(recs) == 0 {
		return 0, errors.New("changelogs: nothing to append")
	}
	if err := c.ensure(ctx, topic); err != nil {
		return 0, err
	}
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Topic: topic, Partition: 0, Key: r[0], Value: r[1]}
	}
	if err := c.cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("changelog %s: %w", topic, err)
	}
	last := int64(-1)
	for _, r := range krs {
		last = max(last, r.Offset)
	}
	return last + 1, nil
}

// Read calls fn with the records of topic's partition 0 from offset from
// to its end as of the call (ReadToEnd), with the offset after each. A
// topic that does not exist holds nothing.
func (c *Changelogs) Read(ctx context.Context, topic string, from int64, fn func(next int64, value []byte) error) error {
	_, err := ReadToEnd(ctx, c.brokers, c.auth, topic, 0, from, func(r Record) error {
		return fn(r.Offset+1, r.Value)
	})
	if errors.Is(err, ErrTopicNotFound) {
		return nil
	}
	return err
}

// Delete deletes topic (a shred).
func (c *Changelogs) Delete(ctx context.Context, topic string) error {
	c.mu.Lock()
	delete(c.ensured, topic)
	c.mu.Unlock()
	return c.admin.DeleteTopic(ctx, topic)
}

// Close closes the producer.
func (c *Changelogs) Close() { c.cl.Close() }
