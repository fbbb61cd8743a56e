package keys

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

const (
	tombstoneDir     = "tombstones"
	historyExt       = ".history"
	tombstoneFormat  = "tenantvault-tombstone-v1"
	historyFormat    = "tenantvault-tombstone-history-v1"
	maxTombstoneSize = 16 << 20
)

// DestroyReport describes the crypto-shredding of a tenant's keys.
type DestroyReport struct {
	Tenant events.TenantID
	KeyIDs []uint32  // every AEAD key id the tenant's keyset held (destroyed keys included), sorted
	At     time.Time // when the keys were destroyed (UTC)
}

// tombstoneFile is the format of <dir>/tombstones/<tenant>. It holds no
// secret: ids and a time.
type tombstoneFile struct {
	Format string    `json:"format"`
	Tenant string    `json:"tenant"`
	KeyIDs []uint32  `json:"key_ids"`
	At     time.Time `json:"destroyed_at"`
}

// historyFile is the format of <dir>/tombstones/<tenant>.history: the
// tombstones of a tenant id that was re-created after being shredded.
type historyFile struct {
	Format    string          `json:"format"`
	Tenant    string          `json:"tenant"`
	Destroyed []tombstoneFile `json:"destroyed"`
}

func (ks *Keystore) tombstonePath(t events.TenantID) string {
	return filepath.Join(ks.dir, tombstoneDir, string(t))
}

func (ks *Keystore) historyPath(t events.TenantID) string {
	return filepath.Join(ks.dir, tombstoneDir, string(t)+historyExt)
}

// Destroy crypto-shreds tenant t's keys and returns their ids: every AEAD
// key id t's keyset held (destroyed keys included), sorted. In this order:
//
//  1. it writes the tombstone <dir>/tombstones/<t> (0600, fsynced) listing
//     t's key ids: from here the destruction is decided, and a crash is
//     finished by the next Open;
//  2. it drops t's unwrapped keys from memory: the cache entry and the keys
//     inside every TenantCipher of t already handed out, which fail with
//     ErrDestroyed from the moment Destroy returns (an Encrypt or Decrypt
//     that had already loaded the keys when Destroy began may still finish
//     with them);
//  3. it overwrites, removes and fsyncs away the keyset file, any temporary
//     or staging copy the keystore wrote, and, with a local:// master key
//     URI holding {tenant}, t's own master key file.
//
// Afterwards Cipher(t) and Create(t) fail with ErrDestroyed, Keys(t) too,
// Destroyed(t) returns the report of the destruction, and Owner of each
// destroyed key id still names t. Destroy never touches t's data: its cost
// does not depend on how much t stored.
//
// Destroying a destroyed tenant returns the same ids again (a resumed
// shred), and redoes step 3 (in case an earlier call failed there); its
// report (Destroyed) keeps the time of the first call. An unknown tenant is
// ErrNotFound. Copies of the wrapped keyset outside <dir> (backups) are
// beyond its reach: with a {tenant} KMS master key URI, deleting the
// tenant's KMS key makes them useless too.
func (ks *Keystore) Destroy(t events.TenantID) ([]uint32, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	if st.closed {
		return nil, errClosed
	}
	if rep, ok := st.destroyed[t]; ok {
		ids := slices.Clone(rep.KeyIDs)
		if err := ks.shredTenantFiles(t); err != nil {
			return ids, fmt.Errorf("destroy keys of tenant %s: %w", t, err)
		}
		return ids, nil
	}
	c, ok := st.ciphers[t]
	if !ok {
		return nil, fmt.Errorf("destroy keys of tenant %s: %w", t, ErrNotFound)
	}
	rep := DestroyReport{Tenant: t, KeyIDs: c.meta.Load().ids(), At: time.Now().UTC().Truncate(time.Microsecond)}

	// 1. The tombstone: the decision.
	if err := ks.writeTombstone(rep); err != nil {
		return nil, fmt.Errorf("destroy keys of tenant %s: write tombstone: %w", t, err)
	}
	// 2. Memory: from here no operation of t's cipher gets keys.
	c.slot.Store(destroyedSlot)
	ks.uncache(c)
	next := st.clone()
	delete(next.ciphers, t)
	next.destroyed[t] = rep
	ks.state.Store(next)
	// 3. Disk.
	ids := slices.Clone(rep.KeyIDs)
	if err := ks.shredTenantFiles(t); err != nil {
		return ids, fmt.Errorf("destroy keys of tenant %s: the keys are destroyed in memory and tombstoned, but removing their files failed (Destroy again, or reopen, retries): %w", t, err)
	}
	return ids, nil
}

