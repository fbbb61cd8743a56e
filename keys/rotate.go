package keys

import (
	"fmt"
	"slices"

	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// KeyInfo describes one of a tenant's AEAD keys (an events.KeyInfo, so
// that packages which must not import keys name it too).
type KeyInfo = events.KeyInfo

// liveCipher returns the cipher of a tenant with keys, or the error that
// says why there is none. ks.mu must be held.
func (ks *Keystore) liveCipher(st *ksState, t events.TenantID) (*TenantCipher, error) {
	if st.closed {
		return nil, errClosed
	}
	if c, ok := st.ciphers[t]; ok {
		return c, nil
	}
	if _, gone := st.destroyed[t]; gone {
		return nil, fmt.Errorf("keys of tenant %s: %w", t, ErrDestroyed)
	}
	return nil, fmt.Errorf("keys of tenant %s: %w", t, ErrNotFound)
}

// Rotate adds a new AES-256-GCM key to tenant t's keyset and makes it the
// primary: from the moment Rotate returns every Encrypt, through any
// TenantCipher of t already handed out, uses it. Every older key keeps
// decrypting. The new key's id is unused by any tenant, now or before
// (regenerated on collision). The keyset file is replaced atomically; the
// previous file's content is overwritten before it is removed.
func (ks *Keystore) Rotate(t events.TenantID) (newPrimary uint32, err error) {
	err = ks.changeKeys(t, "rotate keys", func(st *ksState, k *tenantKeys) (*tenantKeys, error) {
		m := keyset.NewManagerFromHandle(k.aeadHandle)
		id, err := ks.addUniqueKey(m, st.owners, k)
		if err != nil {
			return nil, err
		}
		if err := m.SetPrimary(id); err != nil {
			return nil, err
		}
		h, err := m.Handle()
		if err != nil {
			return nil, err
		}
		newPrimary = id
		return newTenantKeys(h, k.prfHandle, k.destroyed)
	})
	if err != nil {
		return 0, err
	}
	return newPrimary, nil
}

// addUniqueKey adds a freshly generated key to m whose id no tenant owns
// and k does not hold, and returns its id.
func (ks *Keystore) addUniqueKey(m *keyset.Manager, owners map[uint32]events.TenantID, k *tenantKeys) (uint32, error) {
	for range maxKeyIDAttempts {
		h, err := ks.newAEADKeyset()
		if err != nil {
			return 0, fmt.Errorf("generate AEAD key: %w", err)
		}
		e, err := h.Primary()
		if err != nil {
			return 0, fmt.Errorf("generate AEAD key: %w", err)
		}
		id := e.KeyID()
		if _, taken := owners[id]; taken {
			continue
		}
		if _, held := k.status[id]; held || slices.Contains(k.destroyed, id) {
			continue
		}
		got, err := m.AddKey(e.Key())
		if err != nil {
			return 0, fmt.Errorf("add AEAD key: %w", err)
		}
		return got, nil
	}
	return 0, fmt.Errorf("generate AEAD key: no unused key id after %d attempts", maxKeyIDAttempts)
}

// Keys lists tenant t's AEAD keys, by id: enabled and disabled ones, and
// the destroyed ones (Status KeyDestroyed) whose ids still name t. It does
// not unwrap anything.
func (ks *Keystore) Keys(t events.TenantID) ([]KeyInfo, error) {
	if err := checkTenant(t); err != nil {
		return nil, err
	}
	c, err := ks.liveCipher(ks.state.Load(), t)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.meta.Load().keys), nil
}

// DisableKey disables key id of tenant t: it stays in the keyset, but
// ciphertexts it sealed fail to decrypt (ErrDecrypt and ErrKeyDisabled)
// until EnableKey. The primary cannot be disabled (ECONFLICT); a destroyed
// key fails with ErrKeyDestroyed; disabling a disabled key does nothing.
func (ks *Keystore) DisableKey(t events.TenantID, id uint32) error {
	return ks.setKeyStatus(t, id, KeyDisabled)
}

// EnableKey enables key id of tenant t again after DisableKey. Enabling an
// enabled key does nothing.
func (ks *Keystore) EnableKey(t events.TenantID, id uint32) error {
	return ks.setKeyStatus(t, id, KeyEnabled)
}

