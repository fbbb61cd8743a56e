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
//
// The vault only reads and deletes changelogs: the records are written
// by the ingest round, in the Kafka transaction that commits the ingress
// offsets of the batch (PrepareIngest, PreparedIngest.Finish).
type Changelog interface {
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
