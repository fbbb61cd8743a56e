// Package audit owns tenantvault's append-only, tamper-evident audit log under
// <data-dir>/audit/.
//
// # What a record holds
//
// Metadata only: who acted (Principal), which tenant the action touched, what
// was done (Action, Resource), the key IDs a read decrypted, the outcome, and
// whether the action was flagged and why. A record never holds an event
// payload, a token or credential, key material, or a stream id in clear:
// callers pass a keyed hash of a stream id, never the id itself. The log
// outlives a shredded tenant, so anything personal written here would survive
// the shred; this package cannot tell a hash from an identifier, so the rule
// is on the callers, and reviewers should hold them to it.
//
// A Tenant value that is not a valid events.TenantID (a hostile request may
// name anything) is data, not an identifier: it is stored quoted and escaped
// (Go %+q form, at most MaxInvalidTenantRunes runes of input), so it can
// never be mistaken for a real tenant. All strings are bounded in length and
// forced to valid UTF-8 before they are written.
//
// # On-disk format
//
// Segment files <dir>/NNNNNNNNNNNN.jsonl, named by the 12-digit zero-padded
// index of their first record, rolled at about Options.SegmentBytes (64 MiB).
// Each line is one record: its canonical bytes followed by "\n". The canonical
// bytes of a record are exactly what encoding/json's Marshal produces for
// Record (fields in declaration order, map keys sorted, HTML-escaped, time in
// RFC 3339 with nanoseconds, UTC). ParseRecord accepts a line only if
// re-encoding what it decoded gives back the same bytes, so every record has
// one encoding and every verifier reads the same record from it.
//
// Records have a dense 0-based Index. The canonical bytes of record i are its
// RFC 6962 Merkle leaf; LeafHash(leaf) = SHA-256(0x00 || leaf) is its leaf
// hash, and record i+1 carries the hex leaf hash of record i in Prev (record 0
// carries ""). The hash chain therefore holds exactly the leaf hashes a
// Merkle tree over the log is built from, and signed checkpoints and proofs
// can be added later without re-encoding anything.
//
// # What it must never do
//
//   - rewrite or delete a record: the log is append-only; recovery only drops a
//     torn final line that was never acknowledged;
//   - acknowledge a record (Append returning nil) before it is fsynced;
//   - store payloads, tokens, key bytes or clear stream ids.
//
// The hash chain detects a modified, deleted, inserted or reordered record,
// except at the very end of the log: dropping or rewriting the last records of
// a closed log is only detectable against a signed checkpoint (a later issue).
package audit
