package keysvault

import (
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
)

// Keys is a keys.Keystore seen as vault.Keys.
type Keys struct{ KS *keys.Keystore }

// Cipher is a keys.TenantCipher seen as vault.Cipher (it adds the key-id
// lookup of ciphertexts).
type Cipher struct{ *keys.TenantCipher }

// KeyIDOf names the key a ciphertext was sealed with.
func (Cipher) KeyIDOf(ciphertext []byte) (uint32, bool) { return keys.KeyIDOf(ciphertext) }

var (
	_ vault.Keys   = Keys{}
	_ vault.Cipher = Cipher{}
)

func wrap(c *keys.TenantCipher, err error) (vault.Cipher, error) {
	if err != nil {
		return nil, err
	}
	return Cipher{c}, nil
}

// Create implements vault.Keys.
func (k Keys) Create(t events.TenantID) (vault.Cipher, error) { return wrap(k.KS.Create(t)) }

// Cipher implements vault.Keys.
func (k Keys) Cipher(t events.TenantID) (vault.Cipher, error) { return wrap(k.KS.Cipher(t)) }

// Recreate implements vault.Keys.
func (k Keys) Recreate(t events.TenantID) (vault.Cipher, error) { return wrap(k.KS.Recreate(t)) }

// Owner implements vault.Keys.
func (k Keys) Owner(keyID uint32) (events.TenantID, bool) { return k.KS.Owner(keyID) }

// Destroy implements vault.Keys.
func (k Keys) Destroy(t events.TenantID) ([]uint32, error) {
	rep, err := k.KS.Destroy(t)
	return rep.KeyIDs, err
}

// Rotate implements vault.Keys.
func (k Keys) Rotate(t events.TenantID) (uint32, error) { return k.KS.Rotate(t) }

// Keys implements vault.Keys.
func (k Keys) Keys(t events.TenantID) ([]vault.KeyInfo, error) {
	ks, err := k.KS.Keys(t)
	if err != nil {
		return nil, err
	}
	out := make([]vault.KeyInfo, len(ks))
	for i, ki := range ks {
		out[i] = vault.KeyInfo{ID: ki.ID, Primary: ki.Primary, Status: ki.Status}
	}
	return out, nil
}

// DisableKey implements vault.Keys.
func (k Keys) DisableKey(t events.TenantID, id uint32) error { return k.KS.DisableKey(t, id) }

// DestroyKey implements vault.Keys.
func (k Keys) DestroyKey(t events.TenantID, id uint32) error { return k.KS.DestroyKey(t, id) }
