package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/tink-crypto/tink-go/v2/hybrid"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

const (
	// importKeyFile holds the vault's HPKE private key, to which other
	// vaults encrypt the keysets of tenants they move here. Its suffix is
	// not keysetExt, so no tenant id can name it.
	importKeyFile   = "bundle-import.hpke"
	importKeyFormat = "tenantvault-import-key-v1"
	// movedFormat is the format of a tenant keyset encrypted to another
	// vault's import key (ExportKeyset).
	movedFormat = "tenantvault-moved-keyset-v1"
)

// importKeyAD binds the wrapped HPKE keyset to its purpose.
var importKeyAD = []byte("bundle-import-hpke")

// ErrWrongImportKey: a keyset was not encrypted to this vault's import key
// (or for another tenant or bundle: the context does not match).
var ErrWrongImportKey error = &events.Error{Code: events.EINVALID, Message: "the tenant keyset was not encrypted to this vault's import key for this bundle"}

// importKeyFileData is the format of <dir>/bundle-import.hpke.
type importKeyFileData struct {
	Format string          `json:"format"`
	Keyset json.RawMessage `json:"keyset"` // Tink EncryptedKeyset (one HPKE X25519 private key), JSON
}

// ImportKey is the vault's public HPKE import key: a Tink public keyset
// (JSON, no secret) and its fingerprint, the hex SHA-256 of the public
// keyset in Tink's binary form.
type ImportKey struct {
	Keyset      json.RawMessage `json:"keyset"`
	Fingerprint string          `json:"fingerprint"`
}

// ImportPublicKey returns the vault's public HPKE import key
// (DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM, Tink's hybrid
// primitive), to which another vault encrypts the keyset of a tenant it
// moves here (ExportKeyset). On first use the private key is generated and
// stored in <dir>/bundle-import.hpke, wrapped by the master key (its
// "_vault" key) with the associated data "bundle-import-hpke" (0600,
// written atomically); RotateMaster re-wraps it.
func (ks *Keystore) ImportPublicKey() (ImportKey, error) {
	h, err := ks.importKeyHandle()
	if err != nil {
		return ImportKey{}, err
	}
	pub, err := h.Public()
	if err != nil {
		return ImportKey{}, fmt.Errorf("import key: %w", err)
	}
	var js, bin bytes.Buffer
	if err := pub.WriteWithNoSecrets(keyset.NewJSONWriter(&js)); err != nil {
		return ImportKey{}, fmt.Errorf("import key: %w", err)
	}
	if err := pub.WriteWithNoSecrets(keyset.NewBinaryWriter(&bin)); err != nil {
		return ImportKey{}, fmt.Errorf("import key: %w", err)
	}
	sum := sha256.Sum256(bin.Bytes())
	return ImportKey{Keyset: js.Bytes(), Fingerprint: hex.EncodeToString(sum[:])}, nil
}

