package keys

import (
	"crypto/hmac"
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
	"github.com/tenantvault/tenantvault/internal/atomicfile"
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
	// maxKeyIDAttempts bounds regeneration on a key id collision; with
	// 32-bit random ids, needing more than a few means something is broken.
	maxKeyIDAttempts = 32

	// DefaultCacheTTL and DefaultCacheSize are Config's defaults.
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 1024
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

	auditSigner *CheckpointSigner       // guarded by mu; loaded or created by AuditSigner
	auditHash   atomic.Pointer[prf.Set] // the vault's PRF; loaded or created by AuditHash under mu
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
	for _, e := range entries {
		if err := ks.loadEntry(st, e, tombs, hist); err != nil {
			return nil, err
		}
	}
	for t, tomb := range tombs {
		if err := st.claim(t, tomb.KeyIDs); err != nil {
			return nil, err
		}
		st.destroyed[t] = tomb
	}
	for t, reps := range hist {
		for _, r := range reps {
			if err := st.claim(t, r.KeyIDs); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// loadEntry loads one entry e of the keystore directory into st: the
// public part of a keyset file, whose key ids it claims. It shreds what a
// crash left mid-write, finishes a Destroy or a Recreate of the tenant that
// a crash interrupted (updating tombs and hist), and ignores other files.
func (ks *Keystore) loadEntry(st *ksState, e fs.DirEntry, tombs map[events.TenantID]DestroyReport, hist map[events.TenantID][]DestroyReport) error {
	name := e.Name()
	if strings.HasPrefix(name, atomicfile.TmpPrefix) {
		// Left by a crash mid-write; it may hold a wrapped keyset.
		return atomicfile.Shred(filepath.Join(ks.dir, name))
	}
	if !strings.HasSuffix(name, keysetExt) {
		return nil
	}
	t, err := events.ParseTenantID(strings.TrimSuffix(name, keysetExt))
	if err != nil {
		ks.logger.Warn("ignoring a keyset file whose name is not a valid tenant id", "file", name)
		return nil
	}
	if !e.Type().IsRegular() {
		return fmt.Errorf("keyset %s is not a regular file", name)
	}
	_, meta, err := ks.readKeysetFile(t)
	if err != nil {
		return err
	}
	if tomb, ok := tombs[t]; ok {
		if meta.overlaps(tomb.KeyIDs) {
			// Destroy wrote the tombstone, then crashed: finish it.
			ks.logger.Warn("finishing the destruction of a tenant's keys that a crash interrupted", "tenant", t)
			return ks.shredTenantFiles(t)
		}
		// Recreate wrote the new keyset, then crashed: finish it.
		if err := ks.finishRecreate(t, tomb, hist[t]); err != nil {
			return err
		}
		hist[t] = appendHistory(hist[t], tomb)
		delete(tombs, t)
	}
	if err := st.claim(t, meta.ids()); err != nil {
		return err
	}
	st.ciphers[t] = ks.newCipher(t, meta)
	return nil
}

// claim records ids as tenant t's in st's index, failing on an id that
// another tenant holds.
func (st *ksState) claim(t events.TenantID, ids []uint32) error {
	for _, id := range ids {
		if other, taken := st.owners[id]; taken && other != t {
			return fmt.Errorf("key id 0x%08x is in the keysets of both tenant %s and tenant %s", id, other, t)
		}
		st.owners[id] = t
	}
	return nil
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
	k, err := openKeysetFile(t, f, meta, kek, path)
	if err != nil {
		return nil, err
	}
	ks.unwraps.Add(1)
	return k, nil
}

// openKeysetFile unwraps tenant t's keyset file f (public part meta, read
// from path) with kek and checks that its public part is that of its sealed
// keysets.
func openKeysetFile(t events.TenantID, f *keysetFile, meta *keysetMeta, kek masterKey, path string) (*tenantKeys, error) {
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
	return k, nil
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
	if err := atomicfile.WriteFile(ks.path(t), data, atomicfile.Options{NoClobber: true}); err != nil {
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
	ks.auditHash.Store(nil)
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
