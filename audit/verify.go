package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/note"
)

// Report is what an offline verification found.
type Report struct {
	// Checkpoint is the checkpoint verified against: its signature checked
	// with the verifier key, its root recomputed from the records.
	Checkpoint Checkpoint
	// Records is the number of complete records read. The first
	// Checkpoint.Size of them are covered by the checkpoint; any after them
	// were checked only by the hash chain (they are newer than it).
	Records uint64
	// Files is the number of segment files read (0 for a stream).
	Files int
	// Bytes is the number of bytes of complete records read.
	Bytes int64
	// Head is the hex leaf hash of the last record read ("" if none).
	Head string
	// TornBytes counts the bytes of an unterminated final line after the
	// records the checkpoint covers (a copy taken during a write); they are
	// not verified. Inside the covered records it is an error.
	TornBytes int64
	// Receipts is the number of shred receipts found in the records and
	// verified (signature, tenant, key ids, index; see VerifyExport).
	Receipts int
	// ShredsWithoutReceipt counts tenant.shred records with outcome ok that
	// hold no receipt (a vault run without a receipt signer).
	ShredsWithoutReceipt int
}

// Verified is the number of records the checkpoint covers: read, chained
// and hashed to its signed root.
func (r Report) Verified() uint64 { return min(r.Records, r.Checkpoint.Size) }

// Unverified is the number of records read past the checkpoint's size:
// well-formed and chained to the verified ones, but covered by no
// signature yet, so a forger with write access could have made them.
func (r Report) Unverified() uint64 { return r.Records - r.Verified() }

// VerifyExportDir verifies an exported copy of the log: the segment files
// NNNNNNNNNNNN.jsonl in dir (other files are ignored), against a signed
// checkpoint. It needs nothing but the files, the checkpoint and the
// log's public verifier key (Log.PublicKey, keys.Keystore.AuditVerifierKey),
// and never writes. See VerifyExport for what it checks.
func VerifyExportDir(ctx context.Context, dir string, checkpoint []byte, verifierKey string) (Report, error) {
	ev, err := newExportVerifier(checkpoint, verifierKey)
	if err != nil {
		return Report{}, err
	}
	res, err := scan(ctx, dir, scanOptions{visit: ev.visit, lenient: true})
	for _, s := range res.segs {
		ev.rep.Bytes += s.size
	}
	ev.rep.Files = len(res.segs)
	return ev.finish(res, err)
}

// VerifyExport verifies a stream of records (every segment file of the log
// concatenated in order, or an export starting at record 0) against a
// signed checkpoint. It checks, in order, and stops at the first failure:
//
//   - the checkpoint is a signed note with a valid Ed25519 signature by
//     verifierKey, whose text is a checkpoint with the key's name as origin
//     (else *BadCheckpointError; the records are not read);
//   - every line is a record as VERIFYING.md reads one (ParseVerifiable:
//     the canonical form is not required and unknown fields are ignored),
//     record i has index i, and its prev is the hex leaf hash of line i-1
//     ("" for record 0);
//   - every shred receipt a record holds (Details[DetailReceipt]) is in a
//     tenant.shred record with outcome ok, is signed by verifierKey, and
//     names that record's tenant, key ids and index (else *BadReceiptError);
//   - the RFC 6962 Merkle tree over the first Checkpoint.Size lines has the
//     checkpoint's root;
//   - there are at least Checkpoint.Size records.
//
// Records past Checkpoint.Size are checked by the chain (and their receipts)
// only: the Report counts them (Report.Unverified), and a caller that must
// rely on them needs a newer checkpoint.
//
// Each record failure is an *InconsistentError naming the first bad record:
// its index (At), segment file (VerifyExportDir), line and byte offset, and
// what was expected and found. A record altered in place is named through
// its successor, whose prev no longer matches; records rewritten with their
// chain recomputed, or a rewritten last record, are caught by the root and
// named at Checkpoint.Size-1; records cut off the end are named at the first
// missing index. The Report says how far it got, also on failure.
func VerifyExport(ctx context.Context, r io.Reader, checkpoint []byte, verifierKey string) (Report, error) {
	ev, err := newExportVerifier(checkpoint, verifierKey)
	if err != nil {
		return Report{}, err
	}
	c := newVerifierChain()
	rr, err := c.read(ctx, r, "", true, 0, ev.visit)
	ev.rep.Bytes = rr.size
	return ev.finish(scanResult{n: c.n, head: c.head, torn: rr.torn}, err)
}