// ImportKeyFingerprint returns the fingerprint of a public import key
// (ImportKey.Keyset, JSON), after checking it is one: a public HPKE keyset
// that encrypts.
func ImportKeyFingerprint(publicKeyset []byte) (string, error) {
	pub, _, err := parseImportKey(publicKeyset)
	if err != nil {
		return "", err
	}
	var bin bytes.Buffer
	if err := pub.WriteWithNoSecrets(keyset.NewBinaryWriter(&bin)); err != nil {
		return "", fmt.Errorf("import key: %w", err)
	}
	sum := sha256.Sum256(bin.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

func parseImportKey(publicKeyset []byte) (*keyset.Handle, tink.HybridEncrypt, error) {
	pub, err := keyset.ReadWithNoSecrets(keyset.NewJSONReader(bytes.NewReader(publicKeyset)))
	if err != nil {
		return nil, nil, events.Errorf(events.EINVALID, "import key is not a public Tink keyset")
	}
	enc, err := hybrid.NewHybridEncrypt(pub)
	if err != nil {
		return nil, nil, events.Errorf(events.EINVALID, "import key is not a public hybrid (HPKE) key")
	}
	return pub, enc, nil
}

// importKeyHandle loads or creates the private import keyset.
func (ks *Keystore) importKeyHandle() (*keyset.Handle, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.state.Load().closed {
		return nil, errClosed
	}
	ks.masterMu.RLock()
	defer ks.masterMu.RUnlock()
	path := filepath.Join(ks.dir, importKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ks.createImportKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	var f importKeyFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != importKeyFormat {
		return nil, fmt.Errorf("import key %s is not a %s file", path, importKeyFormat)
	}
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	return unwrapKeyset(f.Keyset, kek, importKeyAD, "import key", "", path)
}

func (ks *Keystore) createImportKey(path string) (*keyset.Handle, error) {
	h, err := keyset.NewHandle(hybrid.DHKEM_X25519_HKDF_SHA256_HKDF_SHA256_AES_256_GCM_Key_Template())
	if err != nil {
		return nil, fmt.Errorf("import key: generate: %w", err)
	}
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	wrapped, err := wrapKeyset(h, kek, importKeyAD, "import key", "", path)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(importKeyFileData{Format: importKeyFormat, Keyset: wrapped}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), atomicfile.Options{NoClobber: true}); err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	ks.logger.Info("created the bundle import key")
	return h, nil
}

// stageImportKey writes the import key's file, re-wrapped by nm, into
// staging. It reports false when there is no import key yet.
func (ks *Keystore) stageImportKey(nm *master, staging string) (bool, error) {
	path := filepath.Join(ks.dir, importKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var f importKeyFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != importKeyFormat {
		return false, fmt.Errorf("import key %s is not a %s file", path, importKeyFormat)
	}
	oldKEK, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return false, err
	}
	newKEK, err := nm.kekFor(VaultKeyName, true)
	if err != nil {
		return false, err
	}
	h, err := unwrapKeyset(f.Keyset, oldKEK, importKeyAD, "import key", "", path)
	if err != nil {
		return false, err
	}
	dst := filepath.Join(staging, importKeyFile)
	if f.Keyset, err = wrapKeyset(h, newKEK, importKeyAD, "import key", "", dst); err != nil {
		return false, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return false, err
	}
	return true, atomicfile.WriteFile(dst, append(out, '\n'), atomicfile.Options{})
}

// hpkeWrapper is a key-encryption "AEAD" made of another vault's public
// import key: Tink encrypts a keyset with it (the context as HPKE
// context info), and only the private key decrypts it. It never decrypts.
type hpkeWrapper struct{ enc tink.HybridEncrypt }

func (w hpkeWrapper) Encrypt(pt, ad []byte) ([]byte, error) { return w.enc.Encrypt(pt, ad) }
func (w hpkeWrapper) Decrypt([]byte, []byte) ([]byte, error) {
	return nil, errors.New("an import public key does not decrypt")
}
func (w hpkeWrapper) String() string { return "import public key" }

// hpkeUnwrapper is the private side: it decrypts only.
type hpkeUnwrapper struct{ dec tink.HybridDecrypt }

func (u hpkeUnwrapper) Encrypt([]byte, []byte) ([]byte, error) {
	return nil, errors.New("the import key does not encrypt")
}
func (u hpkeUnwrapper) Decrypt(ct, ad []byte) ([]byte, error) { return u.dec.Decrypt(ct, ad) }
func (u hpkeUnwrapper) String() string                        { return "import key" }

// movedContext is the HPKE context info of a moved keyset: the format, the
// tenant and the caller's context (a bundle's manifest hash).
func movedContext(t events.TenantID, context []byte) []byte {
	b := []byte(movedFormat)
	b = append(b, 0)
	b = append(b, t...)
	b = append(b, 0)
	return append(b, context...)
}

// ExportKeyset returns tenant t's keysets encrypted, by Tink, to the public
// import key publicKeyset (another vault's ImportKey.Keyset) with
// context (e.g. a bundle's manifest hash) and t bound as HPKE context
// info: only that vault opens it, and only for t and that context. The
// keysets are unwrapped and re-encrypted inside this package; no clear key
// material leaves it.
func (ks *Keystore) ExportKeyset(t events.TenantID, publicKeyset, context []byte) ([]byte, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	_, enc, err := parseImportKey(publicKeyset)
	if err != nil {
		return nil, err
	}
	c, err := ks.Cipher(t)
	if err != nil {
		return nil, err
	}
	k, err := c.current()
	if err != nil {
		return nil, err
	}
	w := hpkeWrapper{enc}
	ad := movedContext(t, context)
	f := keysetFile{Format: movedFormat, Tenant: string(t), Destroyed: k.destroyed}
	if f.DestroyedMAC, err = destroyedMAC(k); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, part := range []struct {
		h   *keyset.Handle
		out *json.RawMessage
	}{{k.aeadHandle, &f.AEAD}, {k.prfHandle, &f.PRF}} {
		buf.Reset()
		if err := part.h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), w, ad); err != nil {
			return nil, fmt.Errorf("export keys of tenant %s: %w", t, err)
		}
		*part.out = slices.Clone(buf.Bytes())
	}
	out, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("export keys of tenant %s: %w", t, err)
	}
	return out, nil
}

// ImportedKeys are a moved tenant's keys, decrypted with this vault's
// import key but not yet installed: Decrypt and Hash let a bundle's sealed
// values be tried before anything is written; Keystore.Install makes them
// the tenant's. It prints redacted.
type ImportedKeys struct {
	tenant events.TenantID
	keys   *tenantKeys
}

// Decrypt opens a value sealed by the imported keys.
func (k *ImportedKeys) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	return k.keys.aead.Decrypt(ciphertext, associatedData)
}

// Hash is the tenant's keyed hash, as TenantCipher.Hash.
func (k *ImportedKeys) Hash(kind string, data []byte) []byte {
	return tenantHash(k.keys, kind, data)
}

