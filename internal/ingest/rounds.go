package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/internal/kafka"
)

// RoundConsumer is the Kafka side of a RoundRunner: one consumer of every
// tenant topic, handing out what one poll fetched, whose rounds commit
// their offsets with Commit. kafka.Consumer is one.
type RoundConsumer interface {
	Poller
	Commit(ctx context.Context, ps kafka.Positions) error
}

// Poller is what both kinds of round consumer (RoundConsumer,
// TxnRoundConsumer) do.
type Poller interface {
	Poll(ctx context.Context) ([]kafka.Batch, error)
	AllowRebalance()
	Rewind(ps kafka.Positions)
	Pause(tps map[string][]int32)
	Resume(tps map[string][]int32)
	Forget(topics ...string)
	Refresh()
}

// ManyDeleter deletes sealed records of many topics in one request.
// kafka.Admin is one.
type ManyDeleter interface {
	// ids names the topic ID each topic's offsets were read with; a topic
	// whose ID changed since is left alone.
	DeleteRecordsMany(ctx context.Context, before map[string]map[int]int64, ids map[string]string) error
}

// LagReader reads how far the consumer group is behind every tenant
// partition. kafka.Admin's GroupLag, bound to the group, is one.
type LagReader interface {
	Lag(ctx context.Context) ([]kafka.PartitionLag, error)
}

// RoundsConfig configures a RoundRunner.
type RoundsConfig struct {
	// Consumer or Txn (exactly one) is the Kafka side. With Txn (a node
	// of a cluster) each round is one Kafka transaction: see
	// TxnRoundConsumer.
	Consumer RoundConsumer
	Txn      TxnRoundConsumer
	Vault    Ingester // required; with Txn, a Preparer as well
	// EnsureChangelog creates a tenant's changelog topic if it does not
	// exist (kafka.EnsureChangelogTopic); required with Txn. The runner
	// calls it once per topic.
	EnsureChangelog func(ctx context.Context, topic string) error
	// KeepIngress keeps the records on the broker once sealed; by default
	// the records of every committed round are deleted (one DeleteRecords
	// request for the round, or for the rounds committed while the last
	// one was in flight).
	KeepIngress bool
	// Deleter deletes sealed records; required unless KeepIngress.
	Deleter ManyDeleter
	// Parallel bounds the partitions applied at once in a round; default
	// 4. Partitions of one topic are applied one after the other.
	Parallel int
	// Retries is how often a batch the vault failed to apply is tried
	// again within its round (with backoff from 50ms) before its
	// partition is paused for PauseFor and read again; default 3.
	Retries int
	// PauseFor is how long a partition whose batch kept failing is paused;
	// default 5s. Other partitions go on meanwhile.
	PauseFor time.Duration
	// StuckAfter is how long a partition may keep failing, or lag behind
	// its end without its committed offset moving, before Health reports
	// ingest unhealthy (vaultd's /readyz); default 1m.
	StuckAfter time.Duration
	// Lag reads the group's lag every LagInterval (default 10s); nil: the
	// lag is not watched.
	Lag         LagReader
	LagInterval time.Duration
	Logger      *slog.Logger
	// Now is the clock of StuckAfter; default time.Now.
	Now func() time.Time
	// ObserveBatch, when set, is told how long each batch the vault
	// applied took, retries included (a latency histogram).
	ObserveBatch func(time.Duration)
}