// Discard removes tenant t's keys as if they had never been made: for a
// tenant whose create failed, which sealed nothing with them. Unlike
// Destroy it writes no tombstone, so Create(t) makes new keys afterwards;
// its key ids are freed, and its keyset file is overwritten and removed
// as Destroy's is. A tenant without keys is not an error; a destroyed one
// is left as it is (ErrDestroyed: its tombstone must stay).
func (ks *Keystore) Discard(t events.TenantID) error {
	if err := checkTenant(t); err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	if st.closed {
		return errClosed
	}
	if _, ok := st.destroyed[t]; ok {
		return fmt.Errorf("discard keys of tenant %s: %w", t, ErrDestroyed)
	}
	if c, ok := st.ciphers[t]; ok {
		c.slot.Store(destroyedSlot)
		ks.uncache(c)
		next := st.clone()
		delete(next.ciphers, t)
		for _, id := range c.meta.Load().ids() {
			if next.owners[id] == t {
				delete(next.owners, id)
			}
		}
		ks.state.Store(next)
	}
	if err := ks.shredTenantFiles(t); err != nil {
		return fmt.Errorf("discard keys of tenant %s: %w", t, err)
	}
	return nil
}

// Destroyed returns the report of tenant t's destruction, and false when
// t's keys are not destroyed (never were, or were re-created since).
func (ks *Keystore) Destroyed(t events.TenantID) (DestroyReport, bool) {
	rep, ok := ks.state.Load().destroyed[t]
	return rep, ok
}

// Recreate gives shredded tenant t new keys: fresh keysets whose key ids no
// tenant ever had. Nothing destroyed comes back: ciphertexts of the old keys
// stay unreadable (through the new cipher they fail with ErrKeyDestroyed),
// TenantCiphers handed out before the shred stay destroyed, and the old
// ids keep naming t (the tombstone moves to <dir>/tombstones/<t>.history).
// It fails with ErrExists when t has keys and ErrNotFound when t's keys
// were never destroyed (Create is for new tenants).
//
// Crash safety: the history is written first, then the new keyset, then
// the tombstone removed; Open finishes a Recreate that got as far as the
// keyset, and otherwise t stays shredded.
func (ks *Keystore) Recreate(t events.TenantID) (*TenantCipher, error) {
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
		return nil, fmt.Errorf("recreate keys of tenant %s: %w", t, ErrExists)
	}
	tomb, ok := st.destroyed[t]
	if !ok {
		return nil, fmt.Errorf("recreate keys of tenant %s: its keys were never destroyed: %w", t, ErrNotFound)
	}
	hist, err := ks.readHistory(t)
	if err != nil {
		return nil, fmt.Errorf("recreate keys of tenant %s: %w", t, err)
	}
	if err := ks.writeHistory(t, appendHistory(hist, tomb)); err != nil {
		return nil, fmt.Errorf("recreate keys of tenant %s: %w", t, err)
	}
	c, err := ks.createKeys(st, t)
	if err != nil {
		return nil, fmt.Errorf("recreate keys of tenant %s: %w", t, err)
	}
	if err := ks.removeTombstone(t); err != nil {
		// The new keyset is written: the next Open finishes this.
		ks.logger.Error("recreate keys: removing the tombstone failed; the next open finishes it", "tenant", t, "err", err)
	}
	ks.publishCipher(st, c)
	return c, nil
}

// finishRecreate completes a Recreate that wrote t's new keyset: tomb goes
// to the history, the tombstone away.
func (ks *Keystore) finishRecreate(t events.TenantID, tomb DestroyReport, hist []DestroyReport) error {
	ks.logger.Warn("finishing the re-creation of a shredded tenant's keys that a crash interrupted", "tenant", t)
	if err := ks.writeHistory(t, appendHistory(hist, tomb)); err != nil {
		return err
	}
	return ks.removeTombstone(t)
}

// appendHistory appends r to h unless it is there already.
func appendHistory(h []DestroyReport, r DestroyReport) []DestroyReport {
	for _, x := range h {
		if x.At.Equal(r.At) && slices.Equal(x.KeyIDs, r.KeyIDs) {
			return h
		}
	}
	return append(slices.Clone(h), r)
}

