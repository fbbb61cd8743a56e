// Package keys owns tenantvault's key material: the master key (KEK) that
// wraps everything at rest, one Tink keyset per tenant (an AES-256-GCM AEAD
// keyset for sealing data and an HMAC-SHA256 PRF keyset for keyed hashes),
// and the key-id → tenant index that lets the vault and the audit log tell
// which tenant a ciphertext belongs to.
//
// # What it owns
//
//   - The master key, opened from a URI ([Config].MasterKeyURI) by one of the
//     providers behind the unexported provider interface: local://PATH (a
//     cleartext Tink keyset in a file, development only), hcvault://HOST[:PORT]/MOUNT/keys/NAME
//     (a HashiCorp Vault transit key), aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID
//     (or alias/NAME), gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K,
//     or any URI one of [Config].KMSClients supports (tests: Tink's
//     fake-kms://). Credentials come from each SDK's usual places
//     (VAULT_TOKEN, the AWS chain, Application Default Credentials).
//   - Per-tenant master keys: a URI holding {tenant} ([TenantPlaceholder])
//     wraps each tenant's keyset with its own key, the template with
//     {tenant} replaced by the tenant id (e.g.
//     aws-kms://arn:aws:kms:eu-west-1:111122223333:alias/tv-{tenant}), so
//     that deleting that KMS key alone shreds the tenant, backups included.
//     What belongs to no tenant (the audit checkpoint signer, the audit hash
//     key, master.check)
//     is wrapped by the key with {tenant} replaced by "_vault"
//     ([VaultKeyName]), which must exist too.
//   - <dir>/<tenant>.keyset: the tenant's AEAD and PRF keysets, each wrapped by
//     the master key with the tenant id as associated data, so a file renamed
//     or copied to another tenant does not open, plus the ids of the keys
//     destroyed by DestroyKey (authenticated with the tenant's PRF). Written
//     atomically, mode 0600; a replaced version is overwritten before it is
//     removed.
//   - <dir>/master.check: a value sealed by the master key, so that opening the
//     keystore with a different master key fails with a clear error instead of
//     one "cannot unwrap" per tenant.
//   - <dir>/audit-checkpoint.signer: the Ed25519 key that signs the audit
//     log's checkpoints, created on first use by [Keystore.AuditSigner] and
//     wrapped by the master key with the associated data
//     "audit-checkpoint-signer". The audit log receives it only as a
//     note.Signer ([CheckpointSigner]); auditors get the public verifier key
//     from [Keystore.AuditVerifierKey].
//   - <dir>/audit-hash.prf: the vault's own HMAC-SHA256 PRF key, created on
//     first use by [Keystore.AuditHash] and wrapped by the master key with
//     the associated data "audit-hash-prf". The audit log records its keyed
//     hashes in place of producer-supplied text (a claimed tenant that is
//     not a tenant of the vault, the topic of an unknown tenant), which may
//     be personal data; it belongs to no tenant, so it survives a shred.
//   - <dir>/tombstones/<tenant>: what [Keystore.Destroy] leaves of a shredded
//     tenant (its key ids and the time; no secret), and
//     <dir>/tombstones/<tenant>.history: the tombstones of a tenant id that
//     was re-created ([Keystore.Recreate]). Their ids keep naming the tenant.
//   - <dir>/rotate-master.staging/: exists only while [Keystore.RotateMaster]
//     runs (or after it crashed; Open then finishes or undoes it).
//   - Key ids unique across all tenants, present and past (regenerated on
//     collision), so a ciphertext's 5-byte Tink prefix names exactly one
//     owner ([Keystore.Owner]).
//
// # Keys in memory
//
// Open reads only the public part of each keyset (key ids and statuses) to
// build the index, and checks the master key against master.check. A
// tenant's keysets are unwrapped on first use and stay in memory for at most
// [Config].CacheTTL (default 5 minutes) after they were unwrapped or
// changed, for at most [Config].CacheSize tenants (default 1024, least
// recently used out first). The next use after that unwraps again, from
// disk and through the KMS: a KMS key disabled or deleted bites within the
// TTL, or at once after [Keystore.DropCache]; a KMS outage longer than the
// TTL makes tenants unavailable ([ErrKMSUnavailable]), never readable with
// stale keys. A master key that cannot unwrap a keyset is a
// [*MasterKeyError] naming the tenant, the file, the master key and the
// cause class: [ErrWrongMasterKey] (the local key or the KMS refused) or
// [ErrKMSUnavailable] (not reached). Go cannot zero freed memory: dropping
// keys means dropping every reference the keystore holds.
//
// A Keystore hands out one [TenantCipher] per tenant. It follows the
// keystore: new writes use a new primary from the moment [Keystore.Rotate]
// returns, evicted keys are unwrapped again on use, and from the moment
// [Keystore.Destroy] returns every call fails with [ErrDestroyed].
//
// # What it must never do
//
//   - Return, log or print raw key bytes. No exported function hands out key
//     material or a keyset.Handle; [TenantCipher], [CheckpointSigner] and
//     [Keystore] print redacted (String, GoString, LogValue). Master key URIs
//     of schemes other than the built-in ones (fake-kms:// holds its key)
//     print as a fingerprint.
//   - Write a keyset to disk unwrapped, or wrapped without its owner bound as
//     associated data (the tenant id; "audit-checkpoint-signer" for the audit
//     key; "audit-hash-prf" for the audit hash key).
//   - Try a tenant's keys on another tenant's ciphertext: Decrypt of a foreign
//     key id fails with [*ForeignKeyError] before any decryption is attempted.
//   - Bring back anything destroyed: a destroyed key or tenant's id is never
//     reused, and Recreate makes new keys.
//   - Accept a tenant id it did not re-validate with events.ParseTenantID: ids
//     name files here.
//   - Import a package of ours other than events and internal/atomicfile
//     (crash-safe writes and shredding of every file it writes), or a third-party package other than Tink, the
//     KMS clients of the master key providers (github.com/hashicorp/vault/api,
//     google.golang.org/api/...), their error codes (google.golang.org/grpc/...)
//     and golang.org/x/mod/sumdb/note (the audit signer). No other package
//     imports Tink or a KMS client (hashicorp/vault/api, aws-sdk-go,
//     cloud.google.com/go/kms, google.golang.org/api) directly, except cmd/*,
//     which may import anything.
//     internal/archtest enforces these imports.
//
// # Concurrency
//
// The structures that map tenants to ciphers and key ids to tenants are
// copy-on-write: writers (Create, Rotate, DisableKey, EnableKey, DestroyKey,
// Destroy, Recreate, RotateMaster) serialise on a mutex and publish a new
// snapshot through an atomic pointer; readers never lock. A TenantCipher
// holds its keys behind an atomic pointer to an immutable slot, swapped
// whole by rotation, the cache and Destroy (whose "destroyed" slot is never
// swapped out). The PRF keyset is not meant to rotate: Hash outputs are
// stored as lookup keys, and a new PRF key would orphan them.
//
// The keystore assumes a single process owns <dir>; there is no file lock.
package keys
