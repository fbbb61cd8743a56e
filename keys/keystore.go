package keys

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"

	"github.com/tenantvault/tenantvault/events"
)

// Sentinel errors; all are *events.Error, so events.ErrorCode maps them.
var (
	// ErrExists: the tenant already has keys.
	ErrExists error = &events.Error{Code: events.ECONFLICT, Message: "tenant keys already exist"}
	// ErrNotFound: the tenant has no keys (and never had, or its keys were
	// never destroyed, for Recreate).
	ErrNotFound error = &events.Error{Code: events.ENOTFOUND, Message: "tenant keys not found"}
	// ErrDestroyed: the tenant's keys were destroyed (crypto-shredded).
	ErrDestroyed error = &events.Error{Code: events.EGONE, Message: "tenant keys were destroyed"}

	errClosed = &events.Error{Code: events.EUNAVAILABLE, Message: "keystore is closed"}
)

const (
	keysetExt  = ".keyset"
	checkFile  = "master.check"
	fileFormat = "tenantvault-keyset-v1"

	// maxKeyIDAttempts bounds regeneration on a key id collision; with
	// 32-bit random ids, needing more than a few means something is broken.
	maxKeyIDAttempts = 32

	// DefaultCacheTTL and DefaultCacheSize are Config's defaults.
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 1024
)

// The value sealed in master.check, and its associated data.
var (
	checkPlaintext = []byte("tenantvault keys: master key check v1")
	checkAD        = []byte("tenantvault/keys/master.check")
)

// Config configures Open.
type Config struct {
	// Dir is the keystore directory, <data-dir>/keys; created (0700) if needed.
	Dir string
	// MasterKeyURI names the master key (KEK): local://PATH, hcvault://...,
	// aws-kms://..., gcp-kms://..., or a URI one of KMSClients supports. It
	// may contain {tenant}; see the package documentation. local://PATH is
	// a cleartext Tink AES256_GCM keyset (JSON, as tinkey writes it, or
	// binary), relative to the working directory; when it does not exist
	// and the keystore holds nothing sealed yet, a new one is generated
	// (0600) with a warning that it is for DEVELOPMENT ONLY.
	MasterKeyURI string
	// CacheTTL bounds how long an unwrapped keyset stays in memory after it
	// was unwrapped (or changed); the next use after that unwraps it again
	// from disk, asking the KMS. Default DefaultCacheTTL (5m).
	CacheTTL time.Duration
	// CacheSize bounds how many tenants' unwrapped keysets are in memory at
	// once; the least recently used go first. Default DefaultCacheSize (1024).
	CacheSize int
	// KMSClients are extra KMS clients, tried before the built-in ones (in
	// tests, Tink's fakekms for "fake-kms://").
	KMSClients []registry.KMSClient
	// Logger receives warnings; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of c (after defaults), joined.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, events.Errorf(events.EINVALID, "keystore directory is empty"))
	}
	if c.MasterKeyURI == "" {
		errs = append(errs, events.Errorf(events.EINVALID, "master key URI is empty"))
	}
	if c.CacheTTL < 0 {
		errs = append(errs, events.Errorf(events.EINVALID, "key cache TTL %v is negative", c.CacheTTL))
	}
	if c.CacheSize < 0 {
		errs = append(errs, events.Errorf(events.EINVALID, "key cache size %d is negative", c.CacheSize))
	}
	return errors.Join(errs...)
}

// Keystore holds every tenant's keys, wrapped on disk by the master key and
// unwrapped in memory on demand (a TTL- and size-bounded cache). It is safe
// for concurrent use.
type Keystore struct {
	dir    string
	logger *slog.Logger
	ttl    int64 // CacheTTL in nanoseconds
	size   int
	extras []registry.KMSClient

	// masterMu: loaders hold it shared while they read and unwrap a file;
	// RotateMaster holds it exclusively while it swaps files and master.
	// Writers read master under mu, which RotateMaster holds too.
	masterMu sync.RWMutex
	master   *master

	// newAEADKeyset generates a single-key AEAD keyset (for Create, and the
	// new key of Rotate); tests replace it to force key id collisions.
	newAEADKeyset func() (*keyset.Handle, error)
	// now is a monotonic clock in nanoseconds; tests replace it.
	now func() int64
	// testHook, when set, is called at the steps of RotateMaster; an error
	// simulates a crash there: RotateMaster returns it and cleans nothing.
	testHook func(step string) error
	// unwraps counts keyset unwraps (cache misses), for tests.
	unwraps atomic.Int64

	mu    sync.Mutex              // serialises writers: Create, Rotate, key changes, Destroy, Recreate, RotateMaster, Close
	state atomic.Pointer[ksState] // copy-on-write snapshot; readers do not lock

	cacheMu sync.Mutex
	cached  map[*TenantCipher]struct{} // ciphers whose keys may be in memory
	sweeper *time.Timer                // drops expired keys; nil once closed

	auditSigner *CheckpointSigner // guarded by mu; loaded or created by AuditSigner
}

