package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// Replicas: in a cluster every node holds every tenant's keyset file, as
// written by the node that created or changed it, and shares its master
// key — a KMS key per tenant ([TenantPlaceholder] in the URI), so that
// destroying that one key shreds the tenant on every node and in every copy
// of the file, including those a compacted Kafka topic may keep for a while.
// WrappedKeyset gives the file to publish; InstallWrapped installs one
// received from another node. Neither holds or logs key material in clear.

// ErrSharedMaster: a keyset is not replicated under a master key that is
// not per tenant ({tenant} in its URI): destroying a tenant's keys would
// then not reach the copies other nodes, or a Kafka topic, keep.
var ErrSharedMaster error = &events.Error{Code: events.EINVALID, Message: "replicating keysets needs a per-tenant master key ({tenant} in the master key URI)"}

// ErrStaleKeyset: a keyset received from another node lacks keys this
// node's keyset of the tenant has (an older copy); it is not installed.
var ErrStaleKeyset error = &events.Error{Code: events.ECONFLICT, Message: "the keyset lacks keys of the tenant's keyset here: an older copy"}

// PerTenantMaster reports whether each tenant's keyset is wrapped by a
// master key of its own ({tenant} in the master key URI).
func (ks *Keystore) PerTenantMaster() bool {
	ks.masterMu.RLock()
	defer ks.masterMu.RUnlock()
	return ks.master.templated()
}

// WrappedKeyset returns tenant t's keyset file as stored: its keysets
// wrapped by t's master key, t bound as associated data. It holds no key
// in clear. It fails with ErrSharedMaster unless the master key is per
// tenant, and with ErrDestroyed or ErrUnknown as Cipher does.
func (ks *Keystore) WrappedKeyset(t events.TenantID) ([]byte, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	if !ks.PerTenantMaster() {
		return nil, ErrSharedMaster
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if _, err := ks.liveCipher(ks.state.Load(), t); err != nil {
		return nil, err
	}
	return os.ReadFile(ks.path(t))
}

// InstallWrapped installs data, tenant t's keyset file as another node
// wrote it (WrappedKeyset there), as t's keys here. Before it writes
// anything it checks the file's format and tenant, unwraps both keysets
// with t's master key (so a file that master key does not open, or that
// was tampered with, is refused with a *MasterKeyError or an error saying
// so), and checks that no key id is another tenant's here. A file equal to
// the one here changes nothing (changed false). A different one replaces
// it only when it keeps every key of the one here (a rotation or a key
// retired elsewhere); an older copy fails with ErrStaleKeyset. A tenant
// whose keys were destroyed here fails with ErrDestroyed: a shred is never
// undone by a copy.
func (ks *Keystore) InstallWrapped(t events.TenantID, data []byte) (c *TenantCipher, changed bool, err error) {
	if err := checkTenant(t); err != nil {
		return nil, false, err
	}
	if !ks.PerTenantMaster() {
		return nil, false, ErrSharedMaster
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	if st.closed {
		return nil, false, errClosed
	}
	if _, ok := st.destroyed[t]; ok {
		return nil, false, fmt.Errorf("install keys of tenant %s: %w", t, ErrDestroyed)
	}
	path := ks.path(t)
	f, meta, err := decodeKeysetFile(data, t, "the keyset received for "+string(t))
	if err != nil {
		return nil, false, err
	}
	ks.masterMu.RLock()
	kek, err := ks.master.kekFor(string(t), false)
	ks.masterMu.RUnlock()
	if err != nil {
		return nil, false, fmt.Errorf("install keys of tenant %s: %w", t, err)
	}
	k, err := openKeysetFile(t, f, meta, kek, "the keyset received for "+string(t))
	if err != nil {
		return nil, false, err
	}
	for _, id := range meta.ids() {
		if other, taken := st.owners[id]; taken && other != t {
			return nil, false, events.Errorf(events.ECONFLICT, "install keys of tenant %s: key id 0x%08x is tenant %s's", t, id, other)
		}
	}
	old, have := st.ciphers[t]
	if have {
		cur, err := os.ReadFile(path)
		if err != nil {
			return nil, false, err
		}
		if bytes.Equal(cur, data) {
			return old, false, nil
		}
		for _, id := range old.meta.Load().ids() {
			if !meta.has(id) {
				return nil, false, fmt.Errorf("install keys of tenant %s (key id 0x%08x missing): %w", t, id, ErrStaleKeyset)
			}
		}
	}
	opts := atomicfile.Options{NoClobber: !have, ShredReplaced: have}
	if err := atomicfile.WriteFile(path, data, opts); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, false, fmt.Errorf("%s exists: %w", path, ErrExists)
		}
		return nil, false, err
	}
	c = old
	if c == nil {
		c = ks.newCipher(t, meta)
	}
	ks.install(c, k)
	ks.publishCipher(st, c)
	return c, true, nil
}
