package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/tenantvault/tenantvault/events"
)

// HashSize is the length in bytes of a [TenantCipher.Hash] output.
const HashSize = 32

// Tink's ciphertext prefix: a start byte, then the big-endian key id.
const (
	tinkStartByte  = 0x01
	tinkPrefixSize = 5
)

// ErrDecrypt is returned by [TenantCipher.Decrypt] for any failure other
// than a foreign key id: wrong associated data, tampering, truncation, not a
// Tink ciphertext. It says nothing more on purpose.
var ErrDecrypt = errors.New("keys: decryption failed")

// errNoKeys is returned by a TenantCipher that holds no keys: its zero value.
var errNoKeys = errors.New("keys: TenantCipher holds no keys; get one from a Keystore")

// errForeignKey is what a *ForeignKeyError unwraps to, so that
// events.ErrorCode maps it to EFORBIDDEN with a message that names no tenant.
var errForeignKey = &events.Error{Code: events.EFORBIDDEN, Message: "the data was sealed with another tenant's key"}

// ForeignKeyError is returned by [TenantCipher.Decrypt] for a ciphertext
// whose key id is not in the tenant's keyset. No decryption was attempted.
// It is evidence for the audit log: a read crossed a tenant key boundary.
type ForeignKeyError struct {
	KeyID  uint32          // the key id in the ciphertext's prefix
	Tenant events.TenantID // the tenant whose cipher was asked to decrypt
	Owner  events.TenantID // the key's owner per the keystore index; "" if unknown
}

func (e *ForeignKeyError) Error() string {
	owner := "unknown"
	if e.Owner != "" {
		owner = "tenant " + string(e.Owner)
	}
	return fmt.Sprintf("keys: key id 0x%08x is not in the keyset of tenant %s (owner: %s)", e.KeyID, e.Tenant, owner)
}

// ForeignKeyID returns KeyID. It lets callers that must not import keys
// (vault declares interface{ error; ForeignKeyID() uint32 }) detect the error.
func (e *ForeignKeyError) ForeignKeyID() uint32 { return e.KeyID }

// Unwrap returns an *events.Error with code EFORBIDDEN.
func (e *ForeignKeyError) Unwrap() error { return errForeignKey }

// KeyIDOf returns the key id in the 5-byte Tink prefix of ciphertext (0x01
// then the big-endian key id), and false when ciphertext has no such prefix.
func KeyIDOf(ciphertext []byte) (uint32, bool) {
	if len(ciphertext) < tinkPrefixSize || ciphertext[0] != tinkStartByte {
		return 0, false
	}
	return binary.BigEndian.Uint32(ciphertext[1:tinkPrefixSize]), true
}

// TenantCipher seals and opens one tenant's data with the tenant's keys, and
// computes the tenant's keyed hashes. It is safe for concurrent use. It never
// exposes key material; it prints as TenantCipher(<tenant>, primary=0x..., REDACTED).
type TenantCipher struct {
	tenant events.TenantID
	ks     *Keystore // the key-id index, for ForeignKeyError.Owner
	// keys is replaced whole, never mutated: rotation (a later issue) swaps
	// in a new keyset under callers that already hold the cipher.
	keys atomic.Pointer[tenantKeys]
}

// tenantKeys is one immutable generation of a tenant's unwrapped keys.
type tenantKeys struct {
	aeadHandle *keyset.Handle
	prfHandle  *keyset.Handle
	aead       tink.AEAD
	prf        *prf.Set
	primary    uint32              // primary AEAD key id
	keyIDs     map[uint32]struct{} // every AEAD key id in the keyset
}

