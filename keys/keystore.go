package keys

import (
	"bytes"
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

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"

	"github.com/tenantvault/tenantvault/events"
)

// Sentinel errors; both are *events.Error, so events.ErrorCode maps them.
var (
	// ErrExists: the tenant already has keys.
	ErrExists error = &events.Error{Code: events.ECONFLICT, Message: "tenant keys already exist"}
	// ErrNotFound: the tenant has no keys.
	ErrNotFound error = &events.Error{Code: events.ENOTFOUND, Message: "tenant keys not found"}

	errClosed = &events.Error{Code: events.EUNAVAILABLE, Message: "keystore is closed"}
)

const (
	keysetExt  = ".keyset"
	checkFile  = "master.check"
	fileFormat = "tenantvault-keyset-v1"

	// maxKeyIDAttempts bounds regeneration on a key id collision; with
	// 32-bit random ids, needing more than a few means something is broken.
	maxKeyIDAttempts = 32
)

// The value sealed in master.check, and its associated data.
var (
	checkPlaintext = []byte("tenantvault keys: master key check v1")
	checkAD        = []byte("tenantvault/keys/master.check")
)

// Keystore holds every tenant's keys, wrapped on disk by the master key and
// unwrapped in memory. It is safe for concurrent use.
type Keystore struct {
	dir    string
	master masterKey
	logger *slog.Logger

	// newAEADKeyset generates a tenant's AEAD keyset; tests replace it to
	// force key id collisions.
	newAEADKeyset func() (*keyset.Handle, error)

	mu    sync.Mutex              // serialises writers: Create (later Rotate, Destroy), Close
	state atomic.Pointer[ksState] // copy-on-write snapshot; readers do not lock

	auditSigner *CheckpointSigner // guarded by mu; loaded or created by AuditSigner
}

// ksState is an immutable snapshot of the keystore's maps. Writers copy it,
// change the copy and publish it.
type ksState struct {
	closed  bool
	ciphers map[events.TenantID]*TenantCipher
	owners  map[uint32]events.TenantID // AEAD key id → tenant
}

// keysetFile is the format of <dir>/<tenant>.keyset. Tenant is a readable
// hint only: what binds the file to its tenant is the associated data of the
// two wrapped keysets.
type keysetFile struct {
	Format string          `json:"format"`
	Tenant string          `json:"tenant"`
	AEAD   json.RawMessage `json:"aead"` // Tink EncryptedKeyset, JSON
	PRF    json.RawMessage `json:"prf"`  // Tink EncryptedKeyset, JSON
}

// OpenKeystore opens (creating if needed, mode 0700) the keystore directory
// dir (<data-dir>/keys) with the master key named by masterKeyURI, and
// unwraps every tenant keyset in it.
//
// masterKeyURI is "local://PATH": a cleartext Tink AES256_GCM keyset in PATH
// (JSON, as tinkey writes it, or binary). When PATH does not exist a new key
// is generated with mode 0600 and a warning that it is a DEVELOPMENT ONLY
// master key is logged on logger. A relative PATH is relative to the working
// directory. The KMS schemes hcvault://, aws-kms:// and gcp-kms:// are not
// supported yet. A nil logger discards.
//
// OpenKeystore fails closed: a keyset that does not unwrap (wrong master key,
// tampering, a file copied from another tenant) or a key id claimed by two
// tenants is an error naming the file.
func OpenKeystore(dir, masterKeyURI string, logger *slog.Logger) (*Keystore, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if dir == "" {
		return nil, events.Errorf(events.EINVALID, "keystore directory is empty")
	}
	sealed, err := holdsSealedKeys(dir)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	mk, err := openMasterKey(masterKeyURI, !sealed, logger)
	if err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open keystore: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("keystore directory is accessible by group or others; want mode 0700",
			"dir", dir, "mode", fi.Mode().Perm().String())
	}

	ks := &Keystore{
		dir:           dir,
		master:        mk,
		logger:        logger,
		newAEADKeyset: func() (*keyset.Handle, error) { return keyset.NewHandle(aead.AES256GCMKeyTemplate()) },
	}
	checked, err := ks.checkMasterKey()
	if err != nil {
		return nil, fmt.Errorf("open keystore %s: %w", dir, err)
	}
	st, err := ks.load()
	if err != nil {
		return nil, fmt.Errorf("open keystore %s: %w", dir, err)
	}
	if !checked {
		// A new keystore, or one from before master.check: every keyset
		// (if any) unwrapped, so this is the right master key. Record it.
		ct, err := mk.Encrypt(checkPlaintext, checkAD)
		if err != nil {
			return nil, fmt.Errorf("open keystore %s: seal master key check: %w", dir, err)
		}
		if err := writeFileAtomic(filepath.Join(dir, checkFile), ct, false); err != nil {
			return nil, fmt.Errorf("open keystore %s: %w", dir, err)
		}
	}
	ks.state.Store(st)
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
		return e.Name() == checkFile || e.Name() == auditSignerFile || strings.HasSuffix(e.Name(), keysetExt)
	}), nil
}

