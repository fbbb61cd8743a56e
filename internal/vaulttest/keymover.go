package vaulttest

import (
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
)

// KeyMover is the keystore as the vault's KeyMover: the one conversion
// between *keys.ImportedKeys and the interface the vault declares.
type KeyMover struct{ KS *keys.Keystore }

func (m KeyMover) ImportKey() ([]byte, string, error) {
	k, err := m.KS.ImportPublicKey()
	if err != nil {
		return nil, "", err
	}
	return k.Keyset, k.Fingerprint, nil
}

func (m KeyMover) ImportKeyFingerprint(pub []byte) (string, error) {
	return keys.ImportKeyFingerprint(pub)
}

func (m KeyMover) ExportKeyset(t events.TenantID, pub, context []byte) ([]byte, error) {
	return m.KS.ExportKeyset(t, pub, context)
}

func (m KeyMover) OpenImport(t events.TenantID, blob, context []byte) (vault.ImportedKeys, error) {
	k, err := m.KS.OpenImport(t, blob, context)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (m KeyMover) Install(k vault.ImportedKeys) (vault.Cipher, error) {
	ik, ok := k.(*keys.ImportedKeys)
	if !ok {
		return nil, events.Errorf(events.EINTERNAL, "imported keys of another keystore")
	}
	c, err := m.KS.Install(ik)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (m KeyMover) Discard(t events.TenantID) error { return m.KS.Discard(t) }

var (
	_ vault.KeyMover     = KeyMover{}
	_ vault.ImportedKeys = (*keys.ImportedKeys)(nil)
)
