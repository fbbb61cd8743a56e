// Package keys owns tenantvault's key material: the master key (KEK) that
// wraps everything at rest, one Tink keyset per tenant (an AES-256-GCM AEAD
// keyset for sealing data and an HMAC-SHA256 PRF keyset for keyed hashes),
// and the key-id → tenant index that lets the vault and the audit log tell
// which tenant a ciphertext belongs to.
//
// # What it owns
//
//   - The master key, opened from a URI (see [OpenKeystore]). Only local://PATH
//     exists today: a cleartext Tink keyset on disk, for development only.
//     KMS schemes (hcvault://, aws-kms://, gcp-kms://) plug in behind the
//     unexported masterKey seam: anything that is a tink.AEAD can wrap keysets.
//   - <dir>/<tenant>.keyset: the tenant's AEAD and PRF keysets, each wrapped by
//     the master key with the tenant id as associated data, so a file renamed
//     or copied to another tenant does not open. Written atomically, mode 0600.
//   - <dir>/master.check: a value sealed by the master key, so that opening the
//     keystore with a different master key fails with a clear error instead of
//     one "cannot unwrap" per tenant.
//   - <dir>/audit-checkpoint.signer: the Ed25519 key that signs the audit
//     log's checkpoints, created on first use by [Keystore.AuditSigner] and
//     wrapped by the master key with the associated data
//     "audit-checkpoint-signer". The audit log receives it only as a
//     note.Signer ([CheckpointSigner]); auditors get the public verifier key
//     from [Keystore.AuditVerifierKey].
//   - Key ids unique across all tenants (regenerated on collision), so a
//     ciphertext's 5-byte Tink prefix names exactly one owner ([Keystore.Owner]).
//
// # What it must never do
//
//   - Return, log or print raw key bytes. No exported function hands out key
//     material or a keyset.Handle; [TenantCipher], [CheckpointSigner] and
//     [Keystore] print redacted (String, GoString, LogValue).
//   - Write a keyset to disk unwrapped, or wrapped without its owner bound as
//     associated data (the tenant id; "audit-checkpoint-signer" for the audit
//     key).
//   - Try a tenant's keys on another tenant's ciphertext: Decrypt of a foreign
//     key id fails with [*ForeignKeyError] before any decryption is attempted.
//   - Accept a tenant id it did not re-validate with events.ParseTenantID: ids
//     name files here.
//   - Import any tenantvault package other than events.
//
// # Concurrency and what comes later
//
// The structures that map tenants to ciphers and key ids to tenants are
// copy-on-write: writers (Create; later Rotate and Destroy) serialise on a
// mutex and publish a new snapshot through an atomic pointer; readers never
// lock. A TenantCipher holds its keys behind an atomic pointer too, so that
// rotation (a new AEAD primary; old keys keep decrypting) can swap them in
// place under callers that already hold the cipher. The PRF keyset is not
// meant to rotate: Hash outputs are stored as lookup keys, and a new PRF key
// would orphan them.
//
// All tenants' keysets are unwrapped at OpenKeystore and kept in memory for
// the life of the Keystore. A later issue replaces this with a TTL cache of
// unwrapped keysets (the key-id index stays fully loaded), and adds
// Destroy(t) for crypto-shredding, with tombstones of shredded ids in <dir>.
//
// The keystore assumes a single process owns <dir>; there is no file lock.
package keys