// ksState is an immutable snapshot of the keystore's maps. Writers copy it,
// change the copy and publish it.
type ksState struct {
	closed    bool
	ciphers   map[events.TenantID]*TenantCipher // live tenants
	owners    map[uint32]events.TenantID        // every AEAD key id ever: live, destroyed, shredded
	destroyed map[events.TenantID]DestroyReport // shredded tenants (tombstones)
}

func (st *ksState) clone() *ksState {
	return &ksState{ciphers: maps.Clone(st.ciphers), owners: maps.Clone(st.owners), destroyed: maps.Clone(st.destroyed)}
}

// keysetFile is the format of <dir>/<tenant>.keyset. Tenant is a readable
// hint only: what binds the file to its tenant is the associated data of the
// two wrapped keysets. Destroyed lists the AEAD keys removed by DestroyKey:
// their ids stay the tenant's (Owner), their material is gone.
type keysetFile struct {
	Format    string          `json:"format"`
	Tenant    string          `json:"tenant"`
	AEAD      json.RawMessage `json:"aead"` // Tink EncryptedKeyset, JSON
	PRF       json.RawMessage `json:"prf"`  // Tink EncryptedKeyset, JSON
	Destroyed []uint32        `json:"destroyed_key_ids,omitempty"`
	// DestroyedMAC authenticates Destroyed: the tenant's PRF of it (see
	// destroyedMAC), so that the ids cannot be edited in clear.
	DestroyedMAC []byte `json:"destroyed_key_ids_mac,omitempty"`
}

// destroyedMACKind is the PRF domain of keysetFile.DestroyedMAC.
const destroyedMACKind = "tenantvault/keys/destroyed-key-ids"

// destroyedMAC returns the tenant's PRF of the sorted destroyed key ids of
// k, or nil when there are none.
func destroyedMAC(k *tenantKeys) ([]byte, error) {
	if len(k.destroyed) == 0 {
		return nil, nil
	}
	in := binary.AppendUvarint(nil, uint64(len(destroyedMACKind)))
	in = append(in, destroyedMACKind...)
	for _, id := range k.destroyed {
		in = binary.BigEndian.AppendUint32(in, id)
	}
	return k.prf.ComputePrimaryPRF(in, HashSize)
}

// OpenKeystore is Open(Config{Dir: dir, MasterKeyURI: masterKeyURI, Logger: logger}).
func OpenKeystore(dir, masterKeyURI string, logger *slog.Logger) (*Keystore, error) {
	return Open(Config{Dir: dir, MasterKeyURI: masterKeyURI, Logger: logger})
}

// Open opens (creating if needed, mode 0700) the keystore directory
// cfg.Dir with the master key named by cfg.MasterKeyURI.
//
// It reads every keyset file's public part (key ids, statuses) to build the
// key-id → tenant index, and checks the master key against master.check
// (one KMS call), but unwraps no tenant keyset: each is unwrapped on first
// use (Cipher, Create, Rotate, ...) and kept in memory for at most
// cfg.CacheTTL. It finishes what a crash interrupted: a Destroy (the keyset
// is shredded), a Recreate, a RotateMaster that had committed.
//
// Open fails closed: a keyset file that names another tenant, a key id
// claimed by two tenants, a master key that does not open master.check (or,
// in a keystore without one, a keyset) is an error naming the file.
func Open(cfg Config) (*Keystore, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dir, logger := cfg.Dir, cfg.Logger
	sealed, err := holdsSealedKeys(dir)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	m, err := openMaster(cfg.MasterKeyURI, cfg.KMSClients, !sealed, logger)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	ks, err := open(cfg, m)
	if err != nil {
		m.prov.close()
		return nil, fmt.Errorf("open keystore %s: %w", dir, err)
	}
	return ks, nil
}

