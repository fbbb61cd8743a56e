package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

const (
	// stagingDir holds the files RotateMaster re-wrapped, until they replace
	// the live ones. Its name is not a valid tenant id.
	stagingDir = "rotate-master.staging"
	// commitFile in stagingDir is the commit point of a master key rotation.
	commitFile    = "COMMITTED"
	commitFormat  = "tenantvault-rotate-master-v1"
	stepStaged    = "staged:"
	stepCommitted = "committed"
	stepSwapped   = "swapped:"
)

// RotateMaster re-wraps every tenant keyset, the audit checkpoint signer
// and master.check under the master key newURI (which may hold {tenant}),
// without touching tenant data or the keys themselves: ciphertexts, key
// ids and keyed hashes stay valid. Afterwards this Keystore uses the new
// master key; restart vaultd with newURI (the old one no longer opens it).
//
// It is crash-safe. Phase 1 unwraps each file with the current master key
// and writes it, wrapped by the new one, into <dir>/rotate-master.staging;
// any failure there (a tenant whose keyset does not unwrap, an unreachable
// KMS, ctx done) removes the staging directory and changes nothing. Then it
// writes rotate-master.staging/COMMITTED (fsynced): the commit point. Phase
// 2 renames the staged files over the live ones, master.check last, and
// removes the staging directory. After a crash, Open finishes or undoes:
//
//   - before the commit point, the keystore opens with the old master key
//     (the staging directory is removed), and RotateMaster can run again;
//     the new one is refused with a message saying so;
//   - after it, the keystore opens with the new master key, which finishes
//     phase 2; the old one is refused with a message saying so.
//
// Each file is at every moment wholly readable by the old or the new master
// key. Writers (Create, Rotate, Destroy, ...) wait while it runs; reads go
// on, with keys in memory or unwrapped from files not yet swapped.
func (ks *Keystore) RotateMaster(ctx context.Context, newURI string) (err error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	if st.closed {
		return errClosed
	}
	nm, err := openMaster(newURI, ks.extras, true, ks.logger)
	if err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	staging := filepath.Join(ks.dir, stagingDir)
	crashed, committed := false, false
	hook := func(step string) error {
		if ks.testHook == nil {
			return nil
		}
		if err := ks.testHook(step); err != nil {
			crashed = true
			return err
		}
		return nil
	}
	defer func() {
		if err == nil || crashed {
			return
		}
		if committed {
			// Phase 2 failed: files are mixed; only a reopen with the new
			// master key can finish. Stop serving keys from this one.
			ks.closeLocked()
			nm.prov.close()
			err = fmt.Errorf("%w; the keystore is closed: open it again with the new master key to finish the rotation", err)
			return
		}
		removeStaging(staging)
		nm.prov.close()
	}()
	if err := removeStaging(staging); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	if err := os.Mkdir(staging, 0o700); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}

	// Phase 1: stage.
	var names []string
	for _, t := range slices.Sorted(maps.Keys(st.ciphers)) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		if err := ks.stageKeyset(t, nm, staging); err != nil {
			return fmt.Errorf("rotate master key: %w", err)
		}
		names = append(names, string(t)+keysetExt)
		if err := hook(stepStaged + string(t) + keysetExt); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	if ok, err := ks.stageAuditSigner(nm, staging); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	} else if ok {
		names = append(names, auditSignerFile)
		if err := hook(stepStaged + auditSignerFile); err != nil {
			return err
		}
	}
	if err := ks.writeCheck(staging, nm); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	names = append(names, checkFile) // last: it says which master key the directory is for
	if err := hook(stepStaged + checkFile); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}

	// The commit point.
	marker, _ := json.Marshal(map[string]string{"format": commitFormat, "master": nm.String(), "at": time.Now().UTC().Format(time.RFC3339Nano)})
	if err := writeFileAtomic(filepath.Join(staging, commitFile), marker, false); err != nil {
		return fmt.Errorf("rotate master key: commit: %w", err)
	}
	committed = true
	if err := hook(stepCommitted); err != nil {
		return err
	}

	// Phase 2: swap, with loaders held off so that none reads a new file
	// with the old master key.
	ks.masterMu.Lock()
	defer ks.masterMu.Unlock()
	for _, name := range names {
		if err := os.Rename(filepath.Join(staging, name), filepath.Join(ks.dir, name)); err != nil {
			return fmt.Errorf("rotate master key: swap %s: %w", name, err)
		}
		if err := hook(stepSwapped + name); err != nil {
			return err
		}
	}
	if err := finishStaging(ks.dir, staging); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	old := ks.master
	ks.master = nm
	if err := old.prov.close(); err != nil {
		ks.logger.Warn("rotate master key: closing the old master key's KMS client failed", "err", err)
	}
	ks.logger.Info("rotated the master key", "old", old.String(), "new", nm.String(), "tenants", len(st.ciphers))
	return nil
}

