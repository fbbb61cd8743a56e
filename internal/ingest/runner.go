package ingest

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// Subscriber is the part of a watermill Subscriber the runner uses.
type Subscriber interface {
	Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error)
}

// TopicLister lists the broker's topics.
type TopicLister interface {
	ListTopics(ctx context.Context) ([]string, error)
}

// Ingester applies a batch of one topic's records.
type Ingester interface {
	Ingest(ctx context.Context, topic string, msgs []vault.Message) error
}

// Config configures a Runner.
type Config struct {
	Subscriber Subscriber
	Topics     TopicLister
	Vault      Ingester
	// MaxBatch bounds the records handed to the vault at once; default 512.
	MaxBatch int
	// Linger is how long a batch waits for more messages after its first
	// one, unless it fills up first; default 5ms. Messages are handed over
	// one at a time, so without it a batch holds what happened to be ready
	// that instant: often one message, and one store commit each.
	Linger time.Duration
	// DiscoverInterval is how often the broker's topic list is read to find
	// tenant topics created by others; default 1s.
	DiscoverInterval time.Duration
	Logger           *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.DiscoverInterval == 0 {
		c.DiscoverInterval = time.Second
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Subscriber == nil {
		errs = append(errs, errors.New("ingest: Subscriber is required"))
	}
	if c.Topics == nil {
		errs = append(errs, errors.New("ingest: Topics is required"))
	}
	if c.Vault == nil {
		errs = append(errs, errors.New("ingest: Vault is required"))
	}
	if c.MaxBatch < 0 || c.DiscoverInterval < 0 || c.Linger < 0 {
		errs = append(errs, errors.New("ingest: MaxBatch, Linger and DiscoverInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// Runner consumes every tenant topic until its context ends.
type Runner struct {
	cfg  Config
	adds chan string

	mu     sync.Mutex
	active map[string]bool
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, adds: make(chan string, 64), active: make(map[string]bool)}, nil
}

// Add asks the runner to consume topic now, without waiting for discovery.
// It never blocks: if the request queue is full, discovery finds the topic.
func (r *Runner) Add(topic string) {
	select {
	case r.adds <- topic:
	default:
	}
}

// Run discovers and consumes tenant topics until ctx is done. It returns
// after every consumer has stopped.
func (r *Runner) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	start := func(topic string) {
		if !events.IsTenantTopic(topic) {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.active[topic] {
			return
		}
		r.active[topic] = true
		g.Go(func() error {
			defer func() {
				r.mu.Lock()
				delete(r.active, topic)
				r.mu.Unlock()
			}()
			return r.consume(ctx, topic)
		})
	}
	discover := func() {
		topics, err := r.cfg.Topics.ListTopics(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.cfg.Logger.Warn("list topics", "err", err)
			}
			return
		}
		for _, t := range topics {
			start(t)
		}
	}
	g.Go(func() error {
		discover()
		tick := time.NewTicker(r.cfg.DiscoverInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				discover()
			case t := <-r.adds:
				start(t)
			}
		}
	})
	return g.Wait()
}

// Active lists the topics being consumed.
func (r *Runner) Active() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.active))
	for t := range r.active {
		out = append(out, t)
	}
	return out
}

// consume reads topic's messages in batches of what is already in flight,
// hands each batch to the vault, retrying with backoff while the vault
// fails (order is kept: the batch is not acked, nothing after it is
// processed), and acks the batch once the vault has committed it.
func (r *Runner) consume(ctx context.Context, topic string) error {
	ch, err := r.cfg.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Logger.Error("subscribe", "topic", topic, "err", err)
		return nil // discovery retries later
	}
	log := r.cfg.Logger.With("topic", topic)
	batch := make([]*message.Message, 0, r.cfg.MaxBatch)
	msgs := make([]vault.Message, 0, r.cfg.MaxBatch)
	linger := time.NewTimer(r.cfg.Linger)
	defer linger.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			batch = append(batch, m)
		}
		linger.Reset(r.cfg.Linger)
	fill:
		for len(batch) < r.cfg.MaxBatch {
			select {
			case m, ok := <-ch:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		msgs = msgs[:0]
		for _, m := range batch {
			msgs = append(msgs, toVault(topic, m))
		}
		// A batch taken off the channel is finished even when shutdown
		// starts meanwhile: its commit is not interrupted half-way.
		backoff := 50 * time.Millisecond
		for {
			err := r.cfg.Vault.Ingest(context.WithoutCancel(ctx), topic, msgs)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				for _, m := range batch {
					m.Nack()
				}
				return nil
			}
			log.Error("ingest batch failed; retrying", "records", len(msgs), "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				for _, m := range batch {
					m.Nack()
				}
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		for _, m := range batch {
			m.Ack()
		}
	}
}

// toVault converts a watermill message from the Kafka subscriber into the
// vault's record: Kafka coordinates and key from the kafka.* metadata, every
// other metadata entry as a record header.
func toVault(topic string, m *message.Message) vault.Message {
	vm := vault.Message{Topic: topic, Value: m.Payload}
	for k, v := range m.Metadata {
		switch k {
		case kafka.MetadataTopic:
			vm.Topic = v
		case kafka.MetadataPartition:
			p, _ := strconv.Atoi(v)
			vm.Partition = p
		case kafka.MetadataOffset:
			o, _ := strconv.ParseInt(v, 10, 64)
			vm.Offset = o
		case kafka.MetadataKey:
			vm.Key = []byte(v)
		default:
			vm.Headers = append(vm.Headers, events.Header{Key: k, Value: []byte(v)})
		}
	}
	return vm
}
