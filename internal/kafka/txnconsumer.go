package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/events"
)

// TxnConsumerConfig configures a TxnConsumer: a ConsumerConfig and what a
// transactional member of the group needs besides.
type TxnConsumerConfig struct {
	ConsumerConfig

	// TransactionalID names the producer across restarts, e.g.
	// "tenantvault-"+nodeID: a node started again with the same id fences
	// the transactions its previous incarnation left open (the broker
	// aborts them). Two live nodes must not share one. Required.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay
	// open (from its first record) before it aborts it; default 40s.
	TransactionTimeout time.Duration
}

func (c *TxnConsumerConfig) setDefaults() {
	c.ConsumerConfig.setDefaults()
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 40 * time.Second
	}
}

// Validate reports every problem with c (after defaults).
func (c *TxnConsumerConfig) Validate() error {
	errs := []error{c.ConsumerConfig.Validate()}
	if c.TransactionalID == "" {
		errs = append(errs, errors.New("no transactional id"))
	}
	if c.TransactionTimeout < 0 {
		errs = append(errs, errors.New("negative transaction timeout"))
	}
	return errors.Join(errs...)
}

// TxnConsumer is a Consumer whose rounds are Kafka transactions
// (exactly-once, KIP-447): a round's records, produced between Begin and
// End, and the group offsets of what the round polled are committed
// together by End, or not at all. Records are read read_committed, and
// the group's offsets are fetched stable (a partition whose offsets are
// in a transaction still open waits for it), so a node that takes over a
// partition starts where the last committed round ended.
//
// A round is: Poll, Begin, Produce..., (Rewind), End, AllowRebalance. As
// with Consumer, rebalances wait until AllowRebalance; a member that holds
// one longer than RebalanceTimeout is thrown out of the group, and its
// End then does not commit (the broker refuses its offsets: it fences a
// stale member by its generation and member id).
//
// End commits the position after everything Poll returned, for every
// partition, except where Rewind moved it since: a batch that was not
// applied is rewound to its start, and its position stays where it was.
// An End that does not commit moves every partition back to its last
// committed position, so the records are polled again.
//
// It is franz-go's GroupTransactSession, with the cooperative-sticky
// balancer. Its methods are not safe for concurrent use, except
// AllowRebalance, Pause, Resume and Refresh.
type TxnConsumer struct {
	s   *kgo.GroupTransactSession
	cl  *kgo.Client
	cfg TxnConsumerConfig
	log *slog.Logger

	// revoked is set when a rebalance revoked or lost partitions: the
	// session then aborts the next End (see Poll).
	revoked atomic.Bool

	inTxn    bool
	produced []*Produced
	wg       sync.WaitGroup // produce promises outstanding

	mu     sync.Mutex
	warned map[string]time.Time
}

// Produced is a record produced in a transaction. Its fields are set once
// End returned; Partition and Offset name a record readers see only if
// End committed.
type Produced struct {
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

// NewTxnConsumer returns a TxnConsumer; it joins the group in the
// background.
func NewTxnConsumer(cfg TxnConsumerConfig) (*TxnConsumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("txn consumer config: %w", err)
	}
	log := cfg.Logger.With("group", cfg.Group)
	c := &TxnConsumer{cfg: cfg, log: log, warned: make(map[string]time.Time)}
	hook := func(what string, user func(map[string][]int32)) func(context.Context, *kgo.Client, map[string][]int32) {
		revoke := what != "assigned"
		return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Debug("kafka txn consumer: partitions "+what, "topics", len(m))
			// As the session counts them: a cooperative revoke of
			// nothing does not fail the next End, a loss always does.
			if revoke && (what == "lost" || len(m) > 0) {
				c.revoked.Store(true)
			}
			if user != nil {
				user(m)
			}
		}
	}
	opts := append(cfg.groupOpts(log, hook),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
	)
	s, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("new txn consumer: %w", err)
	}
	c.s, c.cl = s, s.Client()
	return c, nil
}

// warnOnce is Consumer.warnOnce.
func (c *TxnConsumer) warnOnce(topic string, err error) {
	c.mu.Lock()
	last, seen := c.warned[topic]
	now := time.Now()
	if !seen || now.Sub(last) > 10*time.Second {
		c.warned[topic] = now
		c.mu.Unlock()
		c.log.Warn("kafka txn consumer: fetch", "topic", topic, "err", err)
		return
	}
	c.mu.Unlock()
	c.log.Debug("kafka txn consumer: fetch", "topic", topic, "err", err)
}

