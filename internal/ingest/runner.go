package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// Subscriber is the part of a watermill Subscriber the runner uses. The
// channel Subscribe returns must close once ctx is done (kafka.Subscriber's
// does, after leaving the topic's group): a topic's consumer waits for it
// before it counts as stopped.
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

// Deleter deletes a topic's records below an offset in each partition
// named; an offset at or below what was deleted already is no error.
// kafka.Admin is one.
type Deleter interface {
	DeleteRecords(ctx context.Context, topic string, before map[int]int64) error
}

// TopicIdentifier looks up topics' broker ids (Kafka topic IDs).
// kafka.Admin is one.
type TopicIdentifier interface {
	// TopicID is topic's id.
	TopicID(ctx context.Context, topic string) (string, error)
	// TopicIDs lists every topic with its id.
	TopicIDs(ctx context.Context) (map[string]string, error)
}

// OffsetResetter forgets the committed offsets of a topic's consumers, so
// that the topic is consumed again from its start. kafka.Subscriber is one.
type OffsetResetter interface {
	ResetOffsets(ctx context.Context, topic string) error
}

// Config configures a Runner.
type Config struct {
	Subscriber Subscriber
	Topics     TopicLister
	Vault      Ingester
	// TopicIDs, when set, stamps every batch with the id of the topic it
	// was read from, looked up after the batch was fetched: since a topic
	// id is never reused, an id that matches the vault's topic proves the
	// records came from that topic, not from one created again in its
	// name. Discovery then also lists topics with their ids: a consumed
	// topic whose id changed (deleted and created again) is consumed again
	// from its start, its committed offsets forgotten (when the Subscriber
	// is an OffsetResetter), since the offsets of the old topic mean
	// nothing in the new one. Optional.
	TopicIDs TopicIdentifier
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

	// KeepIngress keeps the records on the broker after the vault has
	// sealed them (vaultd's --ingress-retention=keep). By default (false)
	// the runner deletes them: once a batch is acked (the vault committed
	// it), the records up to it are deleted from their partitions within
	// RetentionInterval, so the broker keeps a tenant's plaintext only
	// until it is sealed.
	KeepIngress bool
	// Deleter deletes sealed records. Default: Topics, if it is a Deleter
	// (kafka.Admin is). Required unless KeepIngress.
	Deleter Deleter
	// RetentionInterval is how often sealed records are deleted, with one
	// DeleteRecords per topic whose sealed offsets moved; default 1s.
	RetentionInterval time.Duration

	Logger *slog.Logger
	// ObserveBatch, when set, is told how long each batch the vault
	// applied took, retries included (a latency histogram).
	ObserveBatch func(time.Duration)
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
	if c.RetentionInterval == 0 {
		c.RetentionInterval = time.Second
	}
	c.Deleter = c.deleter()
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
	if !c.KeepIngress && c.deleter() == nil {
		errs = append(errs, errors.New("ingest: Deleter is required unless KeepIngress (Topics is not one)"))
	}
	if c.MaxBatch < 0 || c.DiscoverInterval < 0 || c.Linger < 0 || c.RetentionInterval < 0 {
		errs = append(errs, errors.New("ingest: MaxBatch, Linger, DiscoverInterval and RetentionInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// deleter returns Deleter, or else Topics if it is one.
func (c *Config) deleter() Deleter {
	if c.Deleter != nil {
		return c.Deleter
	}
	if d, ok := c.Topics.(Deleter); ok {
		return d
	}
	return nil
}

// Runner consumes every tenant topic until its context ends, and deletes
// the records the vault has sealed (unless Config.KeepIngress).
type Runner struct {
	cfg  Config
	adds chan string

	mu        sync.Mutex
	consumers map[string]*consumer   // by topic
	removed   map[string]time.Time   // topics Remove stopped, and when: discovery leaves them alone for a while
	retention map[string]*retainment // by topic

	// deleting is held while records are deleted, so that Remove can wait
	// for a deletion of its topic to end.
	deleting sync.Mutex
}

// consumer is the goroutine that consumes one topic.
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once it has returned
	id     string        // the topic's id when discovery first saw it consumed; "" until then
}

// retainment is what the runner knows of one topic's sealed records.
type retainment struct {
	sealed  map[int]int64 // partition → offset after the last record acked (sealed by the vault)
	deleted map[int]int64 // partition → offset below which DeleteRecords last succeeded
	failing bool          // the last deletion failed (logged at Warn once)
}

// due returns the partitions whose sealed offset moved since their last
// deletion, with that offset.
func (rt *retainment) due() map[int]int64 {
	var before map[int]int64
	for p, o := range rt.sealed {
		if d, ok := rt.deleted[p]; ok && d == o {
			continue
		}
		if before == nil {
			before = make(map[int]int64, len(rt.sealed))
		}
		before[p] = o
	}
	return before
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runner{
		cfg:       cfg,
		adds:      make(chan string, 64),
		consumers: make(map[string]*consumer),
		removed:   make(map[string]time.Time),
		retention: make(map[string]*retainment),
	}, nil
}

// Add asks the runner to consume topic now, without waiting for discovery
// (also a topic that Remove stopped). It never blocks: if the request queue
// is full, discovery finds the topic.
func (r *Runner) Add(topic string) {
	select {
	case r.adds <- topic:
	default:
	}
}

// removedGrace is how many discovery intervals discovery leaves a topic
// that Remove stopped alone while the topic is still listed, so that the
// caller can delete it first.
const removedGrace = 10

// Remove stops consuming topic: it cancels the topic's consumer and returns
// once it has stopped (a batch being applied is finished and acked first:
// no Ingest of topic is in flight when Remove returns, and none follows;
// the consumer has left the topic's group), and forgets the topic's sealed
// offsets, waiting for a deletion of its records in flight to end. It
// returns ctx's error if ctx ends first; the consumer stops all the same.
//
// Discovery leaves the topic alone while it is still listed, for ten
// discovery intervals, so that the caller can delete it (and its group)
// first; once discovery has seen it gone, or after that, a topic of that
// name is consumed again from its group's committed offset (or its start),
// and its records sealed (or skipped) and deleted as any other. Add
// consumes it again at once.
func (r *Runner) Remove(ctx context.Context, topic string) error {
	r.mu.Lock()
	c := r.consumers[topic]
	r.removed[topic] = time.Now()
	r.mu.Unlock()
	if c != nil {
		c.cancel()
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("remove %s: %w", topic, context.Cause(ctx))
		}
	}
	r.deleting.Lock()
	r.mu.Lock()
	delete(r.retention, topic)
	r.mu.Unlock()
	r.deleting.Unlock()
	return nil
}

// SealedOffsets returns, for each partition of topic the runner has acked
// records of, the offset after the last one: the records below it are
// sealed by the vault, and deleted within RetentionInterval unless
// KeepIngress. nil if none.
func (r *Runner) SealedOffsets(topic string) map[int]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.retention[topic]
	if rt == nil {
		return nil
	}
	return maps.Clone(rt.sealed)
}

// Run discovers and consumes tenant topics until ctx is done, deleting
// sealed records every RetentionInterval. It returns after every consumer
// has stopped, and after deleting what was sealed since the last pass.
func (r *Runner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		r.discover(gctx, g)
		tick := time.NewTicker(r.cfg.DiscoverInterval)
		defer tick.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-tick.C:
				r.discover(gctx, g)
			case t := <-r.adds:
				r.start(gctx, g, t, true)
			}
		}
	})
	if !r.cfg.KeepIngress {
		g.Go(func() error {
			tick := time.NewTicker(r.cfg.RetentionInterval)
			defer tick.Stop()
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-tick.C:
					r.deleteSealed(gctx)
				}
			}
		})
	}
	err := g.Wait()
	if !r.cfg.KeepIngress {
		// What the last batches sealed, rather than at the next start
		// (a tenant without new records would keep them until its next).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		r.deleteSealed(dctx)
		cancel()
	}
	return err
}

