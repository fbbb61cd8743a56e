package audit

import (
	"fmt"
	"sort"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tenantvault/tenantvault/events"
)

// Checkpoint returns the latest signed checkpoint: the signed note as
// published (C2SP tlog-checkpoint, see VERIFYING.md), and its size and
// root. With a Signer it covers every record durable at most
// CheckpointInterval ago (every record once the log is closed); a record
// just appended may not be covered yet. It returns ErrNoCheckpoint when
// there is none (the log never had a Signer).
func (l *Log) Checkpoint() (signedNote []byte, size uint64, root [HashSize]byte, err error) {
	last := l.cps.latest()
	if last == nil {
		return nil, 0, root, ErrNoCheckpoint
	}
	return append([]byte(nil), last.note...), last.cp.Size, last.cp.Root, nil
}

// CheckpointAt returns the signed checkpoint of the given size from the
// log's history, for a consistency check against an older tree head, or
// ErrNoCheckpoint if the log never signed one of that size (checkpoints
// are made at most once per CheckpointInterval, so most sizes have none).
func (l *Log) CheckpointAt(size uint64) ([]byte, error) {
	return l.cps.at(size)
}

// PublicKey returns the note verifier key of the log's checkpoints
// (Options.VerifierKey): what an auditor passes to VerifyExport,
// VerifyInclusion and VerifyConsistency. It is "" without one.
func (l *Log) PublicKey() string { return l.opts.VerifierKey }

// InclusionProof returns the RFC 9162 inclusion proof of record index in
// the tree of the first size records: the hashes that, with the record's
// leaf hash, recompute the root of that tree (see VerifyInclusion). size is
// usually that of a checkpoint; it must be at most Size, and index below
// it, or the error has code EINVALID.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	v, done, err := l.view()
	if err != nil {
		return nil, err
	}
	defer done()
	if size == 0 || size > v.size || index >= size {
		return nil, events.Errorf(events.EINVALID, "no inclusion proof of record %d in a tree of size %d: the log has %d records", index, size, v.size)
	}
	return v.inclusion(index, size)
}

// ConsistencyProof returns the RFC 9162 consistency proof between the trees
// of the first from and the first to records: the hashes that show the
// larger tree extends the smaller one (see VerifyConsistency). It needs
// from ≤ to ≤ Size, or the error has code EINVALID; from = 0 or from = to
// give an empty proof.
func (l *Log) ConsistencyProof(from, to uint64) ([][]byte, error) {
	v, done, err := l.view()
	if err != nil {
		return nil, err
	}
	defer done()
	if from > to || to > v.size {
		return nil, events.Errorf(events.EINVALID, "no consistency proof from size %d to size %d: the log has %d records", from, to, v.size)
	}
	return v.consistency(from, to)
}

// view returns a snapshot of the tree that reads blocks from the segment
// files, and the function that releases it.
func (l *Log) view() (*treeView, func(), error) {
	l.filesMu.RLock() // keeps the segment files open while we read them
	if l.filesClosed {
		l.filesMu.RUnlock()
		return nil, nil, ErrClosed
	}
	l.mu.RLock()
	v := l.tree.view()
	meta := l.idx.meta[:l.idx.size]
	segs := l.idx.segs[:len(l.idx.segs):len(l.idx.segs)]
	l.mu.RUnlock()
	v.readBlock = func(b uint64) ([][HashSize]byte, error) { return readBlock(segs, meta, b) }
	return v, l.filesMu.RUnlock, nil
}

// readBlock reads the records of complete block b from the segment files
// (one read per segment it spans) and returns their leaf hashes.
func readBlock(segs []*segment, meta []recMeta, b uint64) ([][HashSize]byte, error) {
	first, end := b<<blockLevel, (b+1)<<blockLevel
	out := make([][HashSize]byte, 0, blockSize)
	for i := first; i < end; {
		s := sort.Search(len(segs), func(k int) bool { return segs[k].first > i }) - 1
		stop := end
		if s+1 < len(segs) && segs[s+1].first < stop {
			stop = segs[s+1].first
		}
		start := int64(meta[i].off)
		last := meta[stop-1]
		n := int64(last.off) + int64(last.size&^flaggedBit) - start
		if n < 0 || n > blockSize*(maxLineBytes+1) {
			return nil, fmt.Errorf("audit: records %d to %d: bad index", i, stop-1)
		}
		buf := make([]byte, n)
		if _, err := segs[s].r.ReadAt(buf, start); err != nil {
			return nil, fmt.Errorf("audit: read records %d to %d: %w", i, stop-1, err)
		}
		for j := i; j < stop; j++ {
			m := meta[j]
			o := int64(m.off) - start
			out = append(out, LeafHash(buf[o:o+int64(m.size&^flaggedBit)]))
		}
		i = stop
	}
	return out, nil
}

// runCheckpointer is the checkpointer goroutine: every CheckpointInterval
// it signs a checkpoint of the durable records, if any arrived since the
// last. Close stops it (and makes the last checkpoint itself).
func (l *Log) runCheckpointer() {
	defer close(l.cpDone)
	t := time.NewTicker(l.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := l.checkpoint(); err != nil {
				l.logger.Error("audit: checkpoint failed", "err", err)
			}
		case <-l.cpStop:
			return
		}
	}
}