func open(cfg Config, m *master) (*Keystore, error) {
	dir := cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if fi.Mode().Perm()&0o077 != 0 {
		cfg.Logger.Warn("keystore directory is accessible by group or others; want mode 0700",
			"dir", dir, "mode", fi.Mode().Perm().String())
	}
	epoch := time.Now()
	ks := &Keystore{
		dir:           dir,
		logger:        cfg.Logger,
		ttl:           int64(cfg.CacheTTL),
		size:          cfg.CacheSize,
		extras:        cfg.KMSClients,
		master:        m,
		newAEADKeyset: func() (*keyset.Handle, error) { return keyset.NewHandle(aead.AES256GCMKeyTemplate()) },
		now:           func() int64 { return int64(time.Since(epoch)) },
		cached:        make(map[*TenantCipher]struct{}),
	}
	if err := ks.recoverMasterRotation(); err != nil {
		return nil, err
	}
	checked, err := ks.checkMasterKey(filepath.Join(dir, checkFile))
	if err != nil {
		return nil, err
	}
	st, err := ks.load()
	if err != nil {
		return nil, err
	}
	if !checked {
		// A new keystore, or one from before master.check: prove the master
		// key opens what is there, then record it.
		if err := ks.verifyAll(st); err != nil {
			return nil, err
		}
		if err := ks.writeCheck(dir, m); err != nil {
			return nil, err
		}
	}
	ks.state.Store(st)
	ks.cacheMu.Lock()
	ks.sweeper = time.AfterFunc(ks.sweepInterval(), ks.sweep)
	ks.cacheMu.Unlock()
	return ks, nil
}

// holdsSealedKeys reports whether dir holds anything sealed by a master key.
func holdsSealedKeys(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
		n := e.Name()
		return n == checkFile || n == auditSignerFile || n == stagingDir || strings.HasSuffix(n, keysetExt)
	}), nil
}

// writeCheck seals master.check in dir with m's vault key.
func (ks *Keystore) writeCheck(dir string, m *master) error {
	kek, err := m.kekFor(VaultKeyName, false)
	if err != nil {
		return err
	}
	rec := &errRecorder{masterKey: kek}
	ct, err := rec.Encrypt(checkPlaintext, checkAD)
	if err != nil {
		return kmsError("wrap", "master key check", "", filepath.Join(dir, checkFile), kek, rec.err)
	}
	return writeFileAtomic(filepath.Join(dir, checkFile), ct, false)
}

// checkMasterKey opens the check file at path with the master key. It
// reports false when there is no check file.
func (ks *Keystore) checkMasterKey(path string) (bool, error) {
	ct, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return false, err
	}
	rec := &errRecorder{masterKey: kek}
	pt, err := rec.Decrypt(ct, checkAD)
	if err == nil && bytes.Equal(pt, checkPlaintext) {
		return true, nil
	}
	if unreachable(rec.err) {
		return false, kmsError("unwrap", "master key check", "", path, kek, rec.err)
	}
	sealedBy := ""
	if id, ok := KeyIDOf(ct); ok {
		sealedBy = fmt.Sprintf(" (the keystore was sealed by master key id 0x%08x)", id)
	}
	return false, fmt.Errorf("master key %s does not open this keystore: it was created with a different master key%s, or %s is corrupted: %w",
		kek, sealedBy, filepath.Base(path), ErrWrongMasterKey)
}

// verifyAll unwraps every keyset and the audit signer (if any).
func (ks *Keystore) verifyAll(st *ksState) error {
	for _, t := range slices.Sorted(maps.Keys(st.ciphers)) {
		if _, err := ks.unwrapTenant(st.ciphers[t]); err != nil {
			return err
		}
	}
	if _, err := ks.loadAuditSigner(); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	ks.auditSigner = nil
	return nil
}

