package vault

import (
	"errors"

	"github.com/tenantvault/tenantvault/events"
)

// Cipher is what the vault needs from one tenant's keys. *keys.TenantCipher
// satisfies it; the vault never sees the key bytes behind it.
type Cipher interface {
	Encrypt(plaintext, associatedData []byte) ([]byte, error)
	Decrypt(ciphertext, associatedData []byte) ([]byte, error)
	Hash(kind string, data []byte) []byte
	PrimaryKeyID() uint32
	KeyIDOf(ciphertext []byte) (uint32, bool)
}

// TenantKeys makes and finds tenants' ciphers: what creating a tenant, a
// session, ingest and a rewrap need. C is the keystore's own cipher type,
// so that a keystore whose methods return its concrete cipher satisfies it
// as it is: *keys.Keystore is a TenantKeys[*keys.TenantCipher]. The vault
// holds a TenantKeys[Cipher] ([Keys].Ciphers), which [KeysOf] makes of it.
type TenantKeys[C Cipher] interface {
	// Create makes the keys of a new tenant.
	Create(t events.TenantID) (C, error)
	// Recreate makes fresh keys for a shredded tenant id.
	Recreate(t events.TenantID) (C, error)
	// Cipher returns the cipher of a tenant with keys.
	Cipher(t events.TenantID) (C, error)
	// Discard removes the keys of a tenant whose create failed, as if
	// they had never been made (no tombstone); nothing was sealed with
	// them. A tenant without keys is not an error.
	Discard(t events.TenantID) error
}

// Keys is every keys operation the vault uses, each through the small
// interface of the code that uses it. [KeysOf] fills it from a keystore
// that satisfies them all; a test may replace one.
type Keys struct {
	Ciphers   TenantKeys[Cipher] // tenant create, sessions, ingest, rewrap
	Owners    KeyOwners          // sessions: who owns a foreign key
	Destroyer KeyDestroyer       // shred
	Admin     KeyAdmin           // key rotation and retirement
	Hasher    AuditHasher        // the audit log's stand-ins for producer text
}

// AuditHasher makes the vault's keyed hash (an HMAC with a key of the
// vault's own, not a tenant's) that an audit record holds in place of
// producer-supplied text that may be personal data: a tenant an event
// claims that is not a tenant of the vault, the topic of an unknown
// tenant. *keys.Keystore satisfies it.
type AuditHasher interface {
	AuditHash(kind string, data []byte) ([]byte, error)
}

// KeysOf is the Keys of keystore k (a *keys.Keystore, whose ciphers are
// *keys.TenantCipher): k itself for the owners, the destroyer, the admin
// and the hasher, and for the ciphers k with each of its ciphers seen as a Cipher.
func KeysOf[C Cipher](k interface {
	TenantKeys[C]
	KeyOwners
	KeyDestroyer
	KeyAdmin
	AuditHasher
}) Keys {
	return Keys{Ciphers: ciphersOf[C]{k}, Owners: k, Destroyer: k, Admin: k, Hasher: k}
}

// ciphersOf is a TenantKeys[C] seen as a TenantKeys[Cipher]. A Go method
// returning C does not satisfy one returning Cipher, whatever C is: this is
// the one conversion between the two.
type ciphersOf[C Cipher] struct{ k TenantKeys[C] }

func (c ciphersOf[C]) Create(t events.TenantID) (Cipher, error)   { return asCipher(c.k.Create(t)) }
func (c ciphersOf[C]) Recreate(t events.TenantID) (Cipher, error) { return asCipher(c.k.Recreate(t)) }
func (c ciphersOf[C]) Cipher(t events.TenantID) (Cipher, error)   { return asCipher(c.k.Cipher(t)) }
func (c ciphersOf[C]) Discard(t events.TenantID) error            { return c.k.Discard(t) }

// asCipher returns c as a Cipher, or a nil Cipher with err: a nil
// *keys.TenantCipher must not become a non-nil interface.
func asCipher[C Cipher](c C, err error) (Cipher, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}

// validate names each missing part of k.
func (k Keys) validate() []error {
	if k == (Keys{}) {
		return []error{errors.New("vault: Keys is required (vault.KeysOf(keystore))")}
	}
	var errs []error
	if k.Ciphers == nil {
		errs = append(errs, errors.New("vault: Keys.Ciphers is required"))
	}
	if k.Owners == nil {
		errs = append(errs, errors.New("vault: Keys.Owners is required"))
	}
	if k.Destroyer == nil {
		errs = append(errs, errors.New("vault: Keys.Destroyer is required"))
	}
	if k.Admin == nil {
		errs = append(errs, errors.New("vault: Keys.Admin is required"))
	}
	if k.Hasher == nil {
		errs = append(errs, errors.New("vault: Keys.Hasher is required"))
	}
	return errs
}
