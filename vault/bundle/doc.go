// Package bundle owns the tenantvault-bundle/v1 format: one file that
// carries one tenant from a vault to another (vaultctl tenant export,
// import, move), its writer and its streaming verifier.
//
// # Format
//
// A bundle is the line "tenantvault-bundle/v1\n" followed by frames, each
// one kind byte, a uvarint length and that many bytes of payload, in this
// order and no other:
//
//	H     header (JSON): tenant, source vault's audit verifier key, import
//	      key fingerprint of the destination, registry facts (token hash,
//	      topic id, created)
//	R*    records: uvarint(len keyspace) keyspace uvarint(len key) key value —
//	      the tenant store's logical records, values as sealed on disk
//	      (never decrypted on the way), in key order
//	O     offsets (JSON): the last applied offset of each partition of the
//	      tenant topic
//	C     the source audit log's signed checkpoint (a C2SP signed note)
//	A*    audit records (JSON): one of the tenant's records (its canonical
//	      line), its index and its RFC 9162 inclusion proof against C
//	M     manifest (JSON): counts, the RFC 6962 root of the R payloads (leaf
//	      = SHA-256(0x00 || payload)), and the SHA-256 of every byte before
//	      M (the first line included)
//	K     the tenant keyset, encrypted with Tink HPKE to the destination's
//	      import key, context info = tenant id and SHA-256(M payload)
//	S     a signed note by the source's audit key whose text is
//	      "tenantvault-bundle/v1 signature", the tenant, the SHA-256 of M and
//	      of K (hex)
//
// and then the end of the file. Verify checks all of it in one pass:
// frame order and bounds, the header against the caller's source key, every
// proof against the checkpoint, the manifest against what it counted and
// hashed, and the signature; anything else — a byte changed, a frame cut,
// appended or reordered — is an *Error naming what failed.
//
// # What it must never do
//
// It never sees key material or plaintext: records are opaque, the keyset
// frame is opaque ciphertext for package keys. It imports of ours only
// events and audit (proofs, checkpoints), and of third parties only
// transparency-dev/merkle and golang.org/x/mod/sumdb/note.
package bundle
