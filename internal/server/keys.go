package server

import (
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
)

// The keystore and its ciphers are the vault's keys as they are, through
// the small interfaces the vault declares; vault.KeysOf only sees each
// *keys.TenantCipher as a vault.Cipher.
var (
	_ vault.TenantKeys[*keys.TenantCipher] = (*keys.Keystore)(nil)
	_ vault.KeyOwners                      = (*keys.Keystore)(nil)
	_ vault.KeyDestroyer                   = (*keys.Keystore)(nil)
	_ vault.KeyAdmin                       = (*keys.Keystore)(nil)
	_ vault.AuditHasher                    = (*keys.Keystore)(nil)
	_ vault.Cipher                         = (*keys.TenantCipher)(nil)
)
