package vault

import (
	"context"
	"io"

	"github.com/tenantvault/tenantvault/audit"
)

// AuditReader is what an admin reads of the audit log itself: its signed
// checkpoints, its proofs and its records as stored. It has no way to
// append, close or reconfigure the log; the *audit.Log it reads is not
// reachable from it.
type AuditReader struct{ l *audit.Log }

// Checkpoint is the latest signed checkpoint (audit.Log.Checkpoint).
func (a AuditReader) Checkpoint() (signedNote []byte, size uint64, root [audit.HashSize]byte, err error) {
	return a.l.Checkpoint()
}

// CheckpointAt is the signed checkpoint of size records
// (audit.Log.CheckpointAt).
func (a AuditReader) CheckpointAt(size uint64) ([]byte, error) { return a.l.CheckpointAt(size) }

// InclusionProof is the inclusion proof of record index in the tree of
// size records (audit.Log.InclusionProof).
func (a AuditReader) InclusionProof(index, size uint64) ([][]byte, error) {
	return a.l.InclusionProof(index, size)
}

// ConsistencyProof is the consistency proof between the trees of from and
// to records (audit.Log.ConsistencyProof).
func (a AuditReader) ConsistencyProof(from, to uint64) ([][]byte, error) {
	return a.l.ConsistencyProof(from, to)
}

// Size is the number of durable records (audit.Log.Size).
func (a AuditReader) Size() uint64 { return a.l.Size() }

// Export writes records [from, to) as stored (audit.Log.Export).
func (a AuditReader) Export(ctx context.Context, w io.Writer, from, to uint64) (uint64, error) {
	return a.l.Export(ctx, w, from, to)
}