// load reads the public part of every <tenant>.keyset, the tombstones and
// their history, and builds the index. It finishes a Destroy or a Recreate
// that a crash interrupted.
func (ks *Keystore) load() (*ksState, error) {
	tombs, hist, err := ks.readTombstones()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(ks.dir)
	if err != nil {
		return nil, err
	}
	st := &ksState{
		ciphers:   make(map[events.TenantID]*TenantCipher),
		owners:    make(map[uint32]events.TenantID),
		destroyed: make(map[events.TenantID]DestroyReport),
	}
	claim := func(id uint32, t events.TenantID) error {
		if other, taken := st.owners[id]; taken && other != t {
			return fmt.Errorf("key id 0x%08x is in the keysets of both tenant %s and tenant %s", id, other, t)
		}
		st.owners[id] = t
		return nil
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			// Left by a crash mid-write; it may hold a wrapped keyset.
			if err := shredFile(filepath.Join(ks.dir, name)); err != nil {
				return nil, err
			}
			continue
		}
		if !strings.HasSuffix(name, keysetExt) {
			continue
		}
		t, err := events.ParseTenantID(strings.TrimSuffix(name, keysetExt))
		if err != nil {
			ks.logger.Warn("ignoring a keyset file whose name is not a valid tenant id", "file", name)
			continue
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("keyset %s is not a regular file", name)
		}
		_, meta, err := ks.readKeysetFile(t)
		if err != nil {
			return nil, err
		}
		if tomb, ok := tombs[t]; ok {
			if meta.overlaps(tomb.KeyIDs) {
				// Destroy wrote the tombstone, then crashed: finish it.
				ks.logger.Warn("finishing the destruction of a tenant's keys that a crash interrupted", "tenant", t)
				if err := ks.shredTenantFiles(t); err != nil {
					return nil, err
				}
				continue
			}
			// Recreate wrote the new keyset, then crashed: finish it.
			if err := ks.finishRecreate(t, tomb, hist[t]); err != nil {
				return nil, err
			}
			hist[t] = appendHistory(hist[t], tomb)
			delete(tombs, t)
		}
		for _, ki := range meta.keys {
			if err := claim(ki.ID, t); err != nil {
				return nil, err
			}
		}
		st.ciphers[t] = ks.newCipher(t, meta)
	}
	for t, tomb := range tombs {
		for _, id := range tomb.KeyIDs {
			if err := claim(id, t); err != nil {
				return nil, err
			}
		}
		st.destroyed[t] = tomb
	}
	for t, reps := range hist {
		for _, r := range reps {
			for _, id := range r.KeyIDs {
				if err := claim(id, t); err != nil {
					return nil, err
				}
			}
		}
	}
	return st, nil
}

// path returns the keyset file of tenant t, which must be valid.
func (ks *Keystore) path(t events.TenantID) string {
	return filepath.Join(ks.dir, string(t)+keysetExt)
}

// readKeysetFile reads tenant t's keyset file and its public part (key ids
// and statuses, from Tink's KeysetInfo), without unwrapping anything.
func (ks *Keystore) readKeysetFile(t events.TenantID) (*keysetFile, *keysetMeta, error) {
	path := ks.path(t)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var f keysetFile
	if err := json.Unmarshal(data, &f); err != nil || f.Format != fileFormat {
		return nil, nil, fmt.Errorf("keyset %s is not a %s file", path, fileFormat)
	}
	if f.Tenant != string(t) {
		return nil, nil, fmt.Errorf("keyset %s holds the keys of tenant %.80q, not %s: a keyset cannot be moved to another tenant", path, f.Tenant, t)
	}
	ek, err := keyset.NewJSONReader(bytes.NewReader(f.AEAD)).ReadEncrypted()
	if err != nil || ek.GetKeysetInfo() == nil || len(ek.GetKeysetInfo().GetKeyInfo()) == 0 {
		return nil, nil, fmt.Errorf("keyset %s: the AEAD keyset has no key info", path)
	}
	return &f, metaFromInfo(ek.GetKeysetInfo(), f.Destroyed), nil
}

// unwrapTenant reads and unwraps tenant c's keyset file with the master key,
// and checks that what it unwrapped is what the file's public part (from
// which c.meta was built) says.
func (ks *Keystore) unwrapTenant(c *TenantCipher) (*tenantKeys, error) {
	ks.masterMu.RLock()
	defer ks.masterMu.RUnlock()
	t := c.tenant
	f, meta, err := ks.readKeysetFile(t)
	if err != nil {
		return nil, fmt.Errorf("keys of tenant %s: %w", t, err)
	}
	path := ks.path(t)
	kek, err := ks.master.kekFor(string(t), false)
	if errors.Is(err, errLocalKeyMissing) {
		// The tenant's own local master key file is gone: as good as a
		// deleted KMS key.
		return nil, &MasterKeyError{Op: "unwrap", What: "keysets", Tenant: t, Path: path, Master: describeURI(ks.master.resolve(string(t))), Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("keys of tenant %s: %w", t, err)
	}
	aeadHandle, err := unwrapKeyset(f.AEAD, kek, []byte(t), "AEAD keyset", t, path)
	if err != nil {
		return nil, err
	}
	prfHandle, err := unwrapKeyset(f.PRF, kek, []byte(t), "PRF keyset", t, path)
	if err != nil {
		return nil, err
	}
	k, err := newTenantKeys(aeadHandle, prfHandle, f.Destroyed)
	if err != nil {
		return nil, fmt.Errorf("keyset %s: %w", path, err)
	}
	mac, err := destroyedMAC(k)
	if err != nil {
		return nil, fmt.Errorf("keyset %s: %w", path, err)
	}
	if !k.meta().equal(meta) || !hmac.Equal(mac, f.DestroyedMAC) {
		return nil, fmt.Errorf("keyset %s: its key ids or statuses in clear differ from its sealed keyset: the file was tampered with", path)
	}
	ks.unwraps.Add(1)
	return k, nil
}

// unwrapKeyset unwraps one Tink EncryptedKeyset (JSON) with kek and ad.
func unwrapKeyset(raw json.RawMessage, kek masterKey, ad []byte, what string, t events.TenantID, path string) (*keyset.Handle, error) {
	rec := &errRecorder{masterKey: kek}
	h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(raw)), rec, ad)
	if err != nil {
		return nil, kmsError("unwrap", what, t, path, kek, rec.err)
	}
	return h, nil
}