// stageKeyset writes tenant t's keyset, re-wrapped by nm, into staging.
func (ks *Keystore) stageKeyset(t events.TenantID, nm *master, staging string) error {
	path := ks.path(t)
	f, _, err := ks.readKeysetFile(t)
	if err != nil {
		return err
	}
	oldKEK, err := ks.master.kekFor(string(t), false)
	if err != nil {
		return err
	}
	newKEK, err := nm.kekFor(string(t), true)
	if err != nil {
		return err
	}
	dst := filepath.Join(staging, string(t)+keysetExt)
	for _, part := range []struct {
		what string
		raw  *json.RawMessage
	}{{"AEAD keyset", &f.AEAD}, {"PRF keyset", &f.PRF}} {
		h, err := unwrapKeyset(*part.raw, oldKEK, []byte(t), part.what, t, path)
		if err != nil {
			return err
		}
		if *part.raw, err = wrapKeyset(h, newKEK, []byte(t), part.what, t, dst); err != nil {
			return err
		}
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, append(out, '\n'), false)
}

// stageAuditSigner writes the audit signer's file, re-wrapped by nm, into
// staging. It reports false when there is no audit signer.
func (ks *Keystore) stageAuditSigner(nm *master, staging string) (bool, error) {
	path := filepath.Join(ks.dir, auditSignerFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var f auditSignerFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != auditSignerFormat {
		return false, fmt.Errorf("audit checkpoint key %s is not a %s file", path, auditSignerFormat)
	}
	oldKEK, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return false, err
	}
	newKEK, err := nm.kekFor(VaultKeyName, true)
	if err != nil {
		return false, err
	}
	h, err := unwrapKeyset(f.Keyset, oldKEK, auditSignerAD, "audit checkpoint key", "", path)
	if err != nil {
		return false, err
	}
	dst := filepath.Join(staging, auditSignerFile)
	if f.Keyset, err = wrapKeyset(h, newKEK, auditSignerAD, "audit checkpoint key", "", dst); err != nil {
		return false, err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return false, err
	}
	return true, writeFileAtomic(dst, append(out, '\n'), false)
}

// recoverMasterRotation finishes or undoes a RotateMaster that a crash
// interrupted (see RotateMaster), with the master key the keystore is being
// opened with.
func (ks *Keystore) recoverMasterRotation() error {
	staging := filepath.Join(ks.dir, stagingDir)
	if _, err := os.Stat(staging); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	entries, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		// A finished rotation that crashed while removing the directory.
		return removeStaging(staging)
	}
	_, err = os.Stat(filepath.Join(staging, commitFile))
	committed := err == nil
	if !committed {
		// Phase 1 did not finish: the live files are all the old master's.
		if _, err := ks.checkMasterKey(filepath.Join(ks.dir, checkFile)); err != nil {
			return fmt.Errorf("a master key rotation was interrupted before it committed, so the keystore is still sealed by the previous master key: open it with that one (and run the rotation again): %w", err)
		}
		ks.logger.Warn("undoing a master key rotation that a crash interrupted before it committed", "dir", ks.dir)
		return removeStaging(staging)
	}
	// Committed: the new master key's check is staged, or already swapped.
	newCheck := filepath.Join(staging, checkFile)
	if _, err := os.Stat(newCheck); err != nil {
		newCheck = filepath.Join(ks.dir, checkFile)
	}
	if _, err := ks.checkMasterKey(newCheck); err != nil {
		return fmt.Errorf("a master key rotation was committed but not finished, so the keystore's keys are now sealed by the new master key: open it with that one to finish the rotation: %w", err)
	}
	ks.logger.Warn("finishing a master key rotation that a crash interrupted", "dir", ks.dir)
	var names []string
	for _, e := range entries {
		switch n := e.Name(); {
		case n == commitFile, n == checkFile:
		case len(n) > len(tmpPrefix) && n[:len(tmpPrefix)] == tmpPrefix:
			if err := shredFile(filepath.Join(staging, n)); err != nil {
				return err
			}
		default:
			names = append(names, n)
		}
	}
	if _, err := os.Stat(filepath.Join(staging, checkFile)); err == nil {
		names = append(names, checkFile)
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(staging, n), filepath.Join(ks.dir, n)); err != nil {
			return fmt.Errorf("finish master key rotation: %w", err)
		}
	}
	return finishStaging(ks.dir, staging)
}

// finishStaging makes the swapped files durable, then removes the staging
// directory (commit marker last).
func finishStaging(dir, staging string) error {
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := syncDir(staging); err != nil {
		return err
	}
	return removeStaging(staging)
}

// removeStaging shreds and removes the staging directory, if any. The
// commit marker goes last, so that a crash midway leaves it meaning what
// it meant.
func removeStaging(staging string) error {
	entries, err := os.ReadDir(staging)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != commitFile {
			if err := shredFile(filepath.Join(staging, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(filepath.Join(staging, commitFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(staging); err != nil {
		return err
	}
	return syncDir(filepath.Dir(staging))
}