// start starts consuming topic, a tenant topic, in g unless it is consumed
// already, or Remove stopped it and discovery (not explicit: not Add)
// leaves it alone yet.
func (r *Runner) start(ctx context.Context, g *errgroup.Group, topic string, explicit bool) {
	if !events.IsTenantTopic(topic) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.consumers[topic] != nil {
		return
	}
	if at, ok := r.removed[topic]; ok {
		if !explicit && time.Since(at) < removedGrace*r.cfg.DiscoverInterval {
			return
		}
		delete(r.removed, topic)
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	r.consumers[topic] = c
	g.Go(func() error {
		defer func() {
			cancel()
			r.mu.Lock()
			if r.consumers[topic] == c {
				delete(r.consumers, topic)
			}
			r.mu.Unlock()
			close(c.done)
		}()
		return r.consume(cctx, topic, c)
	})
}

// discover reads the broker's topic list and starts consuming the tenant
// topics not consumed yet; with TopicIDs, a consumed topic whose id changed
// is consumed again from its start (see reincarnated).
func (r *Runner) discover(ctx context.Context, g *errgroup.Group) {
	var topics []string
	var ids map[string]string
	var err error
	if r.cfg.TopicIDs != nil {
		ids, err = r.cfg.TopicIDs.TopicIDs(ctx)
		for t := range ids {
			topics = append(topics, t)
		}
	} else {
		topics, err = r.cfg.Topics.ListTopics(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("list topics", "err", err)
		}
		return
	}
	if ids != nil {
		r.checkIDs(ctx, g, ids)
	}
	listed := make(map[string]bool, len(topics))
	for _, t := range topics {
		listed[t] = true
	}
	r.mu.Lock()
	for t := range r.removed {
		if !listed[t] {
			delete(r.removed, t) // gone: consume it if it comes back
		}
	}
	r.mu.Unlock()
	for _, t := range topics {
		r.start(ctx, g, t, false)
	}
}

// checkIDs compares the id of each consumed topic with the one listed in
// ids: a topic whose id changed (deleted and created again) is consumed
// again from its start, once.
func (r *Runner) checkIDs(ctx context.Context, g *errgroup.Group, ids map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, c := range r.consumers {
		id, listed := ids[t]
		switch {
		case !listed || id == "":
		case c.id == "":
			c.id = id
		case c.id != id:
			r.cfg.Logger.Warn("topic was deleted and created again: consuming it again from its start", "topic", t, "topic_id", id, "was", c.id)
			c.id = id // restarted once
			g.Go(func() error { r.reincarnated(ctx, t); return nil })
		}
	}
}

// reincarnated restarts the consumer of topic, a topic deleted and created
// again: it stops it, forgets its group's committed offsets and its sealed
// offsets (they are the old topic's), and consumes the topic again from its
// start.
func (r *Runner) reincarnated(ctx context.Context, topic string) {
	if err := r.Remove(ctx, topic); err != nil {
		return // shutting down
	}
	if rs, ok := r.cfg.Subscriber.(OffsetResetter); ok {
		if err := rs.ResetOffsets(ctx, topic); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("reset offsets of a re-created topic", "topic", topic, "err", err)
		}
	}
	r.Add(topic)
}

