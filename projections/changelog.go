package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// A tenant's store as a cache of its sealed changelog (a compacted Kafka
// topic, tenant.<id>.sealed, as Kafka Streams keeps a state store's
// changelog). In cluster mode a batch of ingress records goes:
//
//  1. Prepare: the batch's writes in an open Badger transaction, and the
//     same writes as Changes;
//  2. the caller writes the Changes to the changelog and commits the
//     ingress offsets in one Kafka transaction;
//  3. Prepared.Commit commits the Badger transaction with the changelog
//     position after the batch; if the Kafka transaction failed,
//     Prepared.Discard.
//
// After a crash between 2 and 3 the store is behind its changelog: the
// caller reads the changelog from ChangelogNext and gives the records to
// ApplyChanges, which checks each against the tenant's cipher and writes
// them with the new position.
//
// A Change carries what the store writes and nothing else: keys are keyed
// hashes (h(stream), h(event id)), big-endian versions and sequence
// numbers, or topic|partition (offsets); values are sealed with the
// tenant's cipher under tenant|keyspace|key, except offsets (8 bytes) and
// the event index (h(stream)|version). No Change holds plaintext of the
// tenant's events.

// Keyspaces of the vector index, which a changelog carries besides the
// bundle's (KeyspaceLog, ...): an export leaves them out and the
// destination rebuilds the index from the log, but a store restored from
// its changelog is marked built and must get them.
const (
	KeyspaceVector    = ksVector
	KeyspaceVectorDim = ksDim
)

// changelogPrefixes are the keyspaces a Change may name.
var changelogPrefixes = append([]struct{ prefix, keyspace string }{
	{prefixDim, KeyspaceVectorDim},
	{prefixVector, KeyspaceVector},
}, exportedPrefixes...)

// changelogKey is where a store keeps its changelog position (clear: an
// offset of the changelog topic). Like the rewrap cursor it is not
// exported: a position in this cluster's changelog.
var changelogKey = []byte(prefixMeta + "changelog")

// Change is one logical write of a tenant's store: keyspace (KeyspaceLog,
// ...), the key without its keyspace prefix, and the value as stored, or a
// delete of the key (Value nil). A Change from Prepare shares its slices
// with the pending transaction: they must not be modified.
type Change struct {
	Keyspace string
	Key      []byte
	Value    []byte
	Delete   bool
}

// RecordKey is the key of ch's changelog record: the keyspace and key as
// EncodeChange writes them, so that compaction keeps the last write of
// each store key.
func (ch Change) RecordKey() []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen32+len(ch.Keyspace)+len(ch.Key))
	b = binary.AppendUvarint(b, uint64(len(ch.Keyspace)))
	b = append(b, ch.Keyspace...)
	b = binary.AppendUvarint(b, uint64(len(ch.Key)))
	return append(b, ch.Key...)
}

// The encoding of a Change, the value of its changelog record:
//
//	0x01 | op (0x00 set, 0x01 delete) | uvarint len keyspace | keyspace | uvarint len key | key | value
//
// The value takes the rest (empty for a delete); after the op byte it is
// a bundle record (vault/bundle's R payload). Lengths are uvarints, so
// the encoding does not depend on the machine's byte order.
const (
	changeCodecV1 = 0x01
	changeSet     = 0x00
	changeDelete  = 0x01

	maxKeyspaceLen = 64
	maxChangeKey   = 1 << 16 // as bundle.MaxKeyBytes
)

var errMalformedChange = events.Errorf(events.EINVALID, "malformed changelog record")

// EncodeChange encodes ch.
func EncodeChange(ch Change) []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen32+len(ch.Keyspace)+len(ch.Key)+len(ch.Value))
	op := byte(changeSet)
	if ch.Delete {
		op = changeDelete
	}
	b = append(b, changeCodecV1, op)
	b = binary.AppendUvarint(b, uint64(len(ch.Keyspace)))
	b = append(b, ch.Keyspace...)
	b = binary.AppendUvarint(b, uint64(len(ch.Key)))
	b = append(b, ch.Key...)
	if !ch.Delete {
		b = append(b, ch.Value...)
	}
	return b
}

// DecodeChange decodes what EncodeChange encoded. Key and Value alias b.
// It checks the structure only; ApplyChanges checks the contents.
func DecodeChange(b []byte) (Change, error) {
	if len(b) < 2 || b[0] != changeCodecV1 || b[1] > changeDelete {
		return Change{}, errMalformedChange
	}
	rest := b[2:]
	n, ok := canonicalUvarint(&rest)
	if !ok || n == 0 || n > maxKeyspaceLen || n > uint64(len(rest)) {
		return Change{}, errMalformedChange
	}
	ks := rest[:n]
	rest = rest[n:]
	if n, ok = canonicalUvarint(&rest); !ok || n > maxChangeKey || n > uint64(len(rest)) {
		return Change{}, errMalformedChange
	}
	ch := Change{Keyspace: string(ks), Key: rest[:n:n], Delete: b[1] == changeDelete}
	if rest := rest[n:]; ch.Delete {
		if len(rest) != 0 {
			return Change{}, errMalformedChange
		}
	} else {
		ch.Value = rest
	}
	return ch, nil
}

