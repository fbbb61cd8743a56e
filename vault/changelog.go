package vault

import (
	"context"
	"fmt"
	"sync"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// Changelog is, in a cluster, where a tenant's store writes go before the
// store commits them: its sealed changelog on Kafka (tenant.<id>.sealed,
// compacted, ciphertext only, as Kafka Streams' changelog topics), so that
// the store is a cache any node rebuilds. Records are
// projections.EncodeChange of a batch's changes, keyed by
// Change.RecordKey.
type Changelog interface {
	// Append writes recs (key, value) to t's changelog, durably, and
	// returns the offset after the last.
	Append(ctx context.Context, t events.TenantID, recs [][2][]byte) (next int64, err error)
	// Read calls fn with t's changelog records from offset from to its
	// end as of the call, in order, with the offset after each.
	Read(ctx context.Context, t events.TenantID, from int64, fn func(next int64, value []byte) error) error
	// Delete removes t's changelog (a shred).
	Delete(ctx context.Context, t events.TenantID) error
}

// restoreChunk bounds the changes one ApplyChanges of a restore writes.
const restoreChunk = 512

// restored remembers the tenants whose store caught up with its changelog
// since this node took their topic.
type restored struct {
	mu   sync.Mutex
	done map[events.TenantID]bool
	busy map[events.TenantID]*sync.Mutex
}

func (r *restored) lock(t events.TenantID) (unlock func(), done bool) {
	r.mu.Lock()
	if r.done == nil {
		r.done, r.busy = make(map[events.TenantID]bool), make(map[events.TenantID]*sync.Mutex)
	}
	m := r.busy[t]
	if m == nil {
		m = new(sync.Mutex)
		r.busy[t] = m
	}
	r.mu.Unlock()
	m.Lock()
	r.mu.Lock()
	done = r.done[t]
	r.mu.Unlock()
	return m.Unlock, done
}

func (r *restored) set(t events.TenantID, v bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done, r.busy = make(map[events.TenantID]bool), make(map[events.TenantID]*sync.Mutex)
	}
	if v {
		r.done[t] = true
	} else {
		delete(r.done, t)
	}
}

// Released tells the vault this node no longer holds t's topic: another
// node writes t's store now, so the next use here first catches the
// store up with t's changelog again.
func (v *Vault) Released(t events.TenantID) { v.restored.set(t, false) }

// catchUp brings t's store up to its changelog, once per hold of its
// topic. No-op on one node (no Changelog).
func (v *Vault) catchUp(ctx context.Context, t events.TenantID, st *projections.Store, c Cipher) error {
	if v.cfg.Changelog == nil {
		return nil
	}
	unlock, done := v.restored.lock(t)
	defer unlock()
	if done {
		return nil
	}
	from, err := st.ChangelogNext()
	if err != nil {
		return err
	}
	var chunk []projections.Change
	var last int64
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := st.ApplyChanges(ctx, c, last, chunk)
		chunk = chunk[:0]
		return err
	}
	err = v.cfg.Changelog.Read(ctx, t, from, func(next int64, value []byte) error {
		ch, err := projections.DecodeChange(value)
		if err != nil {
			return fmt.Errorf("changelog of %s at %d: %w", t, next-1, err)
		}
		ch.Key, ch.Value = append([]byte(nil), ch.Key...), append([]byte(nil), ch.Value...)
		chunk, last = append(chunk, ch), next
		if len(chunk) >= restoreChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("restore %s from its changelog: %w", t, err)
	}
	v.restored.set(t, true)
	return nil
}

// Restore brings t's store up to date with its changelog now (a node that
// was just assigned t's topic), so that reads here see every write.
func (v *Vault) Restore(ctx context.Context, t events.TenantID) error {
	if v.cfg.Changelog == nil {
		return nil
	}
	c, err := v.cfg.Keys.Ciphers.Cipher(t)
	if err != nil {
		return err
	}
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return err
	}
	defer release()
	return v.catchUp(ctx, t, st, c)
}

// applyLogged is apply in a cluster: each part of the batch that fits in
// one store transaction is prepared, its changes written to the tenant's
// changelog, and only then committed with the changelog's position. A
// crash between the two leaves the store behind its changelog, which the
// next catch-up (here or on the node that takes the tenant) applies.
func (v *Vault) applyLogged(ctx context.Context, t events.TenantID, st *projections.Store, c Cipher, recs []projections.Record) ([]projections.Verdict, error) {
	if err := v.catchUp(ctx, t, st, c); err != nil {
		return nil, fmt.Errorf("ingest %s: %w", t, err)
	}
	var verdicts []projections.Verdict
	var total projections.Result
	defer func() {
		v.stats.EventsApplied.Add(int64(total.Applied))
		v.stats.EventsDuplicate.Add(int64(total.Duplicates))
		v.stats.EventsQuarantined.Add(int64(total.Quarantined))
		v.stats.EventsSkipped.Add(int64(total.Skipped))
		if v.cfg.OnIngested != nil && (total.Applied > 0 || total.Quarantined > 0) {
			v.cfg.OnIngested(t, total.Applied, total.Quarantined)
		}
	}()
	for done := 0; done < len(recs); {
		p, err := st.Prepare(ctx, c, recs[done:])
		if err != nil {
			return verdicts, fmt.Errorf("ingest %s: %w", t, err)
		}
		changes := p.Changes()
		if len(changes) > 0 {
			out := make([][2][]byte, len(changes))
			for i, ch := range changes {
				out[i] = [2][]byte{ch.RecordKey(), projections.EncodeChange(ch)}
			}
			next, err := v.cfg.Changelog.Append(ctx, t, out)
			if err != nil {
				p.Discard()
				return verdicts, fmt.Errorf("ingest %s: changelog: %w", t, err)
			}
			if err := p.Commit(next); err != nil {
				// The changelog has the changes: the store catches up.
				v.restored.set(t, false)
				return verdicts, fmt.Errorf("ingest %s: %w", t, err)
			}
		} else {
			p.Discard()
		}
		r := p.Result()
		total.Applied += r.Applied
		total.Duplicates += r.Duplicates
		total.Quarantined += r.Quarantined
		total.Skipped += r.Skipped
		verdicts = append(verdicts, p.Verdicts()...)
		done += p.Len()
	}
	v.stats.Batches.Add(1)
	return verdicts, nil
}
