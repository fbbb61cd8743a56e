package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicLogConfig configures a TopicLog.
type TopicLogConfig struct {
	Brokers []string // required
	Auth    Auth
	Topic   string // required: a one-partition, compacted topic (created if missing)
	// Apply is called with every record of the topic, in offset order,
	// from its first, from one goroutine; a nil Value is a tombstone.
	// Required.
	Apply  func(key, value []byte, offset int64)
	Logger *slog.Logger
}

// TopicLog is a compacted one-partition Kafka topic read as a replicated
// table, like Kafka Streams' global tables: every process that opens it
// reads it from its start and then follows it, and each Put is seen by all
// of them in the same order. It is how the nodes of a cluster share what
// is not any one node's (which tenants exist, their wrapped keysets, where
// each node answers).
type TopicLog struct {
	cfg    TopicLogConfig
	cl     *kgo.Client
	adm    *kadm.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	next    int64         // offset after the last record applied
	advance chan struct{} // closed and replaced when next moves
}

// OpenTopicLog creates cfg.Topic if it is missing (compacted, one
// partition) and starts following it.
func OpenTopicLog(ctx context.Context, cfg TopicLogConfig) (*TopicLog, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Apply == nil {
		return nil, errors.New("topic log: brokers, topic and apply are required")
	}
	if !validTopicName(cfg.Topic) {
		return nil, fmt.Errorf("topic log: invalid topic name %.260q", cfg.Topic)
	}
	if err := cfg.Auth.Validate(); err != nil {
		return nil, fmt.Errorf("topic log: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(250 * time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.WithLogger(kgoLogger{cfg.Logger.With("topic", cfg.Topic)}),
	}, cfg.Auth.kgoOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("topic log: %w", err)
	}
	adm := kadm.NewClient(cl)
	_, err = adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": new("compact")}, cfg.Topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, fmt.Errorf("topic log: create %s: %w", cfg.Topic, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l := &TopicLog{cfg: cfg, cl: cl, adm: adm, cancel: cancel, done: make(chan struct{}), advance: make(chan struct{})}
	go l.follow(runCtx)
	return l, nil
}

func (l *TopicLog) follow(ctx context.Context) {
	defer close(l.done)
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.cfg.Logger.Warn("topic log: fetch", "topic", l.cfg.Topic, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			l.cfg.Apply(r.Key, r.Value, r.Offset)
			l.moved(r.Offset + 1)
		})
	}
}

func (l *TopicLog) moved(next int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if next > l.next {
		l.next = next
		close(l.advance)
		l.advance = make(chan struct{})
	}
}

// Put appends key = value (nil value: a tombstone) and returns once the
// brokers acknowledged it, with its offset. It is applied here, as
// everywhere, when the log reads it back (CaughtUp waits for that).
func (l *TopicLog) Put(ctx context.Context, key, value []byte) (int64, error) {
	r := &kgo.Record{Topic: l.cfg.Topic, Partition: 0, Key: key, Value: value}
	if err := l.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return 0, fmt.Errorf("topic log: put to %s: %w", l.cfg.Topic, err)
	}
	return r.Offset, nil
}

// WaitApplied returns once the record at offset was applied here.
func (l *TopicLog) WaitApplied(ctx context.Context, offset int64) error {
	for {
		l.mu.Lock()
		next, ch := l.next, l.advance
		l.mu.Unlock()
		if next > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CaughtUp returns once every record the topic had when it was called is
// applied here.
func (l *TopicLog) CaughtUp(ctx context.Context) error {
	ends, err := l.adm.ListEndOffsets(ctx, l.cfg.Topic)
	if err != nil {
		return fmt.Errorf("topic log: end of %s: %w", l.cfg.Topic, err)
	}
	o, ok := ends.Lookup(l.cfg.Topic, 0)
	if !ok || o.Err != nil {
		return fmt.Errorf("topic log: end of %s: %v", l.cfg.Topic, o.Err)
	}
	if o.Offset == 0 {
		return nil
	}
	return l.WaitApplied(ctx, o.Offset-1)
}

// Close stops following the topic.
func (l *TopicLog) Close() error {
	l.cancel()
	l.cl.Close()
	<-l.done
	return nil
}