// checkMasterKey opens master.check with the master key. It reports false
// when there is no check file yet.
func (ks *Keystore) checkMasterKey() (bool, error) {
	ct, err := os.ReadFile(filepath.Join(ks.dir, checkFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	pt, err := ks.master.Decrypt(ct, checkAD)
	if err != nil || !bytes.Equal(pt, checkPlaintext) {
		sealedBy := ""
		if id, ok := KeyIDOf(ct); ok {
			sealedBy = fmt.Sprintf(" (the keystore was sealed by master key id 0x%08x)", id)
		}
		return false, fmt.Errorf("master key %s does not open this keystore: it was created with a different master key%s, or %s is corrupted",
			ks.master, sealedBy, checkFile)
	}
	return true, nil
}

// load unwraps every <tenant>.keyset in the directory and builds the index.
func (ks *Keystore) load() (*ksState, error) {
	entries, err := os.ReadDir(ks.dir)
	if err != nil {
		return nil, err
	}
	st := &ksState{
		ciphers: make(map[events.TenantID]*TenantCipher),
		owners:  make(map[uint32]events.TenantID),
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			os.Remove(filepath.Join(ks.dir, name)) // left by a crash mid-write
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
		k, err := ks.readKeyset(t)
		if err != nil {
			return nil, err
		}
		for id := range k.keyIDs {
			if other, taken := st.owners[id]; taken {
				return nil, fmt.Errorf("key id 0x%08x is in the keysets of both tenant %s and tenant %s", id, other, t)
			}
			st.owners[id] = t
		}
		st.ciphers[t] = ks.newCipher(t, k)
	}
	return st, nil
}

// path returns the keyset file of tenant t, which must be valid.
func (ks *Keystore) path(t events.TenantID) string {
	return filepath.Join(ks.dir, string(t)+keysetExt)
}

// readKeyset reads and unwraps the keyset file of tenant t.
func (ks *Keystore) readKeyset(t events.TenantID) (*tenantKeys, error) {
	path := ks.path(t)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f keysetFile
	if err := json.Unmarshal(data, &f); err != nil || f.Format != fileFormat {
		return nil, fmt.Errorf("keyset %s is not a %s file", path, fileFormat)
	}
	if f.Tenant != string(t) {
		return nil, fmt.Errorf("keyset %s holds the keys of tenant %.80q, not %s: a keyset cannot be moved to another tenant", path, f.Tenant, t)
	}
	unwrap := func(what string, raw json.RawMessage) (*keyset.Handle, error) {
		h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(raw)), ks.master, []byte(t))
		if err != nil {
			return nil, fmt.Errorf("keyset %s: cannot unwrap the %s keyset of tenant %s with master key %s: wrong master key, or the file was tampered with or copied from another tenant", path, what, t, ks.master)
		}
		return h, nil
	}
	aeadHandle, err := unwrap("AEAD", f.AEAD)
	if err != nil {
		return nil, err
	}
	prfHandle, err := unwrap("PRF", f.PRF)
	if err != nil {
		return nil, err
	}
	k, err := newTenantKeys(aeadHandle, prfHandle)
	if err != nil {
		return nil, fmt.Errorf("keyset %s: %w", path, err)
	}
	return k, nil
}