// canonicalUvarint reads a uvarint from *b in its shortest form, the one
// EncodeChange writes (so that a change has one encoding).
func canonicalUvarint(b *[]byte) (uint64, bool) {
	v, k := binary.Uvarint(*b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, v)) {
		return 0, false
	}
	*b = (*b)[k:]
	return v, true
}

// keyspaceOf splits a store key into its keyspace and the rest.
func keyspaceOf(k []byte) (string, []byte, bool) {
	for _, p := range changelogPrefixes {
		if bytes.HasPrefix(k, []byte(p.prefix)) {
			return p.keyspace, k[len(p.prefix):], true
		}
	}
	return "", nil, false
}

func changelogPrefixOf(keyspace string) (string, bool) {
	for _, p := range changelogPrefixes {
		if p.keyspace == keyspace {
			return p.prefix, true
		}
	}
	return "", false
}

// set writes k = v in the transaction, and keeps it as a Change.
func (a *applier) set(k, v []byte) error {
	if err := a.txn.Set(k, v); err != nil {
		return err
	}
	return a.note(k, v, false)
}

// del deletes k in the transaction, and keeps it as a Change.
func (a *applier) del(k []byte) error {
	if err := a.txn.Delete(k); err != nil {
		return err
	}
	return a.note(k, nil, true)
}

func (a *applier) note(k, v []byte, del bool) error {
	if !a.collect {
		return nil
	}
	ks, key, ok := keyspaceOf(k)
	if !ok {
		return events.Errorf(events.EINTERNAL, "write of key %x outside the changelog keyspaces", k)
	}
	ch := Change{Keyspace: ks, Key: key, Value: v, Delete: del}
	if i, ok := a.changeAt[string(k)]; ok {
		a.changes[i] = ch // the last write of a key is the one that counts
		return nil
	}
	if a.changeAt == nil {
		a.changeAt = make(map[string]int)
	}
	a.changeAt[string(k)] = len(a.changes)
	a.changes = append(a.changes, ch)
	return nil
}

// Prepared is a batch applied in an open Badger transaction, not yet
// committed: Prepare's. It holds the store's apply lock until Commit or
// Discard, one of which must be called; Apply, Rewrap and the other
// writers of the store wait meanwhile. It is not safe for concurrent use.
type Prepared struct {
	st       *Store
	a        *applier
	n        int
	verdicts []Verdict
	done     bool
}

// Prepare applies the records of batch, as ApplyVerdicts would, in one
// Badger transaction that it leaves open, and returns it with the
// writes it holds (Changes). It covers the longest prefix of batch that
// fits in one transaction: Len records, all of them unless Badger
// reported badger.ErrTxnTooBig; the caller prepares the rest after
// committing these. Nothing is visible to readers, and no in-memory
// cache of the store changes, until Commit; Discard forgets it all.
// Errors are those of ApplyVerdicts; on error nothing is held.
func (st *Store) Prepare(ctx context.Context, c Cipher, batch []Record) (*Prepared, error) {
	if err := checkCipher(c); err != nil {
		return nil, err
	}
	if err := validateBatch(batch); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := st.enter(); err != nil {
		return nil, err
	}
	st.apply.Lock()
	p, err := st.prepare(c, batch)
	if err != nil {
		st.apply.Unlock()
		st.leave()
		return nil, fmt.Errorf("prepare in store of tenant %s: %w", st.tenant, err)
	}
	return p, nil
}