// Encrypt always fails: imported keys are only tried until installed.
func (k *ImportedKeys) Encrypt([]byte, []byte) ([]byte, error) {
	return nil, errors.New("imported keys do not encrypt before they are installed")
}

// KeyIDs returns the AEAD key ids, sorted.
func (k *ImportedKeys) KeyIDs() []uint32 { return k.keys.meta().ids() }

// String never prints key material.
func (k *ImportedKeys) String() string { return fmt.Sprintf("ImportedKeys(%s, REDACTED)", k.tenant) }

// GoString keeps %#v redacted.
func (k *ImportedKeys) GoString() string { return k.String() }

// OpenImport decrypts with this vault's import key the keysets of tenant t
// that another vault exported with ExportKeyset and context. It fails with
// ErrWrongImportKey when they were not encrypted to this vault, for t, with
// context; with ErrExists or ErrDestroyed when t has keys here or was
// shredded here; with ECONFLICT when one of its key ids is another
// tenant's here. Nothing is written.
func (ks *Keystore) OpenImport(t events.TenantID, blob, context []byte) (*ImportedKeys, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	if err := ks.checkImportable(t); err != nil {
		return nil, err
	}
	var f keysetFile
	if err := json.Unmarshal(blob, &f); err != nil || f.Format != movedFormat || f.Tenant != string(t) {
		return nil, events.Errorf(events.EINVALID, "the bundle's keyset is not a %s keyset of tenant %s", movedFormat, t)
	}
	h, err := ks.importKeyHandle()
	if err != nil {
		return nil, err
	}
	dec, err := hybrid.NewHybridDecrypt(h)
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	u := hpkeUnwrapper{dec}
	ad := movedContext(t, context)
	var hs [2]*keyset.Handle
	for i, raw := range []json.RawMessage{f.AEAD, f.PRF} {
		if hs[i], err = keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(raw)), u, ad); err != nil {
			return nil, fmt.Errorf("import keys of tenant %s: %w", t, ErrWrongImportKey)
		}
	}
	k, err := newTenantKeys(hs[0], hs[1], f.Destroyed)
	if err != nil {
		return nil, events.Errorf(events.EINVALID, "import keys of tenant %s: %v", t, err)
	}
	mac, err := destroyedMAC(k)
	if err != nil || !hmac.Equal(mac, f.DestroyedMAC) {
		return nil, events.Errorf(events.EINVALID, "import keys of tenant %s: the destroyed key ids do not match their MAC", t)
	}
	st := ks.state.Load()
	for _, id := range k.meta().ids() {
		if other, taken := st.owners[id]; taken && other != t {
			return nil, events.Errorf(events.ECONFLICT, "import keys of tenant %s: key id 0x%08x is tenant %s's in this vault", t, id, other)
		}
	}
	return &ImportedKeys{tenant: t, keys: k}, nil
}

func (ks *Keystore) checkImportable(t events.TenantID) error {
	st := ks.state.Load()
	if st.closed {
		return errClosed
	}
	if _, ok := st.destroyed[t]; ok {
		return fmt.Errorf("import keys of tenant %s: %w", t, ErrDestroyed)
	}
	if _, ok := st.ciphers[t]; ok {
		return fmt.Errorf("import keys of tenant %s: %w", t, ErrExists)
	}
	return nil
}

// Install makes imported keys tenant k's keys here: its keyset file is
// written wrapped by this vault's master key (tenant id as associated
// data), as Create writes one, and its cipher published. It fails with
// ErrExists or ErrDestroyed as OpenImport does.
func (ks *Keystore) Install(k *ImportedKeys) (*TenantCipher, error) {
	t := k.tenant
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if err := ks.checkImportable(t); err != nil {
		return nil, err
	}
	st := ks.state.Load()
	for _, id := range k.keys.meta().ids() {
		if other, taken := st.owners[id]; taken && other != t {
			return nil, events.Errorf(events.ECONFLICT, "install keys of tenant %s: key id 0x%08x is tenant %s's", t, id, other)
		}
	}
	kek, err := ks.master.kekFor(string(t), true)
	if err != nil {
		return nil, err
	}
	data, err := marshalKeyset(t, k.keys, kek, ks.path(t))
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(ks.path(t), data, atomicfile.Options{NoClobber: true}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s exists: %w", ks.path(t), ErrExists)
		}
		return nil, err
	}
	c := ks.newCipher(t, k.keys.meta())
	ks.install(c, k.keys)
	ks.publishCipher(st, c)
	return c, nil
}

// tenantHash is TenantCipher.Hash's PRF of kind and data with keys k.
func tenantHash(k *tenantKeys, kind string, data []byte) []byte {
	in := make([]byte, 0, binary.MaxVarintLen64+len(kind)+len(data))
	in = binary.AppendUvarint(in, uint64(len(kind)))
	in = append(in, kind...)
	in = append(in, data...)
	out, err := k.prf.ComputePrimaryPRF(in, HashSize)
	if err != nil {
		return nil
	}
	return out
}
