package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// checkFile, <dir>/master.check, holds a value sealed by the master key, so
// that a keystore opened with another master key fails with one clear error
// instead of one per tenant.
const checkFile = "master.check"

// The value sealed in master.check, and its associated data.
var (
	checkPlaintext = []byte("tenantvault keys: master key check v1")
	checkAD        = []byte("tenantvault/keys/master.check")
)

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
		return n == checkFile || n == auditSignerFile || n == auditHashFile || n == stagingDir || strings.HasSuffix(n, keysetExt)
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
	return atomicfile.WriteFile(filepath.Join(dir, checkFile), ct, atomicfile.Options{})
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

// verifyAll unwraps every keyset, the audit signer and the audit hash key
// (if any).
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
	if _, err := ks.loadAuditHashKeyset(); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}
