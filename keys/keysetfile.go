package keys

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/tenantvault/tenantvault/events"
)

// The keyset file format: <dir>/<tenant>.keyset, its encoding and decoding,
// and the wrapping of the keysets it holds. What the keystore does with a
// file (when it reads, unwraps, checks or replaces one) is in keystore.go.

const (
	keysetExt  = ".keyset"
	fileFormat = "tenantvault-keyset-v1"
)

// keysetFile is the format of <dir>/<tenant>.keyset. Tenant is a readable
// hint only: what binds the file to its tenant is the associated data of the
// two wrapped keysets. Destroyed lists the AEAD keys removed by DestroyKey:
// their ids stay the tenant's (Owner), their material is gone.
type keysetFile struct {
	Format    string          `json:"format"`
	Tenant    string          `json:"tenant"`
	AEAD      json.RawMessage `json:"aead"` // Tink EncryptedKeyset, JSON
	PRF       json.RawMessage `json:"prf"`  // Tink EncryptedKeyset, JSON
	Destroyed []uint32        `json:"destroyed_key_ids,omitempty"`
	// DestroyedMAC authenticates Destroyed: the tenant's PRF of it (see
	// destroyedMAC), so that the ids cannot be edited in clear.
	DestroyedMAC []byte `json:"destroyed_key_ids_mac,omitempty"`
}

// destroyedMACKind is the PRF domain of keysetFile.DestroyedMAC.
const destroyedMACKind = "tenantvault/keys/destroyed-key-ids"

// destroyedMAC returns the tenant's PRF of the sorted destroyed key ids of
// k, or nil when there are none.
func destroyedMAC(k *tenantKeys) ([]byte, error) {
	if len(k.destroyed) == 0 {
		return nil, nil
	}
	in := binary.AppendUvarint(nil, uint64(len(destroyedMACKind)))
	in = append(in, destroyedMACKind...)
	for _, id := range k.destroyed {
		in = binary.BigEndian.AppendUint32(in, id)
	}
	return k.prf.ComputePrimaryPRF(in, HashSize)
}

// path returns the keyset file of tenant t, which must be valid.
func (ks *Keystore) path(t events.TenantID) string {
	return filepath.Join(ks.dir, string(t)+keysetExt)
}

// readKeysetFile reads tenant t's keyset file and its public part (key ids
// and statuses, from Tink's KeysetInfo), without unwrapping anything.
func (ks *Keystore) readKeysetFile(t events.TenantID) (*keysetFile, *keysetMeta, error) {
	path := ks.path(t)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return decodeKeysetFile(data, t, path)
}

// decodeKeysetFile decodes data, the keyset file of tenant t at path, and
// its public part, without unwrapping anything. It fails on a file of
// another format or another tenant, or whose AEAD keyset lists no key.
func decodeKeysetFile(data []byte, t events.TenantID, path string) (*keysetFile, *keysetMeta, error) {
	var f keysetFile
	if err := json.Unmarshal(data, &f); err != nil || f.Format != fileFormat {
		return nil, nil, fmt.Errorf("keyset %s is not a %s file", path, fileFormat)
	}
	if f.Tenant != string(t) {
		return nil, nil, fmt.Errorf("keyset %s holds the keys of tenant %.80q, not %s: a keyset cannot be moved to another tenant", path, f.Tenant, t)
	}
	ek, err := keyset.NewJSONReader(bytes.NewReader(f.AEAD)).ReadEncrypted()
	if err != nil || ek.GetKeysetInfo() == nil || len(ek.GetKeysetInfo().GetKeyInfo()) == 0 {
		return nil, nil, fmt.Errorf("keyset %s: the AEAD keyset has no key info", path)
	}
	return &f, metaFromInfo(ek.GetKeysetInfo(), f.Destroyed), nil
}

// unwrapKeyset unwraps one Tink EncryptedKeyset (JSON) with kek and ad.
func unwrapKeyset(raw json.RawMessage, kek masterKey, ad []byte, what string, t events.TenantID, path string) (*keyset.Handle, error) {
	rec := &errRecorder{masterKey: kek}
	h, err := keyset.ReadWithAssociatedData(keyset.NewJSONReader(bytes.NewReader(raw)), rec, ad)
	if err != nil {
		return nil, kmsError("unwrap", what, t, path, kek, rec.err)
	}
	return h, nil
}

// wrapKeyset wraps h with kek and ad, as a Tink EncryptedKeyset (JSON).
func wrapKeyset(h *keyset.Handle, kek masterKey, ad []byte, what string, t events.TenantID, path string) (json.RawMessage, error) {
	rec := &errRecorder{masterKey: kek}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewJSONWriter(&buf), rec, ad); err != nil {
		return nil, kmsError("wrap", what, t, path, kek, rec.err)
	}
	return buf.Bytes(), nil
}

// marshalKeyset wraps tenant t's keysets with kek, t bound as associated
// data, in the keyset file format.
func marshalKeyset(t events.TenantID, k *tenantKeys, kek masterKey, path string) ([]byte, error) {
	f := keysetFile{Format: fileFormat, Tenant: string(t), Destroyed: k.destroyed}
	var err error
	if f.DestroyedMAC, err = destroyedMAC(k); err != nil {
		return nil, err
	}
	if f.AEAD, err = wrapKeyset(k.aeadHandle, kek, []byte(t), "AEAD keyset", t, path); err != nil {
		return nil, err
	}
	if f.PRF, err = wrapKeyset(k.prfHandle, kek, []byte(t), "PRF keyset", t, path); err != nil {
		return nil, err
	}
	return f.encode()
}

// encode returns f in the keyset file format: indented JSON, one final
// newline.
func (f *keysetFile) encode() ([]byte, error) {
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