// Poll is Consumer.Poll: it waits for records (of committed transactions
// only) and returns them as batches, one per partition.
func (c *TxnConsumer) Poll(ctx context.Context) ([]Batch, error) {
	out, err := pollBatches(ctx, c.cl, c.cfg.MaxPollRecords, c.log, c.warnOnce)
	if err != nil || len(out) == 0 || !c.revoked.Swap(false) {
		return out, err
	}
	// A rebalance revoked partitions between the last round and this
	// poll. The session aborts the first End after a revoke (it would
	// have to, had the revoke come during the round; with rebalances
	// held by the poll it cannot any more). Clearing that state, by an
	// End outside a transaction, rewinds every partition to its
	// committed position; the positions after what was just polled are
	// set again, so the round commits them.
	if _, err := c.s.End(ctx, kgo.TryAbort); err != nil {
		c.cl.AllowRebalance()
		return nil, fmt.Errorf("poll: reset after a rebalance: %w", err)
	}
	ps := Positions{}
	for _, b := range out {
		ps.Set(b.Topic, b.Partition, b.Next())
	}
	c.cl.SetOffsets(ps.epochOffsets())
	return out, nil
}

// Begin begins a round's transaction: Produce then adds records to it,
// and End ends it.
func (c *TxnConsumer) Begin() error {
	if err := c.s.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	c.inTxn = true
	c.produced = c.produced[:0]
	return nil
}

// Produce adds a record of topic (partitioned by key) to the transaction
// and returns at once; the record is sent in the background and End waits
// for it. Its Produced holds its partition and offset once End returned.
// A record that fails (or a Produce outside a transaction) makes End
// abort, and End returns its error.
func (c *TxnConsumer) Produce(ctx context.Context, topic string, key, value []byte, headers ...events.Header) *Produced {
	p := &Produced{Topic: topic, Partition: -1, Offset: -1}
	r := &kgo.Record{Topic: topic, Key: key, Value: value}
	if len(headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, len(headers))
		for i, h := range headers {
			r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	c.produced = append(c.produced, p)
	c.wg.Add(1)
	c.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		defer c.wg.Done()
		p.Partition, p.Offset, p.Err = r.Partition, r.Offset, err
	})
	return p
}

// End ends the transaction begun by Begin: with commit, once every record
// produced in it was written, it commits them and the group offsets of
// what was polled (see TxnConsumer) atomically, and returns true. It
// aborts instead, and returns false, when commit is false, when a record
// failed (returning its error), when a rebalance revoked partitions
// during the round or the broker refuses the offsets (this member was
// thrown out of the group: another one owns its partitions now). Any
// error leaves the transaction aborted, except ctx's ending while the
// records are flushed: then the transaction is still open; End it again
// (to abort) or Close. Either way, every partition not committed is moved
// back to its committed position.
func (c *TxnConsumer) End(ctx context.Context, commit bool) (committed bool, err error) {
	if !c.inTxn {
		return false, errors.New("end transaction: not in a transaction")
	}
	var perr error
	if commit {
		if err := c.cl.Flush(ctx); err != nil {
			return false, fmt.Errorf("end transaction: flush: %w", err)
		}
		c.wg.Wait()
		for _, p := range c.produced {
			if p.Err != nil {
				perr = fmt.Errorf("end transaction: produce to %s: %w", p.Topic, p.Err)
				commit = false
				break
			}
		}
	}
	committed, err = c.s.End(ctx, kgo.TransactionEndTry(commit))
	c.wg.Wait() // an abort fails the records still buffered
	c.inTxn = false
	c.revoked.Store(false) // the session forgot the revoke too
	if err != nil {
		return false, fmt.Errorf("end transaction: %w", errors.Join(perr, err))
	}
	return committed, perr
}

// Rewind makes the next fetches of each partition in ps start at its
// position and, in a round, makes End commit that position.
func (c *TxnConsumer) Rewind(ps Positions) { c.cl.SetOffsets(ps.epochOffsets()) }

// AllowRebalance lets a rebalance held since the last Poll go on. Call it
// once the polled round has ended.
func (c *TxnConsumer) AllowRebalance() { c.cl.AllowRebalance() }

// Pause stops fetching the partitions named; Resume fetches them again.
func (c *TxnConsumer) Pause(tps map[string][]int32) { c.cl.PauseFetchPartitions(tps) }

// Resume undoes Pause.
func (c *TxnConsumer) Resume(tps map[string][]int32) { c.cl.ResumeFetchPartitions(tps) }

// Forget is Consumer.Forget.
func (c *TxnConsumer) Forget(topics ...string) { c.cl.PurgeTopicsFromConsuming(topics...) }

// Refresh reads the topic list now.
func (c *TxnConsumer) Refresh() { c.cl.ForceMetadataRefresh() }

// Close aborts an open transaction, and closes the connections. A dynamic
// member leaves the group; a static one (InstanceID) does not: its
// partitions wait for it for SessionTimeout.
func (c *TxnConsumer) Close() error {
	var err error
	if c.inTxn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.End(ctx, false)
		cancel()
	}
	c.s.CloseAllowingRebalance()
	return err
}
