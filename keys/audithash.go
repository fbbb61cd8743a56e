package keys

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

const (
	// auditHashFile holds the vault's own PRF key: the keyed hash that
	// stands in the audit log for producer-supplied text (a claimed
	// tenant, a topic name) that must not be stored. Its suffix is not
	// keysetExt, so no tenant id can name it.
	auditHashFile   = "audit-hash.prf"
	auditHashFormat = "tenantvault-audit-hash-v1"
)

// auditHashAD binds the wrapped PRF keyset to its purpose: a tenant keyset
// or the audit signer copied over it does not open.
var auditHashAD = []byte("audit-hash-prf")

// auditHashFileData is the format of <dir>/audit-hash.prf.
type auditHashFileData struct {
	Format string          `json:"format"`
	Keyset json.RawMessage `json:"keyset"` // Tink EncryptedKeyset (one HMAC-SHA256 PRF key), JSON
}

// AuditHash returns the vault's keyed hash (Tink PRF, HMAC-SHA256) of data
// in the domain kind, HashSize bytes: what the audit log records in place
// of producer-supplied text that may be personal data (a tenant an event
// claims that is not a tenant of the vault, the topic of an unknown
// tenant). Equal inputs give equal hashes, so records can be correlated;
// without the key the hash reveals nothing about data.
//
// The key belongs to the vault, not to a tenant: it survives a shred (the
// records it hashes for do too). On first use it is generated and stored
// in <dir>/audit-hash.prf, wrapped by the master key (its "_vault" key,
// [VaultKeyName]) with the associated data "audit-hash-prf" (mode 0600,
// written atomically); RotateMaster re-wraps it. The PRF input is
// uvarint(len(kind)) || kind || data, as for [TenantCipher.Hash]; it is
// part of the stored format.
func (ks *Keystore) AuditHash(kind string, data []byte) ([]byte, error) {
	p := ks.auditHash.Load()
	if p == nil {
		var err error
		if p, err = ks.loadOrCreateAuditHash(); err != nil {
			return nil, err
		}
	}
	in := make([]byte, 0, binary.MaxVarintLen64+len(kind)+len(data))
	in = binary.AppendUvarint(in, uint64(len(kind)))
	in = append(in, kind...)
	in = append(in, data...)
	out, err := p.ComputePrimaryPRF(in, HashSize)
	if err != nil {
		return nil, fmt.Errorf("keys: audit hash: %w", err)
	}
	return out, nil
}

// loadOrCreateAuditHash returns the vault's PRF, read and unwrapped from
// its file or made on first use, and caches it.
func (ks *Keystore) loadOrCreateAuditHash() (*prf.Set, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.state.Load().closed {
		return nil, errClosed
	}
	if p := ks.auditHash.Load(); p != nil {
		return p, nil
	}
	h, err := ks.loadAuditHashKeyset()
	if errors.Is(err, ErrNotFound) {
		h, err = ks.createAuditHashKeyset()
	}
	if err != nil {
		return nil, err
	}
	p, err := prf.NewPRFSet(h)
	if err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	ks.auditHash.Store(p)
	return p, nil
}

// loadAuditHashKeyset reads and unwraps the PRF key file, or fails with
// ErrNotFound. ks.mu must be held.
func (ks *Keystore) loadAuditHashKeyset() (*keyset.Handle, error) {
	path := filepath.Join(ks.dir, auditHashFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("audit hash key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	var f auditHashFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != auditHashFormat {
		return nil, fmt.Errorf("audit hash key %s is not a %s file", path, auditHashFormat)
	}
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	return unwrapKeyset(f.Keyset, kek, auditHashAD, "audit hash key", "", path)
}

// createAuditHashKeyset generates and stores a new PRF key. ks.mu must be
// held.
func (ks *Keystore) createAuditHashKeyset() (*keyset.Handle, error) {
	h, err := keyset.NewHandle(prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("audit hash key: generate: %w", err)
	}
	path := filepath.Join(ks.dir, auditHashFile)
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	wrapped, err := wrapKeyset(h, kek, auditHashAD, "audit hash key", "", path)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(auditHashFileData{Format: auditHashFormat, Keyset: wrapped}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), atomicfile.Options{NoClobber: true}); err != nil {
		return nil, fmt.Errorf("audit hash key: %w", err)
	}
	return h, nil
}

// stageAuditHash writes the PRF key's file, re-wrapped by nm, into
// staging. It reports false when there is no such key yet.
func (ks *Keystore) stageAuditHash(nm *master, staging string) (bool, error) {
	path := filepath.Join(ks.dir, auditHashFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var f auditHashFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != auditHashFormat {
		return false, fmt.Errorf("audit hash key %s is not a %s file", path, auditHashFormat)
	}
	oldKEK, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return false, err
	}
	newKEK, err := nm.kekFor(VaultKeyName, true)
	if err != nil {
		return false, err
	}
	h, err := unwrapKeyset(f.Keyset, oldKEK, auditHashAD, "audit hash key", "", path)
	if err != nil {
		return false, err
	}
	dst := filepath.Join(staging, auditHashFile)
	if f.Keyset, err = wrapKeyset(h, newKEK, auditHashAD, "audit hash key", "", dst); err != nil {
		return false, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return false, err
	}
	return true, atomicfile.WriteFile(dst, append(out, '\n'), atomicfile.Options{})
}