// exportVerifier rebuilds the tree while a chain is read and checks it
// against the checkpoint.
type exportVerifier struct {
	cp   Checkpoint
	v    note.Verifier
	tree tree
	rep  Report
}

func newExportVerifier(checkpoint []byte, verifierKey string) (*exportVerifier, error) {
	v, err := newVerifier(verifierKey)
	if err != nil {
		return nil, err
	}
	c, err := openCheckpoint(checkpoint, v)
	if err != nil {
		return nil, err
	}
	if c.Size == 0 && c.Root != emptyRoot {
		return nil, checkpointMismatch(c, emptyRoot, scanned{})
	}
	return &exportVerifier{cp: c, v: v, rep: Report{Checkpoint: c}}, nil
}

func (ev *exportVerifier) visit(s scanned) error {
	held, err := checkReceipt(s.rec, ev.v)
	if err != nil {
		return err
	}
	switch {
	case held:
		ev.rep.Receipts++
	case s.rec.Action == ActionTenantShred && s.rec.Outcome == OutcomeOK:
		ev.rep.ShredsWithoutReceipt++
	}
	if ev.tree.size >= ev.cp.Size {
		return nil // past the checkpoint: the chain only
	}
	ev.tree.append(s.hash)
	if ev.tree.size == ev.cp.Size {
		if root := ev.tree.root(); root != ev.cp.Root {
			return checkpointMismatch(ev.cp, root, s)
		}
	}
	return nil
}

func (ev *exportVerifier) finish(res scanResult, err error) (Report, error) {
	ev.rep.Records = res.n
	if res.n > 0 {
		ev.rep.Head = hex.EncodeToString(res.head[:])
	}
	if err != nil {
		return ev.rep, err
	}
	if res.n < ev.cp.Size {
		return ev.rep, checkpointPastEnd(ev.cp, res)
	}
	ev.rep.TornBytes = res.torn
	return ev.rep, nil
}

// ReplayExport verifies a stream of records exactly as VerifyExport does
// and, as it goes, re-derives each record's flag from its raw fields
// (CheckFlag: a flag that Classify does not derive is an *InconsistentError)
// and hands each verified record to visit, in order. Records are verified
// by the hash chain before visit sees them; the Merkle root is checked when
// the stream reaches Checkpoint.Size, so a rewrite that recomputed the
// chain is reported only there — a caller that emits records as it goes
// must treat the output as untrusted unless ReplayExport returns nil.
// Records past Checkpoint.Size are handed to visit too, though no
// checkpoint covers them (Index >= Checkpoint.Size: mark them unverified).
// visit's error stops the replay and is returned.
func ReplayExport(ctx context.Context, r io.Reader, checkpoint []byte, verifierKey string, visit func(Record) error) (Report, error) {
	ev, err := newExportVerifier(checkpoint, verifierKey)
	if err != nil {
		return Report{}, err
	}
	c := newVerifierChain()
	rr, err := c.read(ctx, r, "", true, 0, func(s scanned) error {
		if err := ev.visit(s); err != nil {
			return err
		}
		if !CheckFlag(s.rec) {
			flagged, _, reason := Classify(s.rec)
			return &InconsistentError{At: s.rec.Index, Line: s.lineNo, Offset: s.off,
				Want: fmt.Sprintf("flagged=%v reason=%q (derived from the record's fields)", flagged, reason),
				Got:  fmt.Sprintf("flagged=%v reason=%q", s.rec.Flagged, s.rec.Reason)}
		}
		return visit(s.rec)
	})
	ev.rep.Bytes = rr.size
	return ev.finish(scanResult{n: c.n, head: c.head, torn: rr.torn}, err)
}