// shredTenantFiles removes every file of tenant t's keys the keystore
// wrote: its keyset, temporary and staging copies, and its own local master
// key file when the master key URI is local:// with {tenant}.
func (ks *Keystore) shredTenantFiles(t events.TenantID) error {
	var errs []error
	errs = append(errs, atomicfile.Shred(ks.path(t)))
	errs = append(errs, atomicfile.Shred(filepath.Join(ks.dir, stagingDir, string(t)+keysetExt)))
	tmps, _ := filepath.Glob(filepath.Join(ks.dir, atomicfile.TmpPrefix+string(t)+keysetExt+"-*"))
	for _, p := range tmps {
		errs = append(errs, atomicfile.Shred(p))
	}
	if _, local := ks.master.prov.(*localProvider); local && ks.master.templated() {
		errs = append(errs, atomicfile.Shred(strings.TrimPrefix(ks.master.resolve(string(t)), "local://")))
	}
	return errors.Join(errs...)
}

func (ks *Keystore) writeTombstone(r DestroyReport) error {
	if err := os.MkdirAll(filepath.Join(ks.dir, tombstoneDir), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(tombstoneFile{Format: tombstoneFormat, Tenant: string(r.Tenant), KeyIDs: r.KeyIDs, At: r.At}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(ks.tombstonePath(r.Tenant), append(b, '\n'), atomicfile.Options{})
}

func (ks *Keystore) removeTombstone(t events.TenantID) error {
	if err := os.Remove(ks.tombstonePath(t)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Join(ks.dir, tombstoneDir))
}

func (ks *Keystore) readHistory(t events.TenantID) ([]DestroyReport, error) {
	b, err := readSmallFile(ks.historyPath(t))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h historyFile
	if err := json.Unmarshal(b, &h); err != nil || h.Format != historyFormat || h.Tenant != string(t) {
		return nil, fmt.Errorf("tombstone history %s is not a %s file of tenant %s", ks.historyPath(t), historyFormat, t)
	}
	out := make([]DestroyReport, len(h.Destroyed))
	for i, d := range h.Destroyed {
		out[i] = DestroyReport{Tenant: t, KeyIDs: d.KeyIDs, At: d.At}
	}
	return out, nil
}

func (ks *Keystore) writeHistory(t events.TenantID, reps []DestroyReport) error {
	if err := os.MkdirAll(filepath.Join(ks.dir, tombstoneDir), 0o700); err != nil {
		return err
	}
	h := historyFile{Format: historyFormat, Tenant: string(t)}
	for _, r := range reps {
		h.Destroyed = append(h.Destroyed, tombstoneFile{Format: tombstoneFormat, Tenant: string(t), KeyIDs: r.KeyIDs, At: r.At})
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(ks.historyPath(t), append(b, '\n'), atomicfile.Options{})
}

// readTombstones reads <dir>/tombstones: the tombstone and the history of
// each tenant.
func (ks *Keystore) readTombstones() (map[events.TenantID]DestroyReport, map[events.TenantID][]DestroyReport, error) {
	tombs := make(map[events.TenantID]DestroyReport)
	hist := make(map[events.TenantID][]DestroyReport)
	dir := filepath.Join(ks.dir, tombstoneDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return tombs, hist, nil
	}
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, atomicfile.TmpPrefix) {
			os.Remove(filepath.Join(dir, name)) // left by a crash mid-write; no secret in it
			continue
		}
		base, isHist := strings.CutSuffix(name, historyExt)
		t, err := events.ParseTenantID(base)
		if err != nil || !e.Type().IsRegular() {
			ks.logger.Warn("ignoring a file in the tombstones directory that is not a tombstone", "file", name)
			continue
		}
		if isHist {
			h, err := ks.readHistory(t)
			if err != nil {
				return nil, nil, err
			}
			hist[t] = h
			continue
		}
		b, err := readSmallFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		var f tombstoneFile
		if err := json.Unmarshal(b, &f); err != nil || f.Format != tombstoneFormat || f.Tenant != string(t) {
			return nil, nil, fmt.Errorf("tombstone %s is not a %s file of tenant %s", filepath.Join(dir, name), tombstoneFormat, t)
		}
		tombs[t] = DestroyReport{Tenant: t, KeyIDs: f.KeyIDs, At: f.At}
	}
	return tombs, hist, nil
}

// readSmallFile reads a file of at most maxTombstoneSize bytes.
func readSmallFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxTombstoneSize {
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d", path, fi.Size(), maxTombstoneSize)
	}
	return os.ReadFile(path)
}