func (ks *Keystore) setKeyStatus(t events.TenantID, id uint32, to string) error {
	verb := map[string]string{KeyDisabled: "disable", KeyEnabled: "enable"}[to]
	return ks.changeKeys(t, fmt.Sprintf("%s key 0x%08x", verb, id), func(_ *ksState, k *tenantKeys) (*tenantKeys, error) {
		if err := k.checkRetire(id, to == KeyDisabled); err != nil {
			return nil, err
		}
		if k.status[id] == to {
			return nil, nil
		}
		m := keyset.NewManagerFromHandle(k.aeadHandle)
		var err error
		if to == KeyDisabled {
			err = m.Disable(id)
		} else {
			err = m.Enable(id)
		}
		if err != nil {
			return nil, err
		}
		h, err := m.Handle()
		if err != nil {
			return nil, err
		}
		return newTenantKeys(h, k.prfHandle, k.destroyed)
	})
}

// DestroyKey removes the material of key id from tenant t's keyset: the
// keyset file is replaced atomically and the previous file's content
// overwritten before it is removed. Ciphertexts it sealed no longer decrypt
// (ErrDecrypt and ErrKeyDestroyed); its id keeps naming t (Owner). The
// primary cannot be destroyed (ECONFLICT); destroying a destroyed key does
// nothing.
func (ks *Keystore) DestroyKey(t events.TenantID, id uint32) error {
	return ks.changeKeys(t, fmt.Sprintf("destroy key 0x%08x", id), func(_ *ksState, k *tenantKeys) (*tenantKeys, error) {
		if slices.Contains(k.destroyed, id) {
			return nil, nil
		}
		if err := k.checkRetire(id, true); err != nil {
			return nil, err
		}
		m := keyset.NewManagerFromHandle(k.aeadHandle)
		if err := m.Delete(id); err != nil {
			return nil, err
		}
		h, err := m.Handle()
		if err != nil {
			return nil, err
		}
		return newTenantKeys(h, k.prfHandle, append(slices.Clone(k.destroyed), id))
	})
}

// checkRetire checks that key id may change status: it is in the keyset,
// and (when retiring) not the primary.
func (k *tenantKeys) checkRetire(id uint32, retiring bool) error {
	switch {
	case slices.Contains(k.destroyed, id):
		return fmt.Errorf("key 0x%08x: %w", id, ErrKeyDestroyed)
	case k.status[id] == "":
		return events.Errorf(events.ENOTFOUND, "key 0x%08x is not one of the tenant's keys", id)
	case retiring && id == k.primary:
		return events.Errorf(events.ECONFLICT, "key 0x%08x is the primary key: rotate first", id)
	}
	return nil
}

// changeKeys applies change to tenant t's current keys and, when it returns
// new ones, writes them and puts them in place. ks.mu is held throughout.
func (ks *Keystore) changeKeys(t events.TenantID, op string, change func(*ksState, *tenantKeys) (*tenantKeys, error)) error {
	if err := checkTenant(t); err != nil {
		return err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	st := ks.state.Load()
	c, err := ks.liveCipher(st, t)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	k, err := c.current()
	if err != nil {
		return fmt.Errorf("%s of tenant %s: %w", op, t, err)
	}
	nk, err := change(st, k)
	if err != nil {
		return fmt.Errorf("%s of tenant %s: %w", op, t, err)
	}
	if nk == nil {
		return nil // nothing to change
	}
	kek, err := ks.master.kekFor(string(t), false)
	if err != nil {
		return fmt.Errorf("%s of tenant %s: %w", op, t, err)
	}
	data, err := marshalKeyset(t, nk, kek, ks.path(t))
	if err != nil {
		return fmt.Errorf("%s of tenant %s: %w", op, t, err)
	}
	if err := atomicfile.WriteFile(ks.path(t), data, atomicfile.Options{ShredReplaced: true}); err != nil {
		return fmt.Errorf("%s of tenant %s: %w", op, t, err)
	}
	ks.install(c, nk)
	ks.publishCipher(st, c)
	return nil
}
