package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// TxnRoundConsumer is the Kafka side of a transactional RoundRunner (a
// node of a cluster): a round is Poll, Begin, Produce of every changelog
// record the round's batches wrote, End, which commits those records and
// the group offsets of what was polled (except where Rewind moved a
// partition back) in one Kafka transaction, or neither (KIP-447: a member
// whose partitions moved to another cannot commit). kafka.TxnConsumer is
// one.
type TxnRoundConsumer interface {
	Poller
	Begin() error
	Produce(ctx context.Context, topic string, key, value []byte, headers ...events.Header) *kafka.Produced
	End(ctx context.Context, commit bool) (committed bool, err error)
}

// Preparer is an Ingester that applies a batch in two halves around the
// Kafka transaction of its round. vault.Vault is one.
type Preparer interface {
	PrepareIngest(ctx context.Context, topic string, msgs []vault.Message) (*vault.PreparedIngest, error)
}

// ErrSeekTxn is the error of Hold and Seek on a transactional
// RoundRunner: a seek commits offsets outside a round, which a
// transactional member of the group cannot do, so a tenant cannot be
// imported on a node of a cluster.
var ErrSeekTxn = events.Errorf(events.EINVALID, "tenant import is not supported in cluster mode: a cluster node cannot start a topic at given offsets outside a transactional round")

// txnBatch is a batch of a transactional round, prepared.
type txnBatch struct {
	b        kafka.Batch
	pi       *vault.PreparedIngest
	whole    bool // pi covers all of b
	produced []*kafka.Produced
}

// applyTxn is apply for a transactional round: every batch is prepared
// (its store transaction left open), its changelog records produced in
// the round's transaction, and the transaction ended; the stores commit
// only if it committed, and discard otherwise (the batches come again).
func (r *RoundRunner) applyTxn(ctx context.Context, batches []kafka.Batch) {
	r.round.Lock()
	defer r.round.Unlock()
	if len(batches) == 0 {
		return
	}
	byTopic, order, restart, skipped := r.sort(batches)
	rewind := kafka.Positions{}
	for topic, parts := range skipped {
		for p, pos := range parts {
			rewind.Set(topic, p, pos) // not this round's: not committed
		}
	}
	for topic, parts := range restart {
		for p, pos := range parts {
			rewind.Set(topic, p, pos)
		}
	}
	prepared, failed := r.prepareTopics(ctx, byTopic, order, rewind)
	if len(failed) > 0 {
		r.pause(failed)
	}
	if len(rewind) > 0 {
		r.c.Rewind(rewind)
	}
	committed, err := r.commitTxn(ctx, prepared)
	if !committed {
		for _, tb := range prepared {
			tb.pi.Abandon()
		}
		if err != nil {
			r.cfg.Logger.Warn("round transaction not committed: its batches come again", "batches", len(prepared), "err", err)
		} else {
			r.cfg.Logger.Info("round transaction not committed (partitions moved): its batches come again", "batches", len(prepared))
		}
		return
	}
	applied := kafka.Positions{}
	var g errgroup.Group
	g.SetLimit(r.cfg.Parallel)
	for _, tb := range prepared {
		next := int64(0)
		for _, p := range tb.produced {
			next = max(next, p.Offset+1)
		}
		g.Go(func() error {
			if err := tb.pi.Finish(ctx, next); err != nil {
				// Committed in Kafka: the changelog has the batch, and the
				// store catches up with it at its next use.
				r.cfg.Logger.Error("finish a committed batch", "topic", tb.b.Topic, "partition", tb.b.Partition, "err", err)
			}
			return nil
		})
		if tb.whole {
			applied.Set(tb.b.Topic, tb.b.Partition, tb.b.Next())
		}
	}
	_ = g.Wait()
	r.committed(applied)
}