// prepare is Prepare with the store entered and its apply lock held.
func (st *Store) prepare(c Cipher, batch []Record) (*Prepared, error) {
	verdicts := make([]Verdict, len(batch))
	n := len(batch)
	if st.fits > 0 {
		n = min(n, st.fits)
	}
	for {
		a, written, err := st.preparePart(c, batch[:n], verdicts[:n], true)
		if errors.Is(err, badger.ErrTxnTooBig) && n > 1 {
			if written > 0 && written < n {
				n = written
			}
			n = max(1, n-max(1, n/4))
			st.fits = n
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Prepared{st: st, a: a, n: n, verdicts: verdicts[:n]}, nil
	}
}

// Len is how many records of the batch, from the first, p covers.
func (p *Prepared) Len() int { return p.n }

// Verdicts returns the verdict of each of the Len records p covers.
func (p *Prepared) Verdicts() []Verdict { return p.verdicts }

// Result counts p's verdicts (Streams: the streams they touched; Commits: 1).
func (p *Prepared) Result() Result {
	r := p.a.res
	r.Commits = 1
	for _, s := range p.a.order {
		if s.rec.Version > 0 {
			r.Streams++
		}
	}
	return r
}

// Changes returns the writes of p's transaction, the last write of each
// key, in the order the keys were first written. None if the batch was
// all redeliveries. They must not be modified.
func (p *Prepared) Changes() []Change { return p.a.changes }

// Commit commits p's transaction, storing changelogNext (the changelog
// offset after the record of p's last Change: where a restore goes on)
// in the same transaction; then the store's in-memory caches take the
// batch in. changelogNext must not be below the stored position
// (ChangelogNext). Commit or Discard ends p; later calls fail. If Commit
// fails after the changelog took the Changes, the store is behind its
// changelog: restore it with ApplyChanges.
func (p *Prepared) Commit(changelogNext int64) error {
	if p.done {
		return events.Errorf(events.EINTERNAL, "projections: Prepared used after Commit or Discard")
	}
	defer p.end()
	st := p.st
	if changelogNext < 0 {
		return events.Errorf(events.EINVALID, "negative changelog position %d", changelogNext)
	}
	cur, err := readChangelogNext(p.a.txn)
	if err != nil {
		return fmt.Errorf("commit in store of tenant %s: %w", st.tenant, err)
	}
	if changelogNext < cur {
		return events.Errorf(events.EINVALID, "commit in store of tenant %s: changelog position %d is behind the stored %d", st.tenant, changelogNext, cur)
	}
	if err := p.a.txn.Set(changelogKey, be64(uint64(changelogNext))); err != nil {
		return fmt.Errorf("commit in store of tenant %s: write changelog position: %w", st.tenant, err)
	}
	if err := p.a.txn.Commit(); err != nil {
		return fmt.Errorf("commit in store of tenant %s: %w", st.tenant, err)
	}
	p.a.committed(nil)
	return nil
}

// Discard forgets p's transaction: the store and its caches are as they
// were before Prepare. It does nothing after Commit or Discard.
func (p *Prepared) Discard() {
	if !p.done {
		p.end()
	}
}

func (p *Prepared) end() {
	p.done = true
	p.a.txn.Discard()
	p.st.apply.Unlock()
	p.st.leave()
}

func readChangelogNext(txn *badger.Txn) (int64, error) {
	item, err := txn.Get(changelogKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read changelog position: %w", err)
	}
	var next int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 || binary.BigEndian.Uint64(v) > math.MaxInt64 {
			return events.Errorf(events.EINTERNAL, "malformed changelog position")
		}
		next = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return next, err
}

// ChangelogNext returns the changelog position the store holds: the
// changelog offset to restore from. 0 when none was stored.
func (st *Store) ChangelogNext() (int64, error) {
	if err := st.enter(); err != nil {
		return 0, err
	}
	defer st.leave()
	var next int64
	err := st.db.View(func(txn *badger.Txn) error {
		var err error
		next, err = readChangelogNext(txn)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("changelog position of tenant %s: %w", st.tenant, err)
	}
	return next, nil
}

// ErrChangelogTampered is returned (errors.Is) by ApplyChanges for a
// change that is not one of the tenant's store: an unknown keyspace, a
// malformed key or value, a value that does not open with the tenant's
// cipher under its key, a delete where the store never deletes.
var ErrChangelogTampered error = events.Errorf(events.EINVALID, "changelog record refused")

// ChangeError says which change of a run ApplyChanges refused, and why.
type ChangeError struct {
	Index    int    // in the run
	Keyspace string // as the change names it (quoted, bounded, in Error)
	Err      error
}

func (e *ChangeError) Error() string {
	return fmt.Sprintf("changelog record %d (keyspace %.40q) refused: %v", e.Index, e.Keyspace, e.Err)
}

// Unwrap returns ErrChangelogTampered and the cause.
func (e *ChangeError) Unwrap() []error { return []error{ErrChangelogTampered, e.Err} }

// CheckChange checks one change of tenant t's changelog: what CheckRecord
// checks of a bundle record (a known keyspace, a well-formed offset or
// index entry, a sealed value that opens with c under
// tenant|keyspace|key), for the vector keyspaces too; the key's shape in
// its keyspace; and that a delete is in the one keyspace the store deletes
// in (KeyspaceVector), with no value. The plaintext is cleared at once.
func CheckChange(t events.TenantID, c Cipher, ch Change) error {
	prefix, ok := changelogPrefixOf(ch.Keyspace)
	if !ok {
		return events.Errorf(events.EINVALID, "unknown keyspace")
	}
	want := -1 // key length; -1: checked below
	switch ch.Keyspace {
	case KeyspaceState, KeyspaceIndex, KeyspaceVector:
		want = hashLen
	case KeyspaceLog:
		want = hashLen + 8
	case KeyspaceQuarantine:
		want = 8
	case KeyspaceVectorDim:
		want = len(dimKey) - len(prefixDim)
		if !bytes.Equal(ch.Key, dimKey[len(prefixDim):]) {
			return events.Errorf(events.EINVALID, "malformed vector-dim key")
		}
	}
	if want >= 0 && len(ch.Key) != want {
		return events.Errorf(events.EINVALID, "malformed %s key of %d bytes", ch.Keyspace, len(ch.Key))
	}
	if ch.Delete {
		if ch.Keyspace != KeyspaceVector || len(ch.Value) != 0 {
			return events.Errorf(events.EINVALID, "delete in keyspace %s: the store never deletes there", ch.Keyspace)
		}
		return nil
	}
	if _, bundled := prefixOf(ch.Keyspace); bundled {
		return CheckRecord(t, c, ch.Keyspace, ch.Key, ch.Value)
	}
	full := concat([]byte(prefix), ch.Key)
	st := Store{tenant: t}
	pt, err := c.Decrypt(ch.Value, st.aad(ch.Keyspace, full))
	if err != nil {
		return fmt.Errorf("open %s value %x: %w", ch.Keyspace, full, err)
	}
	clear(pt)
	return nil
}

// ApplyChanges writes a run of changelog records (in changelog order) in
// one Badger transaction, with next, the changelog offset after the last
// of them, as the store's position. Every change is checked first
// (CheckChange, with c: each sealed value must open with the tenant's
// keys under its key); one that fails refuses the run with a *ChangeError
// (errors.Is ErrChangelogTampered) and nothing is written.
//
// A run with next at or below the stored position is a replay and
// changes nothing (replaying it would take back later writes of its
// keys); a run that goes past it is written whole, which leaves a key
// that the part already applied wrote as it was. So the caller reads the
// changelog from ChangelogNext and calls ApplyChanges repeatedly, with
// runs small enough for one transaction (ETOOLARGE otherwise: give
// fewer). The state cache and the in-memory vector index are dropped
// when the run commits; they fill again from the store.
func (st *Store) ApplyChanges(ctx context.Context, c Cipher, next int64, changes []Change) error {
	if err := checkCipher(c); err != nil {
		return err
	}
	if next < 0 {
		return events.Errorf(events.EINVALID, "negative changelog position %d", next)
	}
	for i, ch := range changes {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := CheckChange(st.tenant, c, ch); err != nil {
			return fmt.Errorf("apply changelog to store of tenant %s: %w", st.tenant, &ChangeError{Index: i, Keyspace: ch.Keyspace, Err: err})
		}
	}
	if err := st.enter(); err != nil {
		return err
	}
	defer st.leave()
	st.apply.Lock()
	defer st.apply.Unlock()
	if err := st.applyChanges(next, changes); err != nil {
		return fmt.Errorf("apply changelog to store of tenant %s: %w", st.tenant, err)
	}
	return nil
}

func (st *Store) applyChanges(next int64, changes []Change) error {
	txn := st.db.NewTransaction(true)
	defer txn.Discard()
	cur, err := readChangelogNext(txn)
	if err != nil {
		return err
	}
	if next <= cur {
		return nil // a replay
	}
	vectors := false
	for _, ch := range changes {
		prefix, _ := changelogPrefixOf(ch.Keyspace)
		k := concat([]byte(prefix), ch.Key)
		if ch.Delete {
			err = txn.Delete(k)
		} else {
			err = txn.Set(k, bytes.Clone(ch.Value))
		}
		if errors.Is(err, badger.ErrTxnTooBig) {
			return events.Errorf(events.ETOOLARGE, "%d changes do not fit in one transaction: give fewer", len(changes))
		}
		if err != nil {
			return fmt.Errorf("write change: %w", err)
		}
		vectors = vectors || ch.Keyspace == KeyspaceVector || ch.Keyspace == KeyspaceVectorDim
	}
	if err := txn.Set(changelogKey, be64(uint64(next))); err != nil {
		if errors.Is(err, badger.ErrTxnTooBig) {
			return events.Errorf(events.ETOOLARGE, "%d changes do not fit in one transaction: give fewer", len(changes))
		}
		return fmt.Errorf("write changelog position: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	st.states = stateCache{}
	if vectors {
		st.dropIndex()
	}
	return nil
}