// marshalKeyset wraps tenant t's keysets with the master key, t bound as
// associated data, in the keyset file format.
func (ks *Keystore) marshalKeyset(t events.TenantID, k *tenantKeys) ([]byte, error) {
	wrap := func(h *keyset.Handle) (json.RawMessage, error) {
		var buf bytes.Buffer
		if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), ks.master, []byte(t)); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	f := keysetFile{Format: fileFormat, Tenant: string(t)}
	var err error
	if f.AEAD, err = wrap(k.aeadHandle); err != nil {
		return nil, fmt.Errorf("wrap AEAD keyset: %w", err)
	}
	if f.PRF, err = wrap(k.prfHandle); err != nil {
		return nil, fmt.Errorf("wrap PRF keyset: %w", err)
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func (ks *Keystore) newCipher(t events.TenantID, k *tenantKeys) *TenantCipher {
	c := &TenantCipher{tenant: t, ks: ks}
	c.keys.Store(k)
	return c
}

// checkTenant re-validates t: TenantID is a string type, so a value may not
// have come from events.ParseTenantID, and it names a file here.
func checkTenant(t events.TenantID) error {
	_, err := events.ParseTenantID(string(t))
	return err
}

// Create generates, stores and returns the keys of tenant t: an AES-256-GCM
// AEAD keyset whose key id no other tenant uses, and an HMAC-SHA256 PRF
// keyset. It fails with ErrExists if t already has keys.
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
	if _, ok := st.ciphers[t]; ok {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, ErrExists)
	}

	aeadHandle, err := ks.uniqueAEADKeyset(st.owners)
	if err != nil {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, err)
	}
	prfHandle, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("create keys of tenant %s: generate PRF keyset: %w", t, err)
	}
	k, err := newTenantKeys(aeadHandle, prfHandle)
	if err != nil {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, err)
	}
	data, err := ks.marshalKeyset(t, k)
	if err != nil {
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, err)
	}
	if err := writeFileAtomic(ks.path(t), data, true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create keys of tenant %s: %s exists: %w", t, ks.path(t), ErrExists)
		}
		return nil, fmt.Errorf("create keys of tenant %s: %w", t, err)
	}

	c := ks.newCipher(t, k)
	next := &ksState{ciphers: maps.Clone(st.ciphers), owners: maps.Clone(st.owners)}
	next.ciphers[t] = c
	for id := range k.keyIDs {
		next.owners[id] = t
	}
	ks.state.Store(next)
	return c, nil
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

// Cipher returns the keys of tenant t, or ErrNotFound.
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
		return nil, fmt.Errorf("keys of tenant %s: %w", t, ErrNotFound)
	}
	return c, nil
}

// Tenants returns the tenants that have keys, sorted.
func (ks *Keystore) Tenants() ([]events.TenantID, error) {
	st := ks.state.Load()
	if st.closed {
		return nil, errClosed
	}
	return slices.Sorted(maps.Keys(st.ciphers)), nil
}

// Owner returns the tenant whose keyset holds AEAD key keyID (see [KeyIDOf]),
// and false when no tenant's does.
func (ks *Keystore) Owner(keyID uint32) (events.TenantID, bool) {
	t, ok := ks.state.Load().owners[keyID]
	return t, ok
}

// Close releases the keystore's unwrapped keys; later calls fail, Owner
// reports false. Ciphers and the audit signer already handed out keep
// working until they are dropped. Close is idempotent.
func (ks *Keystore) Close() error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.state.Store(&ksState{closed: true})
	ks.auditSigner = nil
	return nil
}

// String returns a redacted description of the keystore.
func (ks *Keystore) String() string {
	if ks == nil {
		return "Keystore(nil)"
	}
	st := ks.state.Load()
	if st == nil || st.closed {
		return fmt.Sprintf("Keystore(%s, master=%s, closed)", ks.dir, ks.master)
	}
	return fmt.Sprintf("Keystore(%s, master=%s, tenants=%d)", ks.dir, ks.master, len(st.ciphers))
}

// GoString keeps %#v redacted.
func (ks *Keystore) GoString() string { return ks.String() }

// LogValue keeps slog output redacted, whatever the handler.
func (ks *Keystore) LogValue() slog.Value { return slog.StringValue(ks.String()) }