// commitTxn runs the round's transaction: Begin, the changelog records of
// every prepared batch, End.
func (r *RoundRunner) commitTxn(ctx context.Context, prepared []*txnBatch) (bool, error) {
	tx := r.cfg.Txn
	if err := tx.Begin(); err != nil {
		return false, err
	}
	for _, tb := range prepared {
		recs := tb.pi.Changes()
		if len(recs) == 0 {
			continue
		}
		topic := events.ChangelogTopicFor(tb.pi.Tenant())
		tb.produced = make([]*kafka.Produced, len(recs))
		for i, rec := range recs {
			tb.produced[i] = tx.Produce(ctx, topic, rec[0], rec[1])
		}
	}
	if r.beforeEnd != nil {
		r.beforeEnd()
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	committed, err := tx.End(ectx, true)
	if err != nil && ectx.Err() != nil {
		// The transaction may still be open: abort it.
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		_, aerr := tx.End(actx, false)
		acancel()
		err = errors.Join(err, aerr)
	}
	return committed && err == nil, err
}

// prepareTopics prepares the first batch of each topic (a tenant's store
// holds one prepared batch at a time), up to Parallel at once, and makes
// its changelog topic exist. A topic's later batches, and the part of a
// batch that did not fit in one store transaction, go into rewind, to be
// polled again; failed holds the start of each batch that failed.
func (r *RoundRunner) prepareTopics(ctx context.Context, byTopic map[string][]kafka.Batch, order []string, rewind kafka.Positions) (prepared []*txnBatch, failed kafka.Positions) {
	var mu sync.Mutex
	failed = kafka.Positions{}
	var g errgroup.Group
	g.SetLimit(r.cfg.Parallel)
	for _, topic := range order {
		bs := byTopic[topic]
		mu.Lock()
		for _, b := range bs[1:] {
			rewind.Set(b.Topic, b.Partition, start(b))
		}
		mu.Unlock()
		b := bs[0]
		g.Go(func() error {
			pi, err := r.prepare(ctx, b)
			r.noteFailing(tp{b.Topic, b.Partition}, err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed.Set(b.Topic, b.Partition, start(b))
				return nil
			}
			msgs := msgsOf(b)
			n := pi.Len()
			if n < len(msgs) {
				rewind.Set(b.Topic, b.Partition, kafka.Position{Offset: msgs[n].Offset, LeaderEpoch: -1})
			}
			prepared = append(prepared, &txnBatch{b: b, pi: pi, whole: n == len(msgs)})
			return nil
		})
	}
	_ = g.Wait()
	return prepared, failed
}

// prepare prepares batch b in the vault, retrying with backoff, and
// makes its tenant's changelog topic exist; the error is the last one.
func (r *RoundRunner) prepare(ctx context.Context, b kafka.Batch) (*vault.PreparedIngest, error) {
	msgs := msgsOf(b)
	backoff := 50 * time.Millisecond
	begin := time.Now()
	var err error
	for attempt := 0; attempt <= r.cfg.Retries; attempt++ {
		if attempt > 0 {
			time.Sleep(backoff)
			backoff *= 2
		}
		var pi *vault.PreparedIngest
		if pi, err = r.prepareOnce(ctx, b.Topic, msgs); err == nil {
			if r.cfg.ObserveBatch != nil {
				r.cfg.ObserveBatch(time.Since(begin))
			}
			r.mu.Lock()
			r.stats.Batches++
			r.stats.Records += int64(pi.Len())
			r.mu.Unlock()
			return pi, nil
		}
	}
	r.mu.Lock()
	r.stats.Failures++
	r.mu.Unlock()
	r.cfg.Logger.Error("prepare batch failed; its partition is paused and read again", "topic", b.Topic, "partition", b.Partition,
		"records", len(msgs), "err", err, "pause", r.cfg.PauseFor)
	return nil, err
}

func (r *RoundRunner) prepareOnce(ctx context.Context, topic string, msgs []vault.Message) (*vault.PreparedIngest, error) {
	pi, err := r.cfg.Vault.(Preparer).PrepareIngest(ctx, topic, msgs)
	if err != nil {
		return nil, err
	}
	if len(pi.Changes()) == 0 {
		return pi, nil
	}
	clog := events.ChangelogTopicFor(pi.Tenant())
	r.mu.Lock()
	done := r.ensured[clog]
	r.mu.Unlock()
	if done {
		return pi, nil
	}
	if err := r.cfg.EnsureChangelog(ctx, clog); err != nil {
		pi.Abandon()
		return nil, fmt.Errorf("changelog topic %s: %w", clog, err)
	}
	r.mu.Lock()
	r.ensured[clog] = true
	r.mu.Unlock()
	return pi, nil
}

// msgsOf is what of b the vault is given: its records but markers.
func msgsOf(b kafka.Batch) []vault.Message {
	msgs := make([]vault.Message, 0, len(b.Records))
	for _, rec := range b.Records {
		if rec.Marker {
			continue // no data: its position is committed with the batch's
		}
		msgs = append(msgs, vault.Message{Topic: b.Topic, TopicID: b.TopicID, Partition: int(b.Partition), Offset: rec.Offset,
			Key: rec.Key, Value: rec.Value, Headers: rec.Headers})
	}
	return msgs
}

// start is the position of b's first record.
func start(b kafka.Batch) kafka.Position {
	return kafka.Position{Offset: b.Records[0].Offset, LeaderEpoch: -1}
}