// wrapKeyset wraps h with kek and ad, as a Tink EncryptedKeyset (JSON).
func wrapKeyset(h *keyset.Handle, kek masterKey, ad []byte, what string, t events.TenantID, path string) (json.RawMessage, error) {
	rec := &errRecorder{masterKey: kek}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), rec, ad); err != nil {
		return nil, kmsError("wrap", what, t, path, kek, rec.err)
	}
	return buf.Bytes(), nil
}

// marshalKeyset wraps tenant t's keysets with kek, t bound as associated
// data, in the keyset file format.
func marshalKeyset(t events.TenantID, k *tenantKeys, kek masterKey, path string) ([]byte, error) {
	f := keysetFile{Format: fileFormat, Tenant: string(t), Destroyed: k.destroyed}
	var err error
	if f.DestroyedMAC, err = destroyedMAC(k); err != nil {
		return nil, err
	}
	if f.AEAD, err = wrapKeyset(k.aeadHandle, kek, []byte(t), "AEAD keyset", t, path); err != nil {
		return nil, err
	}
	if f.PRF, err = wrapKeyset(k.prfHandle, kek, []byte(t), "PRF keyset", t, path); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// newCipher returns the cipher of tenant t, holding no keys yet.
func (ks *Keystore) newCipher(t events.TenantID, meta *keysetMeta) *TenantCipher {
	c := &TenantCipher{tenant: t, ks: ks}
	c.slot.Store(&slot{})
	c.meta.Store(meta)
	return c
}

// checkTenant re-validates t: TenantID is a string type, so a value may not
// have come from events.ParseTenantID, and it names a file here.
func checkTenant(t events.TenantID) error {
	_, err := events.ParseTenantID(string(t))
	return err
}

// Create generates, stores and returns the keys of tenant t: an AES-256-GCM
// AEAD keyset whose key id no other tenant uses (nor ever used), and an
// HMAC-SHA256 PRF keyset. It fails with ErrExists if t already has keys,
// and with ErrDestroyed if t's keys were destroyed (see Recreate).
func (ks *Keystore) Create(t events.TenantID) (*TenantCipher, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	if st.closed {
		return nil, errClosed
	}
	if _, ok := st.destroyed[t]; ok {
		return nil, fmt.Errorf("create keys of tenant %s: %w (Recreate makes new ones)", t, ErrDestroyed)
	}
	if _, ok := st.ciphers[t]; ok {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, ErrExists)
	}
	c, err := ks.createKeys(st, t)
	if err != nil {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, err)
	}
	ks.publishCipher(st, c)
	return c, nil
}

// createKeys generates t's keys, writes its keyset file (failing with
// ErrExists if one exists) and returns its cipher, keys in memory. ks.mu
// must be held.
func (ks *Keystore) createKeys(st *ksState, t events.TenantID) (*TenantCipher, error) {
	aeadHandle, err := ks.uniqueAEADKeyset(st.owners)
	if err != nil {
		return nil, err
	}
	prfHandle, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("generate PRF keyset: %w", err)
	}
	k, err := newTenantKeys(aeadHandle, prfHandle, nil)
	if err != nil {
		return nil, err
	}
	kek, err := ks.master.kekFor(string(t), true)
	if err != nil {
		return nil, err
	}
	data, err := marshalKeyset(t, k, kek, ks.path(t))
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(ks.path(t), data, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s exists: %w", ks.path(t), ErrExists)
		}
		return nil, err
	}
	c := ks.newCipher(t, k.meta())
	ks.install(c, k)
	return c, nil
}

