package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// Key rotation: a tenant's keyset gets a new primary key; new values are
// sealed with it at once, old ones keep opening with the old keys. Rewrap
// re-seals the old ones so that the old keys can be destroyed.

const (
	// rewrapBatchValues is the number of sealed values one rewrap transaction
	// looks at. It also bounds how long a batch holds the apply lock when
	// it has to (see rewrapBatch), and how much work a conflict throws away.
	rewrapBatchValues = 256
	// rewrapMaxBytes bounds the re-sealed values a batch holds in memory
	// until it commits (one larger value goes alone).
	rewrapMaxBytes = 4 << 20
	// rewrapOptimisticTries is how many times in a row a batch may fail
	// with badger.ErrConflict before it is done holding the apply lock.
	rewrapOptimisticTries = 2

	rewrapCursorV1   = 0x01
	rewrapCursorSize = 1 + 4 + 8 + 8 // then the last key done
)

// rewrapCursorKey holds the position of an unfinished Rewrap (clear):
//
//	0x01 | BE32 target primary key id | BE64 scanned | BE64 rewrapped | last key done
//
// The last key is a sealed value's key: a keyed hash or a sequence number.
var rewrapCursorKey = []byte(prefixMeta + "rewrap")

// sealedPrefixes are the keyspaces whose values are sealed, in key order.
var sealedPrefixes = []struct{ prefix, keyspace string }{
	{prefixDim, ksDim},
	{prefixLog, ksLog},
	{prefixQuarantine, ksQuarantine},
	{prefixState, ksState},
	{prefixVector, ksVector},
}

func isSealedKey(k []byte) bool {
	for _, sp := range sealedPrefixes {
		if bytes.HasPrefix(k, []byte(sp.prefix)) {
			return true
		}
	}
	return false
}

// errPrimaryChanged reports that the cipher sealed a value under another
// key than the run's target: the tenant's keys rotated during the run.
var errPrimaryChanged = errors.New("primary key changed during rewrap")

// RewrapProgress reports how far a Rewrap got.
type RewrapProgress struct {
	Scanned   uint64 // sealed values looked at so far (cumulative across resumes)
	Rewrapped uint64 // re-sealed under the primary (cumulative across resumes)
	Total     uint64 // sealed values in the store when this run started (values Apply adds meanwhile are not counted)
	Done      bool   // every sealed value is under the primary; the cursor is removed
	Conflicts uint64 // batches of this run retried after a conflict with Apply
}

// Rewrap re-seals every sealed value of the store (state, log and
// quarantine) that is not under c's primary key with the primary: it opens
// the value with c and seals it again with c, under the same associated
// data. Values already under the primary are left as they are, unopened.
//
// It works in batches of 256 values (fewer when they are large), each
// one small Badger transaction, while Apply and reads go on. A batch that
// read a value Apply rewrote before the batch committed fails with
// badger.ErrConflict and is retried; the value Apply wrote is under the
// primary already. A batch that conflicts twice in a row is retried holding
// the lock that serialises Apply, so it cannot starve. Every batch commits
// while holding that lock, so Rewrap never makes an Apply conflict.
//
// Rewrap is resumable: each batch stores, in its own transaction, a cursor
// (the last key done, the target primary key id and the counts so far)
// under m/rewrap, so after a crash or a cancel Rewrap called again goes on
// from there (RewrapPending reports a cursor). The last batch removes the
// cursor. If the cursor names another primary than c's current one (the
// keys rotated again since), Rewrap starts over from the first value with
// the new primary, and so it does when the primary changes during the
// run. The counts then start again from 0.
//
// progress, if not nil, is called after each committed batch, with no lock
// held; the last call has Done set. Cancelling ctx stops Rewrap between
// batches with ctx's error; the cursor is kept. Calls on one store are
// serialised: a second call waits for the first (or for ctx).
//
// A value that fails to open (e.g. under a key the cipher no longer holds,
// or under another tenant's key) stops Rewrap with the cipher's error
// wrapped; the batches done before it stay done. Superseded versions of
// re-sealed values stay in Badger's files, under the old key, until
// compaction and value log GC discard them: they are ciphertext that the
// old key's destruction makes unreadable.
func (st *Store) Rewrap(ctx context.Context, c KeyedCipher, progress func(RewrapProgress)) (RewrapProgress, error) {
	var p RewrapProgress
	if err := checkCipher(c); err != nil {
		return p, err
	}
	fail := func(err error) (RewrapProgress, error) {
		return p, fmt.Errorf("rewrap store of tenant %s: %w", st.tenant, err)
	}
	select {
	case st.rewrapping <- struct{}{}:
		defer func() { <-st.rewrapping }()
	case <-ctx.Done():
		return fail(ctx.Err())
	}

	target := c.PrimaryKeyID()
	cur, found, total, err := st.rewrapStart()
	if err != nil {
		return fail(err)
	}
	p.Total = total
	var after []byte
	if found && cur.primary == target {
		after, p.Scanned, p.Rewrapped = cur.last, cur.scanned, cur.rewrapped
	}
	limit := rewrapBatchValues
	if st.rewrapLimit > 0 {
		limit = st.rewrapLimit
	}
	conflicts := 0
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if id := c.PrimaryKeyID(); id != target {
			// Rotated again: what was re-sealed is under an old key now.
			target, after, p.Scanned, p.Rewrapped = id, nil, 0, 0
		}
		b, err := st.rewrapBatch(c, target, after, limit, p, conflicts >= rewrapOptimisticTries)
		switch {
		case err == nil:
		case errors.Is(err, badger.ErrConflict):
			conflicts++
			p.Conflicts++
			continue
		case errors.Is(err, badger.ErrTxnTooBig) && limit > 1:
			limit = max(1, limit/2)
			continue
		case errors.Is(err, errPrimaryChanged) && c.PrimaryKeyID() != target:
			continue // start over at the top of the loop
		default:
			return fail(err)
		}
		conflicts = 0
		p.Scanned += b.scanned
		p.Rewrapped += b.rewrapped
		p.Done = b.done
		after = b.last
		if progress != nil {
			progress(p)
		}
		if b.done {
			return p, nil
		}
	}
}

