package server

import (
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
)

// keyMover is the keystore as the vault's KeyMover: the one conversion
// between *keys.ImportedKeys and the interface the vault declares.
type keyMover struct{ ks *keys.Keystore }

func (m keyMover) ImportKey() ([]byte, string, error) {
	k, err := m.ks.ImportPublicKey()
	if err != nil {
		return nil, "", err
	}
	return k.Keyset, k.Fingerprint, nil
}

func (m keyMover) ImportKeyFingerprint(pub []byte) (string, error) {
	return keys.ImportKeyFingerprint(pub)
}

func (m keyMover) ExportKeyset(t events.TenantID, pub, context []byte) ([]byte, error) {
	return m.ks.ExportKeyset(t, pub, context)
}

func (m keyMover) OpenImport(t events.TenantID, blob, context []byte) (vault.ImportedKeys, error) {
	k, err := m.ks.OpenImport(t, blob, context)
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (m keyMover) Install(k vault.ImportedKeys) (vault.Cipher, error) {
	ik, ok := k.(*keys.ImportedKeys)
	if !ok {
		return nil, events.Errorf(events.EINTERNAL, "imported keys of another keystore")
	}
	c, err := m.ks.Install(ik)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (m keyMover) Discard(t events.TenantID) error { return m.ks.Discard(t) }

var (
	_ vault.KeyMover     = keyMover{}
	_ vault.ImportedKeys = (*keys.ImportedKeys)(nil)
)