// publishCipher publishes a state with c as its tenant's cipher and c's key
// ids owned by it. ks.mu must be held.
func (ks *Keystore) publishCipher(st *ksState, c *TenantCipher) {
	next := st.clone()
	next.ciphers[c.tenant] = c
	delete(next.destroyed, c.tenant)
	for _, ki := range c.meta.Load().keys {
		next.owners[ki.ID] = c.tenant
	}
	ks.state.Store(next)
}

// uniqueAEADKeyset generates AEAD keysets until one's key id is not in owners.
func (ks *Keystore) uniqueAEADKeyset(owners map[uint32]events.TenantID) (*keyset.Handle, error) {
	for range maxKeyIDAttempts {
		h, err := ks.newAEADKeyset()
		if err != nil {
			return nil, fmt.Errorf("generate AEAD keyset: %w", err)
		}
		if _, taken := owners[h.KeysetInfo().GetPrimaryKeyId()]; !taken {
			return h, nil
		}
	}
	return nil, fmt.Errorf("generate AEAD keyset: no unused key id after %d attempts", maxKeyIDAttempts)
}

// Cipher returns the keys of tenant t, unwrapping them if they are not in
// memory. It fails with ErrNotFound for a tenant without keys, ErrDestroyed
// for a shredded one, and a *MasterKeyError when the master key cannot
// unwrap them (errors.Is ErrWrongMasterKey or ErrKMSUnavailable).
func (ks *Keystore) Cipher(t events.TenantID) (*TenantCipher, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	st := ks.state.Load()
	if st.closed {
		return nil, errClosed
	}
	c, ok := st.ciphers[t]
	if !ok {
		if _, gone := st.destroyed[t]; gone {
			return nil, fmt.Errorf("keys of tenant %s: %w", t, ErrDestroyed)
		}
		return nil, fmt.Errorf("keys of tenant %s: %w", t, ErrNotFound)
	}
	if _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

// Tenants returns the tenants that have keys (not the shredded ones), sorted.
func (ks *Keystore) Tenants() ([]events.TenantID, error) {
	st := ks.state.Load()
	if st.closed {
		return nil, errClosed
	}
	return slices.Sorted(maps.Keys(st.ciphers)), nil
}

// Owner returns the tenant whose keyset holds, or held, AEAD key keyID (see
// [KeyIDOf]): ids of destroyed keys and of shredded tenants keep naming
// their tenant. It reports false when no tenant's does.
func (ks *Keystore) Owner(keyID uint32) (events.TenantID, bool) {
	t, ok := ks.state.Load().owners[keyID]
	return t, ok
}

// Close drops every unwrapped key from memory and closes KMS connections;
// later calls fail, Owner reports false, and ciphers already handed out fail
// with an EUNAVAILABLE error. The audit signer already handed out keeps
// working. Close is idempotent.
func (ks *Keystore) Close() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.closeLocked()
}

// closeLocked is Close with ks.mu held.
func (ks *Keystore) closeLocked() error {
	if st := ks.state.Load(); st != nil && st.closed {
		return nil
	}
	ks.state.Store(&ksState{closed: true})
	ks.cacheMu.Lock()
	if ks.sweeper != nil {
		ks.sweeper.Stop()
		ks.sweeper = nil
	}
	ks.cacheMu.Unlock()
	ks.DropCache()
	ks.auditSigner = nil
	ks.masterMu.Lock()
	defer ks.masterMu.Unlock()
	return ks.master.prov.close()
}

// String returns a redacted description of the keystore.
func (ks *Keystore) String() string {
	if ks == nil {
		return "Keystore(nil)"
	}
	ks.masterMu.RLock()
	m := ks.master.String()
	ks.masterMu.RUnlock()
	st := ks.state.Load()
	if st == nil || st.closed {
		return fmt.Sprintf("Keystore(%s, master=%s, closed)", ks.dir, m)
	}
	return fmt.Sprintf("Keystore(%s, master=%s, tenants=%d)", ks.dir, m, len(st.ciphers))
}

// GoString keeps %#v redacted.
func (ks *Keystore) GoString() string { return ks.String() }

// LogValue keeps slog output redacted, whatever the handler.
func (ks *Keystore) LogValue() slog.Value { return slog.StringValue(ks.String()) }