// checkpoint signs and persists a checkpoint of every durable record,
// unless the latest one already covers them. Only one goroutine calls it at
// a time (cpMu): Open, the checkpointer, CheckpointNow, Close.
func (l *Log) checkpoint() error {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	l.mu.RLock()
	size := l.tree.size
	if last := l.cps.latest(); last != nil && last.cp.Size == size {
		l.mu.RUnlock()
		return nil
	}
	root := l.tree.root()
	l.mu.RUnlock()

	c := Checkpoint{Origin: l.opts.Signer.Name(), Size: size, Root: root}
	signed, err := SignCheckpoint(c, l.opts.Signer)
	if err != nil {
		return fmt.Errorf("audit: sign checkpoint of size %d: %w", size, err)
	}
	if got, err := openCheckpoint(signed, l.verifier); err != nil || got != c {
		return fmt.Errorf("audit: the signer made a checkpoint of size %d that does not verify with the log's verifier key: %v", size, err)
	}
	if err := l.cps.append(&signedCheckpoint{note: signed, cp: c}); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if l.opts.OnCheckpoint != nil {
		l.opts.OnCheckpoint(append([]byte(nil), signed...), c)
	}
	return nil
}

// CheckpointNow signs a checkpoint of every durable record at once
// (unless the latest covers them all) and returns it, as Checkpoint does:
// for an export whose proofs must cover the records just written. It
// returns ErrNoCheckpoint without a Signer.
func (l *Log) CheckpointNow() (signedNote []byte, size uint64, root [HashSize]byte, err error) {
	if l.opts.Signer == nil {
		return nil, 0, root, ErrNoCheckpoint
	}
	if err := l.checkpoint(); err != nil {
		return nil, 0, root, err
	}
	return l.Checkpoint()
}

// BadProofError reports a Merkle proof that does not verify: the record is
// not in the tree the checkpoint signed, the log was rewritten or forked
// between two checkpoints, or the proof is damaged.
type BadProofError struct {
	Proof  string // "inclusion" or "consistency"
	Index  uint64 // inclusion: the record's index
	From   uint64 // consistency: the older checkpoint's size
	Size   uint64 // the size of the (newer) checkpoint the proof leads to
	Reason string
}

func (e *BadProofError) Error() string {
	if e.Proof == "inclusion" {
		return fmt.Sprintf("audit: inclusion proof of record %d in the tree of size %d does not verify: %s", e.Index, e.Size, e.Reason)
	}
	return fmt.Sprintf("audit: consistency proof from size %d to size %d does not verify: %s", e.From, e.Size, e.Reason)
}

// VerifyInclusion checks that line (a record's canonical bytes, without
// the newline) is record index of the log that signed checkpoint:
// checkpoint must verify with verifierKey (else *BadCheckpointError), line
// must be a record with that index as VERIFYING.md reads one
// (ParseVerifiable), and proof (from
// InclusionProof(index, checkpoint size)) must lead from its leaf hash to
// the checkpoint's root (else *BadProofError).
func VerifyInclusion(line []byte, index uint64, hashes [][]byte, checkpoint []byte, verifierKey string) error {
	c, err := OpenCheckpoint(checkpoint, verifierKey)
	if err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return &BadProofError{Proof: "inclusion", Index: index, Size: c.Size, Reason: fmt.Sprintf(format, args...)}
	}
	r, err := ParseVerifiable(line)
	if err != nil {
		return bad("%v", err)
	}
	if r.Index != index {
		return bad("the record has index %d", r.Index)
	}
	if err := checkHashes(hashes); err != nil {
		return bad("%v", err)
	}
	leaf := LeafHash(line)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, c.Size, leaf[:], hashes, c.Root[:]); err != nil {
		return bad("%v", err)
	}
	return nil
}

// VerifyConsistency checks that the log only grew between two checkpoints:
// both must verify with verifierKey (else *BadCheckpointError), the newer may
// not be smaller, and proof (from ConsistencyProof(old size, new size))
// must show that the newer tree extends the older one (else *BadProofError).
// Two checkpoints of one size must have the same root.
func VerifyConsistency(oldCheckpoint, newCheckpoint []byte, hashes [][]byte, verifierKey string) error {
	v, err := newVerifier(verifierKey)
	if err != nil {
		return err
	}
	c1, err := openCheckpoint(oldCheckpoint, v)
	if err != nil {
		return err
	}
	c2, err := openCheckpoint(newCheckpoint, v)
	if err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return &BadProofError{Proof: "consistency", From: c1.Size, Size: c2.Size, Reason: fmt.Sprintf(format, args...)}
	}
	if c1.Size > c2.Size {
		return bad("the newer checkpoint is smaller: the log shrank")
	}
	if err := checkHashes(hashes); err != nil {
		return bad("%v", err)
	}
	if c1.Size == 0 { // every tree extends the empty one (merkle after v0.0.2 refuses to check it)
		if len(hashes) > 0 {
			return bad("a proof from size 0 must be empty, it has %d hashes", len(hashes))
		}
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c1.Size, c2.Size, hashes, c1.Root[:], c2.Root[:]); err != nil {
		return bad("%v (the log was rewritten between the two checkpoints, or the proof is damaged)", err)
	}
	return nil
}

func checkHashes(hashes [][]byte) error {
	if len(hashes) > 128 { // 2·64 bounds any proof in a tree of < 2^64 leaves
		return fmt.Errorf("%d hashes, more than any proof has", len(hashes))
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("hash %d is %d bytes, want %d", i, len(h), HashSize)
		}
	}
	return nil
}