// Active lists the topics being consumed.
func (r *Runner) Active() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.consumers))
	for t := range r.consumers {
		out = append(out, t)
	}
	return out
}

// sealed records that the vault committed msgs, a batch of topic.
func (r *Runner) sealed(topic string, msgs []vault.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := r.retention[topic]
	if rt == nil {
		rt = &retainment{sealed: make(map[int]int64), deleted: make(map[int]int64)}
		r.retention[topic] = rt
	}
	// A batch holds each partition's messages in offset order: the last
	// one counts. It may be below the offset before (the partition was
	// read again: a rebalance, a topic created again), and then what is
	// above it is no longer known to be this topic's sealed records.
	for _, m := range msgs {
		rt.sealed[m.Partition] = m.Offset + 1
	}
}

// deleteSealed deletes the records sealed since the last pass, one
// DeleteRecords per topic whose sealed offsets moved.
func (r *Runner) deleteSealed(ctx context.Context) {
	r.mu.Lock()
	var topics []string
	for t, rt := range r.retention {
		if rt.due() != nil {
			topics = append(topics, t)
		}
	}
	r.mu.Unlock()
	for _, t := range topics {
		if ctx.Err() != nil {
			return
		}
		r.deleteTopicSealed(ctx, t)
	}
}

func (r *Runner) deleteTopicSealed(ctx context.Context, topic string) {
	r.deleting.Lock()
	defer r.deleting.Unlock()
	r.mu.Lock()
	rt := r.retention[topic]
	var before map[int]int64
	if rt != nil {
		before = rt.due()
	}
	r.mu.Unlock()
	if before == nil {
		return
	}
	err := r.cfg.Deleter.DeleteRecords(ctx, topic, before)
	log := r.cfg.Logger.With("topic", topic)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		for p, o := range before {
			rt.deleted[p] = o
		}
		if rt.failing {
			log.Info("delete sealed ingress records: recovered")
		}
		rt.failing = false
		log.Debug("deleted sealed ingress records", "before", before)
	case errors.Is(err, kafka.ErrTopicNotFound):
		// Gone, and its records with it. Records of a topic created
		// again under its name are sealed and deleted afresh.
		delete(r.retention, topic)
		log.Debug("delete sealed ingress records: topic gone", "err", err)
	case ctx.Err() != nil:
	default:
		lvl := slog.LevelWarn
		if rt.failing {
			lvl = slog.LevelDebug
		}
		rt.failing = true
		log.Log(ctx, lvl, "delete sealed ingress records; retrying", "before", before, "err", err, "interval", r.cfg.RetentionInterval)
	}
}