// rewrapStart reads the cursor and counts the sealed values.
func (st *Store) rewrapStart() (cur rewrapCursor, found bool, total uint64, err error) {
	if err := st.enter(); err != nil {
		return cur, false, 0, err
	}
	defer st.leave()
	cur, found, err = st.loadRewrapCursor()
	if err != nil {
		return cur, false, 0, err
	}
	s, err := st.stats()
	if err != nil {
		return cur, false, 0, fmt.Errorf("count sealed values: %w", err)
	}
	return cur, found, s.Events + s.Streams + s.Quarantined, nil
}

// RewrapPending reports whether an unfinished Rewrap left its cursor in the
// store: call Rewrap at start-up to finish it.
func (st *Store) RewrapPending() (bool, error) {
	if err := st.enter(); err != nil {
		return false, err
	}
	defer st.leave()
	_, found, err := st.loadRewrapCursor()
	if err != nil {
		return false, fmt.Errorf("rewrap cursor of tenant %s: %w", st.tenant, err)
	}
	return found, nil
}

// KeyUsage counts the sealed values of the store (state, log and
// quarantine) per key id, read from each value's prefix with c.KeyIDOf
// (nothing is opened): after a Rewrap, the old key ids are absent. A value
// without a key id prefix is an error. It reads every value, in time
// proportional to the size of the store.
func (st *Store) KeyUsage(c KeyedCipher) (map[uint32]uint64, error) {
	if err := checkCipher(c); err != nil {
		return nil, err
	}
	if err := st.enter(); err != nil {
		return nil, err
	}
	defer st.leave()
	out := make(map[uint32]uint64)
	err := st.db.View(func(txn *badger.Txn) error {
		for _, sp := range sealedPrefixes {
			if err := keyUsage(txn, c, sp.prefix, out); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("key usage of tenant %s: %w", st.tenant, err)
	}
	return out, nil
}

func keyUsage(txn *badger.Txn, c KeyedCipher, prefix string, out map[uint32]uint64) error {
	it := txn.NewIterator(iterOptions([]byte(prefix), 100))
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error {
			id, ok := c.KeyIDOf(v)
			if !ok {
				return events.Errorf(events.EINTERNAL, "value %x carries no key id", item.Key())
			}
			out[id]++
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

type rewrapCursor struct {
	primary            uint32
	scanned, rewrapped uint64
	last               []byte
}

func (cur rewrapCursor) encode() []byte {
	b := make([]byte, 0, rewrapCursorSize+len(cur.last))
	b = append(b, rewrapCursorV1)
	b = binary.BigEndian.AppendUint32(b, cur.primary)
	b = binary.BigEndian.AppendUint64(b, cur.scanned)
	b = binary.BigEndian.AppendUint64(b, cur.rewrapped)
	return append(b, cur.last...)
}

func (st *Store) loadRewrapCursor() (rewrapCursor, bool, error) {
	var cur rewrapCursor
	found := false
	err := st.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(rewrapCursorKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			if len(v) <= rewrapCursorSize || v[0] != rewrapCursorV1 || !isSealedKey(v[rewrapCursorSize:]) {
				return events.Errorf(events.EINTERNAL, "malformed rewrap cursor")
			}
			cur.primary = binary.BigEndian.Uint32(v[1:5])
			cur.scanned = binary.BigEndian.Uint64(v[5:13])
			cur.rewrapped = binary.BigEndian.Uint64(v[13:21])
			cur.last = bytes.Clone(v[rewrapCursorSize:])
			return nil
		})
	})
	return cur, found, err
}

// rewrapResult is what one batch did.
type rewrapResult struct {
	scanned, rewrapped uint64
	last               []byte // the last key looked at
	done               bool   // no sealed value after last
}

// rewrapBatch re-seals the values after key after (from the first sealed
// value if nil) that are not under target, up to limit values, and stores
// the cursor (or removes it when the scan reached the end), in one
// transaction. p is the progress before the batch.
//
// Writers of the store serialise on st.apply: Apply holds it for all its
// transactions. Unless locked, the batch reads and seals without it and
// takes it only to commit, so no Apply transaction is open across the
// commit and Apply never sees a conflict; the batch itself fails with
// badger.ErrConflict if an Apply committed a value the batch read. With
// locked (or when the DB does not detect conflicts), the batch holds it
// throughout and cannot conflict.
func (st *Store) rewrapBatch(c KeyedCipher, target uint32, after []byte, limit int, p RewrapProgress, locked bool) (rewrapResult, error) {
	if err := st.enter(); err != nil {
		return rewrapResult{}, err
	}
	defer st.leave()
	locked = locked || !st.db.Opts().DetectConflicts
	if locked {
		st.apply.Lock()
		defer st.apply.Unlock()
	}
	txn := st.db.NewTransaction(true)
	defer txn.Discard()
	b, err := st.rewrapScan(txn, c, target, after, limit)
	if err != nil {
		return rewrapResult{}, err
	}
	if b.done {
		err = txn.Delete(rewrapCursorKey)
	} else {
		cur := rewrapCursor{primary: target, scanned: p.Scanned + b.scanned, rewrapped: p.Rewrapped + b.rewrapped, last: b.last}
		err = txn.Set(rewrapCursorKey, cur.encode())
	}
	if err != nil {
		return rewrapResult{}, fmt.Errorf("write rewrap cursor: %w", err)
	}
	if !locked {
		if st.testHookRewrapCommit != nil {
			st.testHookRewrapCommit()
		}
		st.apply.Lock()
		defer st.apply.Unlock()
	}
	if err := txn.Commit(); err != nil {
		return rewrapResult{}, fmt.Errorf("commit: %w", err)
	}
	return b, nil
}

// rewrapScan does the reads and writes of one batch in txn.
//
// Only sealed values are read through the iterator (Item marks a key as
// read for conflict detection): the offsets Apply writes in every
// transaction lie between the sealed keyspaces and are skipped by seeking.
func (st *Store) rewrapScan(txn *badger.Txn, c KeyedCipher, target uint32, after []byte, limit int) (rewrapResult, error) {
	var b rewrapResult
	opts := badger.DefaultIteratorOptions
	opts.PrefetchSize = min(max(limit, 1), 100)
	it := txn.NewIterator(opts)
	defer it.Close()

	// Badger fails a transaction whose entries (key + inline value + 12
	// bytes each) reach MaxBatchSize; stay well under it.
	budget := st.db.MaxBatchSize() / 2
	threshold := st.db.Opts().ValueThreshold
	entrySize := func(k, v int) int64 {
		if int64(v) < threshold {
			return int64(k+v) + 12
		}
		return int64(k) + 24
	}
	var size, held int64
	var n int
	for _, sp := range sealedPrefixes {
		prefix := []byte(sp.prefix)
		seek := prefix
		switch {
		case after == nil || bytes.Compare(after, prefix) < 0:
		case bytes.HasPrefix(after, prefix):
			seek = append(bytes.Clone(after), 0) // the next key after it
		default:
			continue // after lies beyond this keyspace
		}
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			vsize := int64(item.ValueSize())
			if n > 0 && (n >= limit || size+entrySize(len(item.Key()), int(vsize)) > budget || held+vsize > rewrapMaxBytes) {
				return b, nil
			}
			k := item.KeyCopy(nil)
			var ct []byte
			if err := item.Value(func(v []byte) error {
				var err error
				ct, err = st.reseal(c, target, sp.keyspace, k, v)
				return err
			}); err != nil {
				return rewrapResult{}, err
			}
			if ct != nil {
				if err := txn.Set(k, ct); err != nil {
					return rewrapResult{}, fmt.Errorf("write %s value: %w", sp.keyspace, err)
				}
				size += entrySize(len(k), len(ct))
				held += int64(len(ct))
				b.rewrapped++
			}
			n++
			b.scanned++
			b.last = k
		}
	}
	b.done = true
	return b, nil
}

// reseal returns v sealed under target, or nil if it is already.
func (st *Store) reseal(c KeyedCipher, target uint32, keyspace string, key, v []byte) ([]byte, error) {
	if id, ok := c.KeyIDOf(v); ok && id == target {
		return nil, nil
	}
	ad := st.aad(keyspace, key)
	pt, err := c.Decrypt(v, ad)
	if err != nil {
		return nil, fmt.Errorf("open %s value %x: %w", keyspace, key, err)
	}
	ct, err := c.Encrypt(pt, ad)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("seal %s value: %w", keyspace, err)
	}
	switch id, ok := c.KeyIDOf(ct); {
	case !ok:
		return nil, events.Errorf(events.EINTERNAL, "the cipher's ciphertexts carry no key id")
	case id != target:
		return nil, fmt.Errorf("%w: value sealed under key 0x%08x, want 0x%08x", errPrimaryChanged, id, target)
	}
	return ct, nil
}