// newTenantKeys builds the primitives of one tenant's keysets and checks
// that they are what this package writes: Tink-prefixed AEAD keys, and a PRF
// that yields HashSize bytes.
func newTenantKeys(aeadHandle, prfHandle *keyset.Handle) (*tenantKeys, error) {
	info := aeadHandle.KeysetInfo()
	ids := make(map[uint32]struct{}, len(info.GetKeyInfo()))
	for _, ki := range info.GetKeyInfo() {
		if ki.GetOutputPrefixType() != tinkpb.OutputPrefixType_TINK {
			return nil, fmt.Errorf("AEAD key 0x%08x has output prefix %s, want TINK", ki.GetKeyId(), ki.GetOutputPrefixType())
		}
		ids[ki.GetKeyId()] = struct{}{}
	}
	a, err := aead.New(aeadHandle)
	if err != nil {
		return nil, fmt.Errorf("AEAD primitive: %w", err)
	}
	p, err := prf.NewPRFSet(prfHandle)
	if err != nil {
		return nil, fmt.Errorf("PRF primitive: %w", err)
	}
	// Hash has no error result: prove here, once, that it cannot fail.
	if out, err := p.ComputePrimaryPRF(nil, HashSize); err != nil || len(out) != HashSize {
		return nil, fmt.Errorf("PRF primitive does not yield %d bytes", HashSize)
	}
	return &tenantKeys{
		aeadHandle: aeadHandle,
		prfHandle:  prfHandle,
		aead:       a,
		prf:        p,
		primary:    info.GetPrimaryKeyId(),
		keyIDs:     ids,
	}, nil
}

// load returns c's current keys, nil for a zero TenantCipher (and, once
// Destroy exists, for a destroyed tenant).
func (c *TenantCipher) load() *tenantKeys {
	if c == nil {
		return nil
	}
	return c.keys.Load()
}

// Tenant returns the tenant whose keys c holds.
func (c *TenantCipher) Tenant() events.TenantID { return c.tenant }

// PrimaryKeyID returns the id of the key that Encrypt uses; it is the key id
// in the prefix of every new ciphertext.
func (c *TenantCipher) PrimaryKeyID() uint32 {
	if k := c.load(); k != nil {
		return k.primary
	}
	return 0
}

// Encrypt seals plaintext with the tenant's primary AES-256-GCM key, binding
// associatedData. The ciphertext starts with the 5-byte Tink prefix (0x01,
// then the big-endian key id; see [KeyIDOf]).
func (c *TenantCipher) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	k := c.load()
	if k == nil {
		return nil, errNoKeys
	}
	ct, err := k.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("encrypt for tenant %s: %w", c.tenant, err)
	}
	return ct, nil
}

// Decrypt opens a ciphertext made by Encrypt with the same associatedData.
// A ciphertext whose key id is not in this tenant's keyset is not tried: the
// error is a *ForeignKeyError. Every other failure is ErrDecrypt.
func (c *TenantCipher) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	id, ok := KeyIDOf(ciphertext)
	if !ok {
		return nil, ErrDecrypt
	}
	k := c.load()
	if k == nil {
		return nil, ErrDecrypt
	}
	if _, mine := k.keyIDs[id]; !mine {
		owner, _ := c.ks.Owner(id)
		return nil, &ForeignKeyError{KeyID: id, Tenant: c.tenant, Owner: owner}
	}
	pt, err := k.aead.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// Hash returns the tenant's keyed hash (Tink PRF, HMAC-SHA256) of data in
// the domain kind, HashSize bytes. It is deterministic for a tenant, differs
// across tenants and across kinds (e.g. "stream", "event-id"), and reveals
// nothing about data without the tenant's key: use it to store identifiers
// that may be personal data (stream ids) not in clear.
//
// The PRF input is uvarint(len(kind)) || kind || data. It is part of the
// stored format: changing it orphans every stored hash.
//
// Hash does not fail: the PRF is checked when the keys are loaded. Should it
// fail anyway (a bug), Hash logs an error and returns nil.
func (c *TenantCipher) Hash(kind string, data []byte) []byte {
	k := c.load()
	if k == nil {
		return nil
	}
	in := make([]byte, 0, binary.MaxVarintLen64+len(kind)+len(data))
	in = binary.AppendUvarint(in, uint64(len(kind)))
	in = append(in, kind...)
	in = append(in, data...)
	out, err := k.prf.ComputePrimaryPRF(in, HashSize)
	if err != nil {
		c.ks.logger.Error("keyed hash failed; this is a bug", "tenant", c.tenant, "kind", kind, "err", err)
		return nil
	}
	return out
}

// String returns a redacted description: tenant and primary key id only.
func (c *TenantCipher) String() string {
	if c == nil {
		return "TenantCipher(nil)"
	}
	return fmt.Sprintf("TenantCipher(%s, primary=0x%08x, REDACTED)", c.tenant, c.PrimaryKeyID())
}

// GoString keeps %#v redacted.
func (c *TenantCipher) GoString() string { return c.String() }

// LogValue keeps slog output redacted, whatever the handler.
func (c *TenantCipher) LogValue() slog.Value { return slog.StringValue(c.String()) }
