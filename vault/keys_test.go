package vault_test

import (
	"errors"
	"testing"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
)

// KeysOf hands the keystore itself to the owners, destroyer and admin, and
// its ciphers as vault Ciphers; a failed call yields a nil Cipher, not a
// nil *keys.TenantCipher inside a non-nil interface.
func TestKeysOf(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	k := vault.KeysOf(tv.h.Keys)
	if k.Owners != vault.KeyOwners(tv.h.Keys) || k.Destroyer != vault.KeyDestroyer(tv.h.Keys) || k.Admin != vault.KeyAdmin(tv.h.Keys) || k.Hasher != vault.AuditHasher(tv.h.Keys) {
		t.Errorf("KeysOf(ks) = %+v, want ks as Owners, Destroyer, Admin and Hasher", k)
	}
	c, err := k.Ciphers.Cipher("acme")
	if err != nil || c != vault.Cipher(tv.cipher(t, "acme")) {
		t.Errorf("Ciphers.Cipher(acme) = %v, %v, want the keystore's cipher of acme", c, err)
	}
	for _, tt := range []struct {
		name string
		call func(events.TenantID) (vault.Cipher, error)
		t    events.TenantID
		want error
	}{
		{"Cipher", k.Ciphers.Cipher, "nobody", keys.ErrNotFound},
		{"Create", k.Ciphers.Create, "acme", keys.ErrExists},
		{"Recreate", k.Ciphers.Recreate, "nobody", keys.ErrNotFound},
	} {
		c, err := tt.call(tt.t)
		if c != nil || !errors.Is(err, tt.want) {
			t.Errorf("Ciphers.%s(%s) = %#v, %v, want a nil Cipher and %v", tt.name, tt.t, c, err, tt.want)
		}
	}
}