// consume reads topic's messages in batches of what is already in flight,
// hands each batch to the vault, retrying with backoff while the vault
// fails (order is kept: the batch is not acked, nothing after it is
// processed), and acks the batch once the vault has committed it.
func (r *Runner) consume(ctx context.Context, topic string, c *consumer) error {
	// The topic's id before anything is read from it: a batch stamped
	// with another was read from a topic deleted and created again since.
	var startID string
	if r.cfg.TopicIDs != nil {
		if id, err := r.cfg.TopicIDs.TopicID(ctx, topic); err == nil {
			startID = id
			r.mu.Lock()
			c.id = id
			r.mu.Unlock()
		}
	}
	ch, err := r.cfg.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		r.cfg.Logger.Error("subscribe", "topic", topic, "err", err)
		return nil // discovery retries later
	}
	// Return only once the subscription has stopped (its channel closes
	// after ctx is done): Remove's caller may delete the topic next, and a
	// live consumer would create it again.
	defer func() {
		for m := range ch {
			m.Nack()
		}
	}()
	log := r.cfg.Logger.With("topic", topic)
	batch := make([]*message.Message, 0, r.cfg.MaxBatch)
	msgs := make([]vault.Message, 0, r.cfg.MaxBatch)
	linger := time.NewTimer(r.cfg.Linger)
	defer linger.Stop()
	for {
		var ok bool
		if batch, ok = r.gather(ctx, ch, batch[:0], linger); !ok {
			return nil
		}
		msgs = msgs[:0]
		for _, m := range batch {
			msgs = append(msgs, toVault(topic, m))
		}
		if !r.applyBatch(ctx, log, topic, c, &startID, batch, msgs) {
			return nil
		}
		for _, m := range batch {
			m.Ack()
		}
		r.sealed(topic, msgs)
	}
}

// gather appends to batch the next message of ch, and those that follow
// within Linger, up to MaxBatch; false once ctx is done or ch is closed
// before a first message.
func (r *Runner) gather(ctx context.Context, ch <-chan *message.Message, batch []*message.Message, linger *time.Timer) ([]*message.Message, bool) {
	select {
	case <-ctx.Done():
		return batch, false
	case m, ok := <-ch:
		if !ok {
			return batch, false
		}
		batch = append(batch, m)
	}
	linger.Reset(r.cfg.Linger)
	defer linger.Stop()
	for len(batch) < r.cfg.MaxBatch {
		select {
		case m, ok := <-ch:
			if !ok {
				return batch, true
			}
			batch = append(batch, m)
		case <-linger.C:
			return batch, true
		}
	}
	return batch, true
}

// applyBatch hands msgs, the batch's records, to the vault, retrying with
// backoff while it fails, and reports whether it did: false when the
// consumer is to stop (ctx is done, or the records came from another topic
// of the same name than the one the consumer started on, *startID, which
// is then consumed again from its start), with the batch nacked.
//
// A batch taken off the channel is finished even when shutdown starts
// meanwhile: its commit is not interrupted half-way.
func (r *Runner) applyBatch(ctx context.Context, log *slog.Logger, topic string, c *consumer, startID *string, batch []*message.Message, msgs []vault.Message) bool {
	nack := func() {
		for _, m := range batch {
			m.Nack()
		}
	}
	backoff := 50 * time.Millisecond
	start := time.Now()
	for {
		err := r.stampTopicID(context.WithoutCancel(ctx), topic, msgs)
		if err == nil && len(msgs) > 0 {
			if id := msgs[0].TopicID; *startID == "" {
				*startID = id
			} else if id != "" && id != *startID {
				// Read from another topic of the same name than the
				// one this consumer started on (deleted and created
				// again): the position and the sealed offsets are the
				// old topic's. Nothing of it is handed over; the topic
				// is consumed again from its start.
				log.Warn("topic was deleted and created again: consuming it again from its start", "topic_id", id, "was", *startID)
				nack()
				r.mu.Lock()
				c.id = id
				r.mu.Unlock()
				go r.reincarnated(context.WithoutCancel(ctx), topic)
				return false
			}
		}
		if err == nil {
			err = r.cfg.Vault.Ingest(context.WithoutCancel(ctx), topic, msgs)
		}
		if err == nil {
			if r.cfg.ObserveBatch != nil {
				r.cfg.ObserveBatch(time.Since(start))
			}
			return true
		}
		if ctx.Err() != nil {
			nack()
			return false
		}
		log.Error("ingest batch failed; retrying", "records", len(msgs), "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			nack()
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// stampTopicID sets the TopicID of msgs, fetched from topic, to topic's id
// now (see Config.TopicIDs).
func (r *Runner) stampTopicID(ctx context.Context, topic string, msgs []vault.Message) error {
	if r.cfg.TopicIDs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id, err := r.cfg.TopicIDs.TopicID(ctx, topic)
	if err != nil {
		return fmt.Errorf("topic id: %w", err)
	}
	for i := range msgs {
		msgs[i].TopicID = id
	}
	return nil
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
