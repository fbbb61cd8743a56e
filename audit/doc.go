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
// Nor does a record hold text a producer supplied (an attribute value, a
// claimed tenant that is not one of the vault's, the name of a topic anyone
// could create): callers record a reason code or a keyed hash instead.
// Records of what anyone can cause without a credential may be aggregates
// standing for many occurrences (DetailAggregated, Occurrences; see
// aggregate.go): ordinary records of the chain, so their counts verify.
//
// A Tenant value that is not a valid events.TenantID (a hostile request may
// name anything) is data, not an identifier: it is stored quoted and escaped
// (Go %+q form, at most MaxInvalidTenantRunes runes of input), so it can
// never be mistaken for a real tenant. All strings are bounded in length and
// forced to valid UTF-8 before they are written.
//
// # Vocabulary
//
// Principal, Action and Outcome are string types: a record's JSON is the same
// as with plain strings. The constants (PrincipalAdmin, PrincipalTenant(id),
// ActionStreamRead, OutcomeDenied, ...) are every value tenantvault writes;
// callers use them, never string literals. Append refuses an Outcome other
// than the four; Principal and Action are free text on disk (a verifier
// accepts any). The actions that read tenant data are declared here once
// (Action.IsTenantData, TenantDataActions): the boundary check flags an
// admin's use of exactly those, and the tenant session (vault.Session)
// opens under no other.
//
// # On-disk format
//
// Segment files <dir>/NNNNNNNNNNNN.jsonl, named by the 12-digit zero-padded
// index of their first record, rolled at about Options.SegmentBytes (64 MiB).
// Each line is one record: its canonical bytes followed by "\n". The canonical
// bytes of a record are exactly what encoding/json's Marshal produces for
// Record (fields in declaration order, map keys sorted, HTML-escaped, time in
// RFC 3339 with nanoseconds, UTC). ParseRecord accepts a line only if
// re-encoding what it decoded gives back the same bytes: the Log requires
// that of its own files. Verifiers of an export do not (VERIFYING.md,
// "Reading a record"): ParseVerifiable ignores unknown members and the
// encoding, and refuses only what two JSON parsers could read differently
// (duplicate member names, lone surrogates, an index that is not plain
// decimal), so every verifier reads the same record from the same bytes.
//
// Records have a dense 0-based Index. The canonical bytes of record i
// (the stored line without its newline) are leaf i of an RFC 6962 Merkle
// tree; LeafHash(leaf) = SHA-256(0x00 || leaf) is its leaf hash, and record
// i+1 carries the hex leaf hash of record i in Prev (record 0 carries "").
// An interior node hashes as SHA-256(0x01 || left || right), the empty tree
// as SHA-256 of nothing, and a tree of n leaves splits at the largest power
// of two below n (RFC 9162 section 2.1.1).
//
// # Checkpoints
//
// A checkpoint (Checkpoint) is a C2SP tlog-checkpoint: a signed note
// (golang.org/x/mod/sumdb/note) whose text is three lines, each ending in
// "\n": the origin, the tree size in decimal, and the root hash in padded
// standard base64 (here the checkpoint of testdata/export/log.jsonl):
//
//	tenantvault.example/audit-test
//	7
//	qRwnIkmBoNtM0gEHACGoIIUmyAblQs+fEZarl/N4psI=
//
//	— tenantvault.example/audit-test DnVXFOb9edNMTF2ferQUFd92ixKR2vdw8MLHqvoQCXKcaVMyOPnIorSJm7ZNUdLaCwwyZ0DDCO98UkjiI4kQAJx1yw8=
//
// After a blank line come signature lines: "— " (U+2014, space), the key
// name, a space and base64(4-byte key hash || 64-byte Ed25519 signature of
// the text). The origin is the name of the key that signs (Options.Signer,
// from keys.Keystore.AuditSigner), and the public key travels as a note
// verifier key, "<name>+<hash>+<base64(0x01 || 32-byte key)>"
// (Log.PublicKey). VERIFYING.md gives every byte, for third parties who
// write their own verifier.
//
// With a Signer, the Log signs a checkpoint of the durable records at Open,
// every Options.CheckpointInterval (a second) while records arrive, and at
// Close. Checkpoints live under <dir>/checkpoints/: "latest" (the latest
// signed note, replaced atomically) and an append-only history,
// NNNNNNNNNNNN.jsonl files of {"size":N,"note":"..."} lines named by the
// size of their first checkpoint, so CheckpointAt serves older ones.
// Options.OnCheckpoint hears of each new one, which is how audit/witness
// publishes checkpoints (a Kafka topic, C2SP witnesses) as they are signed
// and refuses, at start, a log that does not extend what it published.
//
// # Shred receipts
//
// A shred receipt is a signed note by the same key whose text is the line
// ReceiptHeader ("tenantvault shred-receipt v1": it has spaces, which no
// key name, so no checkpoint origin, has) and one line of JSON naming the
// tenant, the key ids destroyed and the index of the tenant.shred record
// that holds it (Details[DetailReceipt]). Log.AppendReceipt has it signed
// once that index is known; OpenReceipt and every export verification
// check it.
//
// # Proofs
//
// InclusionProof and ConsistencyProof return RFC 9162 proofs (lists of
// 32-byte hashes) for any sizes up to Size. The Log keeps, in memory, the
// hash of every complete subtree of 64 records and above (about one byte
// per record) and the leaf hashes of the records after the last one; a
// proof rehashes at most a few blocks of 64 records read from the segment
// files (about 70µs), whatever the size of the log.
//
// # Verifying offline
//
// VerifyExportDir and VerifyExport check an exported log (the segment
// files, or their concatenation) against a signed checkpoint and the
// public key alone, with every shred receipt in it; VerifyInclusion and
// VerifyConsistency check proofs. They name the first bad record
// (*InconsistentError), receipt (*BadReceiptError), or reject the checkpoint
// (*BadCheckpointError) or the proof (*BadProofError). Their Report says what
// the checkpoint covered (Verified) and what lies past it, checked by the
// chain alone (Unverified, TornBytes).
//
// # What it must never do
//
//   - rewrite or delete a record: the log is append-only; recovery only drops a
//     torn final line that was never acknowledged (nor checkpointed);
//   - acknowledge a record (Append returning nil) before it is fsynced;
//   - sign a checkpoint over records that are not durable;
//   - hold key material: it signs through the note.Signer it is given;
//   - store payloads, tokens, key bytes or clear stream ids;
//   - import a package of ours other than events and internal/atomicfile
//     (crash-safe checkpoint writes), or a third-party package other than
//     transparency-dev/merkle and golang.org/x/mod/sumdb/note: no HTTP,
//     Kafka, Tink or Badger here (the webhook and Kafka alert sinks live in
//     audit/alerts). internal/archtest enforces these imports.
//
// The hash chain detects a modified, deleted, inserted or reordered record.
// Dropping or rewriting the last records (or rewriting records and
// recomputing the chain after them) is detected against a signed checkpoint
// that covers them: Open checks every checkpoint in the history, and
// VerifyExport the one it is given. Records newer than the latest
// checkpoint (at most one interval's worth after a crash) are protected by
// the chain alone until the next checkpoint.
package audit