func (c *RoundsConfig) setDefaults() {
	if c.Parallel == 0 {
		c.Parallel = 4
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	if c.PauseFor == 0 {
		c.PauseFor = 5 * time.Second
	}
	if c.StuckAfter == 0 {
		c.StuckAfter = time.Minute
	}
	if c.LagInterval == 0 {
		c.LagInterval = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of c.
func (c *RoundsConfig) Validate() error {
	var errs []error
	if (c.Consumer == nil) == (c.Txn == nil) {
		errs = append(errs, errors.New("ingest: exactly one of Consumer and Txn is required"))
	}
	if c.Txn != nil {
		if _, ok := c.Vault.(Preparer); !ok && c.Vault != nil {
			errs = append(errs, errors.New("ingest: with Txn, the Vault must be a Preparer"))
		}
		if c.EnsureChangelog == nil {
			errs = append(errs, errors.New("ingest: EnsureChangelog is required with Txn"))
		}
	}
	if c.Vault == nil {
		errs = append(errs, errors.New("ingest: Vault is required"))
	}
	if !c.KeepIngress && c.Deleter == nil {
		errs = append(errs, errors.New("ingest: Deleter is required unless KeepIngress"))
	}
	if c.Parallel < 0 || c.Retries < 0 || c.PauseFor < 0 || c.StuckAfter < 0 || c.LagInterval < 0 {
		errs = append(errs, errors.New("ingest: Parallel, Retries, PauseFor, StuckAfter and LagInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// RoundRunner consumes every tenant topic with one consumer, in commit
// rounds: it applies everything one poll fetched, each partition's batch
// into its tenant's own store (tenants in parallel), waits until all of it
// (stores and audit records) is durable, then commits the round's offsets
// and deletes its sealed ingress records. Nothing of a round is committed
// before it is durable, so a crash anywhere re-delivers at most the round,
// which the stores' offsets and event ids make idempotent.
//
// A batch the vault keeps failing to apply does not stall the others: its
// partition is read again from that batch after a pause, uncommitted.
// Records of a topic read with another topic ID than the one its partition
// was read with before (deleted and created again) are not applied: the
// partition is read again from its start.
type RoundRunner struct {
	cfg RoundsConfig
	c   Poller // cfg.Consumer or cfg.Txn

	ensured   map[string]bool // changelog topics EnsureChangelog created (Txn)
	beforeEnd func()          // tests: called between a transactional round's prepare and its End

	round sync.Mutex // held while a round is applied and committed

	mu         sync.Mutex
	removed    map[string]string        // topics Remove stopped, with the topic ID they had then ("" unknown)
	ids        map[tp]string            // topic ID each partition was last read with
	paused     map[tp]time.Time         // partitions paused until
	failing    map[tp]time.Time         // partitions whose batches fail, since
	pending    map[string]map[int]int64 // sealed offsets not yet deleted
	pendIDs    map[string]string        // topic ID the pending offsets of each topic were read with
	fails      map[string]int           // failed deletions of a topic's pending offsets in a row
	wake       chan struct{}            // pending has news
	stats      RoundStats
	lag        LagReport
	stalled    map[tp]lagSeen  // partitions behind their end: their committed offset, unchanged since
	held       map[string]bool // topics Hold stopped until their Seek
	seeks      []seekReq       // for the poll goroutine
	pollCancel func()          // cuts the poll in flight short; nil between polls
}

// lagSeen is a lagging partition's committed offset and since when it
// has not moved.
type lagSeen struct {
	committed int64
	since     time.Time
}

// LagReport is the consumer group's lag as last measured.
type LagReport struct {
	At    time.Time // when it was measured; zero: not yet (or no LagReader)
	Err   error     // the last measurement's error; the figures are those of the one before
	Total int64     // records behind, over every tenant partition
	// Lagging are the partitions behind their end, by topic and partition.
	Lagging []kafka.PartitionLag
}

type tp struct {
	topic     string
	partition int32
}

// RoundStats count what the runner did.
type RoundStats struct {
	Rounds, Batches, Records, Commits, Deletes, Failures int64
}

// NewRoundRunner returns a RoundRunner.
func NewRoundRunner(cfg RoundsConfig) (*RoundRunner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var c Poller = cfg.Consumer
	if cfg.Txn != nil {
		c = cfg.Txn
	}
	return &RoundRunner{
		cfg: cfg, c: c, ensured: make(map[string]bool), removed: make(map[string]string), ids: make(map[tp]string), paused: make(map[tp]time.Time), failing: make(map[tp]time.Time),
		pending: make(map[string]map[int]int64), pendIDs: make(map[string]string), fails: make(map[string]int), wake: make(chan struct{}, 1),
		stalled: make(map[tp]lagSeen),
		held:    make(map[string]bool),
	}, nil
}

// Health reports whether ingest makes progress: an error naming the
// partitions whose batches have kept failing for StuckAfter or longer,
// and those that have lagged behind their end with their committed offset
// unmoved for StuckAfter or longer (with a LagReader), or that the lag
// could not be measured for that long. It names topics and partitions,
// never records.
func (r *RoundRunner) Health() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	var stuck []string
	for k, since := range r.failing {
		if _, removed := r.removed[k.topic]; removed {
			continue
		}
		if d := now.Sub(since); d >= r.cfg.StuckAfter {
			stuck = append(stuck, fmt.Sprintf("%s/%d (failing for %s)", k.topic, k.partition, d.Round(time.Second)))
		}
	}
	lags := make(map[tp]int64, len(r.lag.Lagging))
	for _, l := range r.lag.Lagging {
		lags[tp{l.Topic, l.Partition}] = l.Lag
	}
	for k, seen := range r.stalled {
		if _, removed := r.removed[k.topic]; removed {
			continue
		}
		if d := now.Sub(seen.since); d >= r.cfg.StuckAfter {
			stuck = append(stuck, fmt.Sprintf("%s/%d (%d records behind, no progress for %s)", k.topic, k.partition, lags[k], d.Round(time.Second)))
		}
	}
	if r.lag.Err != nil && r.cfg.Lag != nil && (r.lag.At.IsZero() || now.Sub(r.lag.At) >= r.cfg.StuckAfter) {
		// Unknown for too long: ingest may be stalled unseen.
		stuck = append(stuck, fmt.Sprintf("lag not measured since %s: %v", r.lag.At.Format(time.RFC3339), r.lag.Err))
	}
	if len(stuck) == 0 {
		return nil
	}
	slices.Sort(stuck)
	return fmt.Errorf("ingest stuck: %s", strings.Join(stuck, ", "))
}

// Lag returns the consumer group's lag as last measured (every
// LagInterval).
func (r *RoundRunner) Lag() LagReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lag
	l.Lagging = slices.Clone(l.Lagging)
	return l
}

// lagLoop measures the lag every LagInterval.
func (r *RoundRunner) lagLoop(ctx context.Context) {
	tick := time.NewTicker(r.cfg.LagInterval)
	defer tick.Stop()
	for {
		r.measureLag(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// measureLag reads the lag and notes, for each lagging partition, since
// when its committed offset has not moved.
func (r *RoundRunner) measureLag(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, max(r.cfg.LagInterval, 5*time.Second))
	lags, err := r.cfg.Lag.Lag(mctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	if err != nil {
		if r.lag.Err == nil {
			r.cfg.Logger.Warn("measure ingest lag", "err", err)
		}
		if r.lag.Err == nil && r.lag.At.IsZero() {
			r.lag.At = now // the clock of "not measured since" starts at the first try
		}
		r.lag.Err = err
		return
	}
	report := LagReport{At: now}
	seen := make(map[tp]bool)
	for _, l := range lags {
		if l.Lag <= 0 {
			continue
		}
		if _, removed := r.removed[l.Topic]; removed {
			continue
		}
		k := tp{l.Topic, l.Partition}
		seen[k] = true
		report.Total += l.Lag
		report.Lagging = append(report.Lagging, l)
		if prev, ok := r.stalled[k]; !ok || prev.committed != l.Committed {
			r.stalled[k] = lagSeen{committed: l.Committed, since: now} // new, or progress
		}
	}
	for k := range r.stalled {
		if !seen[k] {
			delete(r.stalled, k) // caught up
		}
	}
	r.lag = report
}

// Stats returns the runner's counters.
func (r *RoundRunner) Stats() RoundStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Add consumes topic again if Remove stopped it, and reads the topic list
// now, so that a topic just created is consumed at once.
func (r *RoundRunner) Add(topic string) {
	r.mu.Lock()
	delete(r.removed, topic)
	r.mu.Unlock()
	r.c.Refresh()
}

// Remove stops consuming topic: it returns once no batch of topic is being
// applied and none will be (the consumer forgets the topic; records of it
// fetched later, the topic still existing, are skipped uncommitted), and
// forgets its sealed offsets. Add undoes it.
//
// A topic of that name created again later (another topic ID) is consumed
// again, as any new topic.
func (r *RoundRunner) Remove(ctx context.Context, topic string) error {
	r.mu.Lock()
	id := ""
	for k, kid := range r.ids {
		if k.topic == topic {
			id = kid
			delete(r.ids, k)
		}
	}
	r.removed[topic] = id
	delete(r.pending, topic)
	r.mu.Unlock()
	if err := r.barrier(ctx, topic); err != nil {
		return err
	}
	r.c.Forget(topic)
	return nil
}

// barrier returns once the round in flight, if any, is over.
func (r *RoundRunner) barrier(ctx context.Context, topic string) error {
	done := make(chan struct{})
	go func() {
		r.round.Lock() // the round in flight, if any, is over
		//lint:ignore SA2001 a barrier: taking the lock waits for the round in flight, if any, to end
		r.round.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("remove %s: %w", topic, context.Cause(ctx))
	}
	return nil
}

// Holder is an Ingester that says which topics' records it seals once
// applied, and so may delete from the broker: not those of a tenant it
// does not hold (unknown here, moved away, frozen by an export), which
// another vault on the same brokers may still have to read. vault.Vault
// is one.
type Holder interface {
	Holds(topic string) bool
}

// seekReq is a Seek waiting for the poll goroutine.
type seekReq struct {
	topic string
	ps    kafka.Positions
	done  chan error
}

// Hold stops applying topic's batches — skipped, uncommitted, whatever
// their topic ID — until a Seek of it: a tenant being imported, whose
// records must not be applied before its store exists, nor in another
// order than from the bundle's offsets on. It returns once no round is in
// flight.
func (r *RoundRunner) Hold(ctx context.Context, topic string) error {
	if r.cfg.Txn != nil {
		return fmt.Errorf("hold %s: %w", topic, ErrSeekTxn)
	}
	r.mu.Lock()
	r.held[topic] = true
	r.mu.Unlock()
	return r.barrier(ctx, topic)
}

// Seek makes topic's consumption start after the given last applied
// offsets (partition → offset; partitions 0 to partitions-1 not named
// start at 0) and ends a Hold of it: a tenant imported from another vault
// resumes where the source stopped, whatever this vault's group had
// committed for it. The positions are committed, so a restart resumes
// there too. The poll goroutine does it between two rounds (a poll in
// flight is cut short), so that no batch fetched before the seek is
// applied after it.
func (r *RoundRunner) Seek(ctx context.Context, topic string, last map[int]int64, partitions int) error {
	if r.cfg.Txn != nil {
		return fmt.Errorf("seek %s: %w", topic, ErrSeekTxn)
	}
	ps := kafka.Positions{}
	for p := 0; p < partitions; p++ {
		ps.Set(topic, int32(p), kafka.Position{Offset: 0, LeaderEpoch: -1})
	}
	for p, off := range last {
		ps.Set(topic, int32(p), kafka.Position{Offset: off + 1, LeaderEpoch: -1})
	}
	req := seekReq{topic: topic, ps: ps, done: make(chan error, 1)}
	r.mu.Lock()
	r.seeks = append(r.seeks, req)
	if r.pollCancel != nil {
		r.pollCancel()
	}
	r.mu.Unlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("seek %s: %w", topic, context.Cause(ctx))
	}
}

// doSeeks runs the pending seeks; called by the poll goroutine between
// rounds.
func (r *RoundRunner) doSeeks(ctx context.Context) {
	r.mu.Lock()
	seeks := r.seeks
	r.seeks = nil
	r.mu.Unlock()
	for _, sk := range seeks {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := r.cfg.Consumer.Commit(cctx, sk.ps)
		cancel()
		if err == nil {
			r.c.Rewind(sk.ps)
			r.mu.Lock()
			delete(r.held, sk.topic)
			delete(r.removed, sk.topic)
			r.mu.Unlock()
			r.c.Refresh()
		}
		if err != nil {
			err = fmt.Errorf("seek %s: %w", sk.topic, err)
		}
		sk.done <- err
	}
}

// Run consumes until ctx ends. The round in flight when it does is
// finished (applied and committed) first.
func (r *RoundRunner) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if !r.cfg.KeepIngress {
		g.Go(func() error { r.deleteLoop(gctx); return nil })
	}
	g.Go(func() error { r.resumeLoop(gctx); return nil })
	if r.cfg.Lag != nil {
		g.Go(func() error { r.lagLoop(gctx); return nil })
	}
	g.Go(func() error {
		for {
			r.doSeeks(gctx)
			pctx, cancel := context.WithCancel(gctx)
			r.mu.Lock()
			r.pollCancel = cancel
			if len(r.seeks) > 0 {
				cancel()
			}
			r.mu.Unlock()
			batches, err := r.c.Poll(pctx)
			r.mu.Lock()
			r.pollCancel = nil
			r.mu.Unlock()
			cancel()
			if err != nil {
				if gctx.Err() != nil || errors.Is(err, kafka.ErrConsumerClosed) {
					return nil
				}
				if errors.Is(err, context.Canceled) {
					continue // a Seek cut the poll short
				}
				r.cfg.Logger.Warn("poll", "err", err)
				continue
			}
			if r.cfg.Txn != nil {
				r.applyTxn(context.WithoutCancel(gctx), batches)
			} else {
				r.apply(context.WithoutCancel(gctx), batches)
			}
			r.c.AllowRebalance()
		}
	})
	err := g.Wait()
	if !r.cfg.KeepIngress {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		r.deleteSealed(dctx)
		cancel()
	}
	return err
}

// apply applies one round and commits what was applied.
func (r *RoundRunner) apply(ctx context.Context, batches []kafka.Batch) {
	r.round.Lock()
	defer r.round.Unlock()
	if len(batches) == 0 {
		return
	}
	byTopic, order, restart, _ := r.sort(batches)
	if len(restart) > 0 {
		r.c.Rewind(restart)
	}
	applied, failed := r.applyTopics(ctx, byTopic, order)
	if len(failed) > 0 {
		r.pause(failed)
	}
	if len(applied) == 0 {
		return
	}
	r.commit(ctx, applied)
}

// sort groups a round's batches by topic (order lists the topics), leaving
// out those of topics Remove stopped and those of a topic read with another
// topic ID than before (deleted and created again): restart holds the
// positions, at their start, to read those partitions again from; skipped
// the start of the batches left out of held or removed topics.
func (r *RoundRunner) sort(batches []kafka.Batch) (byTopic map[string][]kafka.Batch, order []string, restart, skipped kafka.Positions) {
	byTopic = make(map[string][]kafka.Batch)
	restart, skipped = kafka.Positions{}, kafka.Positions{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range batches {
		if r.held[b.Topic] {
			skipped.Set(b.Topic, b.Partition, start(b))
			continue
		}
		if id, ok := r.removed[b.Topic]; ok {
			if b.TopicID == "" || b.TopicID == id {
				skipped.Set(b.Topic, b.Partition, start(b))
				continue
			}
			delete(r.removed, b.Topic) // created again since: a new topic
		}
		k := tp{b.Topic, b.Partition}
		if prev, ok := r.ids[k]; ok && b.TopicID != "" && prev != "" && prev != b.TopicID {
			// Another topic of the same name: the position is the old
			// one's. Read the new one from its start; nothing of this
			// batch is applied or committed.
			r.cfg.Logger.Warn("topic was deleted and created again: consuming it again from its start",
				"topic", b.Topic, "partition", b.Partition, "topic_id", b.TopicID, "was", prev)
			restart.Set(b.Topic, b.Partition, kafka.Position{Offset: 0, LeaderEpoch: -1})
			r.ids[k] = b.TopicID
			continue
		}
		if b.TopicID != "" {
			r.ids[k] = b.TopicID
		}
		if _, ok := byTopic[b.Topic]; !ok {
			order = append(order, b.Topic)
		}
		byTopic[b.Topic] = append(byTopic[b.Topic], b)
	}
	r.stats.Rounds++
	return byTopic, order, restart, skipped
}

// applyTopics applies each topic's batches, one job a topic (its
// partitions in order), up to Parallel at once. applied holds the position
// after each batch applied; failed the start of each batch that failed, and
// of the batches of its topic after it, which were not tried.
func (r *RoundRunner) applyTopics(ctx context.Context, byTopic map[string][]kafka.Batch, order []string) (applied, failed kafka.Positions) {
	var mu sync.Mutex
	applied, failed = kafka.Positions{}, kafka.Positions{}
	var g errgroup.Group
	g.SetLimit(r.cfg.Parallel)
	for _, topic := range order {
		g.Go(func() error {
			for _, b := range byTopic[topic] {
				err := r.ingest(ctx, b)
				r.noteFailing(tp{b.Topic, b.Partition}, err)
				mu.Lock()
				if err != nil {
					failed.Set(b.Topic, b.Partition, kafka.Position{Offset: b.Records[0].Offset, LeaderEpoch: -1})
				} else {
					applied.Set(b.Topic, b.Partition, b.Next())
				}
				mu.Unlock()
				if err != nil {
					break // later partitions of the topic wait too: the store failed
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	for topic := range failed {
		for _, b := range byTopic[topic] {
			if _, ok := failed[topic][b.Partition]; !ok {
				if _, ok := applied[topic][b.Partition]; !ok {
					failed.Set(topic, b.Partition, kafka.Position{Offset: b.Records[0].Offset, LeaderEpoch: -1})
				}
			}
		}
	}
	return applied, failed
}

// noteFailing records since when partition k's batches fail (err), or that
// they no longer do.
func (r *RoundRunner) noteFailing(k tp, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.failing[k]; err != nil && !ok {
		r.failing[k] = r.cfg.Now()
	} else if err == nil {
		delete(r.failing, k)
	}
}

// commit commits the positions a round applied and makes their sealed
// records pending deletion (unless KeepIngress).
func (r *RoundRunner) commit(ctx context.Context, applied kafka.Positions) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := r.cfg.Consumer.Commit(cctx, applied)
	cancel()
	if err != nil {
		// The round is durable in the stores; a redelivery is skipped
		// there. Its records are not deleted until a later commit.
		r.cfg.Logger.Warn("commit round", "partitions", countPositions(applied), "err", err)
		return
	}
	r.committed(applied)
}

// committed counts a committed round and makes the sealed records of
// applied pending deletion (unless KeepIngress).
func (r *RoundRunner) committed(applied kafka.Positions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Commits++
	if r.cfg.KeepIngress {
		return
	}
	for topic, parts := range applied {
		if _, ok := r.removed[topic]; ok {
			continue
		}
		if h, ok := r.cfg.Vault.(Holder); ok && !h.Holds(topic) {
			continue // skipped, not sealed: its owner may be another vault
		}
		id := r.topicIDLocked(topic, parts)
		if prev, ok := r.pendIDs[topic]; ok && prev != id {
			delete(r.pending, topic) // offsets of the topic's previous incarnation
		}
		r.pendIDs[topic] = id
		if r.pending[topic] == nil {
			r.pending[topic] = make(map[int]int64)
		}
		for p, pos := range parts {
			r.pending[topic][int(p)] = max(r.pending[topic][int(p)], pos.Offset)
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// ingest hands batch b to the vault, retrying with backoff; the error is
// the last one.
func (r *RoundRunner) ingest(ctx context.Context, b kafka.Batch) error {
	msgs := msgsOf(b)
	if len(msgs) == 0 {
		return nil
	}
	backoff := 50 * time.Millisecond
	start := time.Now()
	var err error
	for attempt := 0; attempt <= r.cfg.Retries; attempt++ {
		if attempt > 0 {
			time.Sleep(backoff)
			backoff *= 2
		}
		if err = r.cfg.Vault.Ingest(ctx, b.Topic, msgs); err == nil {
			if r.cfg.ObserveBatch != nil {
				r.cfg.ObserveBatch(time.Since(start))
			}
			r.mu.Lock()
			r.stats.Batches++
			r.stats.Records += int64(len(msgs))
			r.mu.Unlock()
			return nil
		}
	}
	r.mu.Lock()
	r.stats.Failures++
	r.mu.Unlock()
	r.cfg.Logger.Error("ingest batch failed; its partition is paused and read again", "topic", b.Topic, "partition", b.Partition,
		"records", len(msgs), "err", err, "pause", r.cfg.PauseFor)
	return err
}

// pause rewinds the partitions of ps to their positions and pauses them;
// the resume loop resumes them after PauseFor.
func (r *RoundRunner) pause(ps kafka.Positions) {
	tps := make(map[string][]int32, len(ps))
	until := time.Now().Add(r.cfg.PauseFor)
	r.mu.Lock()
	for t, parts := range ps {
		for p := range parts {
			tps[t] = append(tps[t], p)
			r.paused[tp{t, p}] = until
		}
	}
	r.mu.Unlock()
	r.c.Pause(tps)
	r.c.Rewind(ps)
}

// resumeLoop resumes paused partitions when their pause is over (the poll
// loop may be waiting for records meanwhile).
func (r *RoundRunner) resumeLoop(ctx context.Context) {
	tick := time.NewTicker(max(r.cfg.PauseFor/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		tps := map[string][]int32{}
		r.mu.Lock()
		for k, until := range r.paused {
			if now.After(until) {
				tps[k.topic] = append(tps[k.topic], k.partition)
				delete(r.paused, k)
			}
		}
		r.mu.Unlock()
		if len(tps) > 0 {
			r.c.Resume(tps)
		}
	}
}

// deleteLoop deletes sealed records as rounds are committed: one request
// for everything committed since the last one.
func (r *RoundRunner) deleteLoop(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry.C:
		}
		r.deleteSealed(ctx)
	}
}

// deleteSealed deletes the records below the pending sealed offsets; what
// fails stays pending (unless a newer offset replaced it).
func (r *RoundRunner) deleteSealed(ctx context.Context) {
	r.mu.Lock()
	before := r.pending
	r.pending = make(map[string]map[int]int64)
	ids := maps.Clone(r.pendIDs)
	r.mu.Unlock()
	if len(before) == 0 {
		return
	}
	err := r.cfg.Deleter.DeleteRecordsMany(ctx, before, ids)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Deletes++
	if err == nil {
		clear(r.fails)
		return
	}
	if ctx.Err() == nil {
		r.cfg.Logger.Warn("delete sealed ingress records", "topics", len(before), "err", err)
	}
	for topic, parts := range before {
		// A topic that keeps failing (deleted meanwhile) is given up
		// after a few tries; a later round's offsets bring it back.
		_, removed := r.removed[topic]
		if r.fails[topic]++; removed || r.fails[topic] > 5 {
			delete(r.fails, topic)
			continue
		}
		if r.pending[topic] == nil {
			r.pending[topic] = maps.Clone(parts)
			continue
		}
		for p, o := range parts {
			r.pending[topic][p] = max(r.pending[topic][p], o)
		}
	}
}

// topicIDLocked is the topic ID topic's partitions in parts were last read
// with ("" when the brokers send none). r.mu is held.
func (r *RoundRunner) topicIDLocked(topic string, parts map[int32]kafka.Position) string {
	for p := range parts {
		if id := r.ids[tp{topic, p}]; id != "" {
			return id
		}
	}
	return ""
}

func countPositions(ps kafka.Positions) int {
	n := 0
	for _, parts := range ps {
		n += len(parts)
	}
	return n
}
