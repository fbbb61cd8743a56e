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
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
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
	r := &rotation{ks: ks, nm: nm, staging: filepath.Join(ks.dir, stagingDir)}
	defer func() { err = r.cleanUp(err) }()
	if err := removeStaging(r.staging); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	if err := os.Mkdir(r.staging, 0o700); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	names, err := r.stage(ctx, st)
	if err != nil {
		return err
	}
	if err := r.commit(); err != nil {
		return err
	}
	if err := r.swap(names); err != nil {
		return err
	}
	ks.logger.Info("rotated the master key", "old", r.old.String(), "new", nm.String(), "tenants", len(st.ciphers))
	return nil
}

// rotation is one RotateMaster call: the new master key, where it stages,
// and how far it got. ks.mu is held throughout.
type rotation struct {
	ks        *Keystore
	nm        *master // the new master key
	old       *master // the previous one, once swapped
	staging   string
	crashed   bool // a test hook simulated a crash: clean nothing
	committed bool // the commit marker is written
}

// hook runs ks.testHook at step; its error simulates a crash there.
func (r *rotation) hook(step string) error {
	if r.ks.testHook == nil {
		return nil
	}
	if err := r.ks.testHook(step); err != nil {
		r.crashed = true
		return err
	}
	return nil
}

// cleanUp undoes a rotation that failed with err before its commit point
// (the staging directory goes), or closes the keystore when it failed after
// it (files are mixed; only a reopen with the new master key can finish).
// It returns err, explained.
func (r *rotation) cleanUp(err error) error {
	if err == nil || r.crashed {
		return err
	}
	if r.committed {
		// Stop serving keys from this keystore.
		r.ks.closeLocked()
		r.nm.prov.close()
		return fmt.Errorf("%w; the keystore is closed: open it again with the new master key to finish the rotation", err)
	}
	removeStaging(r.staging)
	r.nm.prov.close()
	return err
}

// stage is phase 1: it writes every tenant keyset, the audit signer, the
// audit hash key and master.check, re-wrapped by the new master key, into the staging
// directory, and returns their names, master.check last.
func (r *rotation) stage(ctx context.Context, st *ksState) ([]string, error) {
	var names []string
	for _, t := range slices.Sorted(maps.Keys(st.ciphers)) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("rotate master key: %w", err)
		}
		if err := r.ks.stageKeyset(t, r.nm, r.staging); err != nil {
			return nil, fmt.Errorf("rotate master key: %w", err)
		}
		names = append(names, string(t)+keysetExt)
		if err := r.hook(stepStaged + string(t) + keysetExt); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	}
	if ok, err := r.ks.stageAuditSigner(r.nm, r.staging); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	} else if ok {
		names = append(names, auditSignerFile)
		if err := r.hook(stepStaged + auditSignerFile); err != nil {
			return nil, err
		}
	}
	if ok, err := r.ks.stageAuditHash(r.nm, r.staging); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	} else if ok {
		names = append(names, auditHashFile)
		if err := r.hook(stepStaged + auditHashFile); err != nil {
			return nil, err
		}
	}
	if ok, err := r.ks.stageImportKey(r.nm, r.staging); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	} else if ok {
		names = append(names, importKeyFile)
		if err := r.hook(stepStaged + importKeyFile); err != nil {
			return nil, err
		}
	}
	if err := r.ks.writeCheck(r.staging, r.nm); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	}
	names = append(names, checkFile) // last: it says which master key the directory is for
	if err := r.hook(stepStaged + checkFile); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rotate master key: %w", err)
	}
	return names, nil
}

// commit writes the commit marker: from here the rotation is decided.
func (r *rotation) commit() error {
	marker, _ := json.Marshal(map[string]string{"format": commitFormat, "master": r.nm.String(), "at": time.Now().UTC().Format(time.RFC3339Nano)})
	if err := atomicfile.WriteFile(filepath.Join(r.staging, commitFile), marker, atomicfile.Options{}); err != nil {
		return fmt.Errorf("rotate master key: commit: %w", err)
	}
	r.committed = true
	return r.hook(stepCommitted)
}

// swap is phase 2: it renames the staged files over the live ones, removes
// the staging directory and makes the new master key the keystore's, with
// loaders held off so that none reads a new file with the old master key.
func (r *rotation) swap(names []string) error {
	ks := r.ks
	ks.masterMu.Lock()
	defer ks.masterMu.Unlock()
	for _, name := range names {
		if err := os.Rename(filepath.Join(r.staging, name), filepath.Join(ks.dir, name)); err != nil {
			return fmt.Errorf("rotate master key: swap %s: %w", name, err)
		}
		if err := r.hook(stepSwapped + name); err != nil {
			return err
		}
	}
	if err := finishStaging(ks.dir, r.staging); err != nil {
		return fmt.Errorf("rotate master key: %w", err)
	}
	r.old = ks.master
	ks.master = r.nm
	if err := r.old.prov.close(); err != nil {
		ks.logger.Warn("rotate master key: closing the old master key's KMS client failed", "err", err)
	}
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
	out, err := f.encode()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(dst, out, atomicfile.Options{})
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
	return true, atomicfile.WriteFile(dst, append(out, '\n'), atomicfile.Options{})
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
		case strings.HasPrefix(n, atomicfile.TmpPrefix):
			if err := atomicfile.Shred(filepath.Join(staging, n)); err != nil {
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
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(staging); err != nil {
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
			if err := atomicfile.Shred(filepath.Join(staging, e.Name())); err != nil {
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
	return atomicfile.SyncDir(filepath.Dir(staging))
}
