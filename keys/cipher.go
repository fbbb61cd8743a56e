package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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

// Key statuses in [KeyInfo] (those of events).
const (
	KeyEnabled   = events.KeyEnabled   // decrypts; the primary also encrypts
	KeyDisabled  = events.KeyDisabled  // kept, but decrypts nothing until enabled again
	KeyDestroyed = events.KeyDestroyed // its material is gone; its id still names its tenant
)

// ErrDecrypt is returned by [TenantCipher.Decrypt] for any failure other
// than a foreign key id: wrong associated data, tampering, truncation, not a
// Tink ciphertext. It says nothing more on purpose. A ciphertext of a
// disabled or destroyed key of the tenant fails with an error that is both
// ErrDecrypt and ErrKeyDisabled or ErrKeyDestroyed.
var ErrDecrypt = errors.New("keys: decryption failed")

var (
	// ErrKeyDisabled: the ciphertext's key is one of the tenant's, disabled.
	ErrKeyDisabled error = &events.Error{Code: events.EUNAVAILABLE, Message: "the data was sealed with a disabled key"}
	// ErrKeyDestroyed: the ciphertext's key is one of the tenant's,
	// destroyed (DestroyKey, or a shred before a Recreate).
	ErrKeyDestroyed error = &events.Error{Code: events.EGONE, Message: "the data was sealed with a destroyed key"}
)

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

// KeyIDOf is [KeyIDOf] as a method, so that a TenantCipher names the key of
// a ciphertext for callers that know it only through an interface (the
// vault's Cipher, the projections' KeyedCipher). It needs no keys: it reads
// the prefix, and works on a destroyed tenant's cipher too.
func (c *TenantCipher) KeyIDOf(ciphertext []byte) (uint32, bool) { return KeyIDOf(ciphertext) }

// TenantCipher seals and opens one tenant's data with the tenant's keys, and
// computes the tenant's keyed hashes. It is safe for concurrent use. It never
// exposes key material; it prints as TenantCipher(<tenant>, primary=0x..., REDACTED).
//
// A Keystore hands out one TenantCipher per tenant; it follows the
// keystore: after Rotate it encrypts with the new primary at once; after
// its keys left the cache it unwraps them again on next use (and may then
// fail with a *MasterKeyError); after Destroy it fails with ErrDestroyed,
// for good (a Recreate makes a new TenantCipher).
type TenantCipher struct {
	tenant events.TenantID
	ks     *Keystore
	// slot holds the unwrapped keys, replaced whole, never mutated:
	// rotation swaps in a new generation, the cache swaps in an empty slot,
	// Destroy swaps in destroyedSlot, which nothing ever replaces.
	slot     atomic.Pointer[slot]
	meta     atomic.Pointer[keysetMeta] // public part: ids, statuses, primary
	lastUsed atomic.Int64               // ks.now() of the last use, for the LRU
	loadMu   sync.Mutex                 // one unwrap at a time per tenant
}

// tenantKeys is one immutable generation of a tenant's unwrapped keys.
type tenantKeys struct {
	aeadHandle *keyset.Handle
	prfHandle  *keyset.Handle
	aead       tink.AEAD
	prf        *prf.Set
	primary    uint32            // primary AEAD key id
	status     map[uint32]string // every AEAD key in the keyset: KeyEnabled or KeyDisabled
	destroyed  []uint32          // AEAD keys removed by DestroyKey, sorted
}

// newTenantKeys builds the primitives of one tenant's keysets and checks
// that they are what this package writes: Tink-prefixed AEAD keys, and a PRF
// that yields HashSize bytes.
func newTenantKeys(aeadHandle, prfHandle *keyset.Handle, destroyed []uint32) (*tenantKeys, error) {
	info := aeadHandle.KeysetInfo()
	status := make(map[uint32]string, len(info.GetKeyInfo()))
	for _, ki := range info.GetKeyInfo() {
		if ki.GetOutputPrefixType() != tinkpb.OutputPrefixType_TINK {
			return nil, fmt.Errorf("AEAD key 0x%08x has output prefix %s, want TINK", ki.GetKeyId(), ki.GetOutputPrefixType())
		}
		s, err := statusOf(ki.GetStatus())
		if err != nil {
			return nil, fmt.Errorf("AEAD key 0x%08x: %w", ki.GetKeyId(), err)
		}
		status[ki.GetKeyId()] = s
	}
	if status[info.GetPrimaryKeyId()] != KeyEnabled {
		return nil, fmt.Errorf("AEAD primary key 0x%08x is not in the keyset or not enabled", info.GetPrimaryKeyId())
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
	d := slices.Clone(destroyed)
	slices.Sort(d)
	return &tenantKeys{
		aeadHandle: aeadHandle,
		prfHandle:  prfHandle,
		aead:       a,
		prf:        p,
		primary:    info.GetPrimaryKeyId(),
		status:     status,
		destroyed:  slices.Compact(d),
	}, nil
}

func statusOf(s tinkpb.KeyStatusType) (string, error) {
	switch s {
	case tinkpb.KeyStatusType_ENABLED:
		return KeyEnabled, nil
	case tinkpb.KeyStatusType_DISABLED:
		return KeyDisabled, nil
	}
	return "", fmt.Errorf("unexpected key status %s", s)
}

// meta returns the public part of k.
func (k *tenantKeys) meta() *keysetMeta {
	m := &keysetMeta{primary: k.primary}
	for id, s := range k.status {
		m.keys = append(m.keys, KeyInfo{ID: id, Primary: id == k.primary, Status: s})
	}
	for _, id := range k.destroyed {
		m.keys = append(m.keys, KeyInfo{ID: id, Status: KeyDestroyed})
	}
	m.sort()
	return m
}

// keysetMeta is the public part of a tenant's AEAD keyset: what Keys lists
// and the key-id index holds, known without unwrapping.
type keysetMeta struct {
	primary uint32
	keys    []KeyInfo // sorted by id; destroyed keys included
}

func metaFromInfo(info *tinkpb.KeysetInfo, destroyed []uint32) *keysetMeta {
	m := &keysetMeta{primary: info.GetPrimaryKeyId()}
	for _, ki := range info.GetKeyInfo() {
		s, err := statusOf(ki.GetStatus())
		if err != nil {
			s = ki.GetStatus().String()
		}
		m.keys = append(m.keys, KeyInfo{ID: ki.GetKeyId(), Primary: ki.GetKeyId() == m.primary, Status: s})
	}
	for _, id := range destroyed {
		if !slices.ContainsFunc(m.keys, func(k KeyInfo) bool { return k.ID == id }) {
			m.keys = append(m.keys, KeyInfo{ID: id, Status: KeyDestroyed})
		}
	}
	m.sort()
	return m
}

func (m *keysetMeta) sort() {
	slices.SortFunc(m.keys, func(a, b KeyInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

func (m *keysetMeta) equal(o *keysetMeta) bool {
	return m.primary == o.primary && slices.Equal(m.keys, o.keys)
}

// ids returns every key id of m, destroyed ones included, sorted.
func (m *keysetMeta) ids() []uint32 {
	out := make([]uint32, len(m.keys))
	for i, k := range m.keys {
		out[i] = k.ID
	}
	return out
}

// overlaps reports whether m holds one of ids.
func (m *keysetMeta) overlaps(ids []uint32) bool {
	return slices.ContainsFunc(m.keys, func(k KeyInfo) bool { return slices.Contains(ids, k.ID) })
}

// Tenant returns the tenant whose keys c holds.
func (c *TenantCipher) Tenant() events.TenantID { return c.tenant }

// PrimaryKeyID returns the id of the key that Encrypt uses; it is the key id
// in the prefix of every new ciphertext. It is 0 for a destroyed tenant and
// a zero TenantCipher.
func (c *TenantCipher) PrimaryKeyID() uint32 {
	if c == nil || c.slot.Load() == destroyedSlot {
		return 0
	}
	if m := c.meta.Load(); m != nil {
		return m.primary
	}
	return 0
}

// Encrypt seals plaintext with the tenant's primary AES-256-GCM key, binding
// associatedData. The ciphertext starts with the 5-byte Tink prefix (0x01,
// then the big-endian key id; see [KeyIDOf]). It fails with ErrDestroyed
// once the tenant is shredded, and with a *MasterKeyError when its keys had
// to be unwrapped again and could not be.
func (c *TenantCipher) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	k, err := c.current()
	if err != nil {
		return nil, err
	}
	ct, err := k.aead.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("encrypt for tenant %s: %w", c.tenant, err)
	}
	return ct, nil
}

// Decrypt opens a ciphertext made by Encrypt with the same associatedData.
// A ciphertext whose key id is not in this tenant's keyset is not tried: the
// error is a *ForeignKeyError, unless the id is one of the tenant's own
// destroyed keys (ErrDecrypt and ErrKeyDestroyed). A disabled key's
// ciphertext fails with ErrDecrypt and ErrKeyDisabled. Once the tenant is
// shredded every call fails with ErrDestroyed; when its keys had to be
// unwrapped again and could not be, with a *MasterKeyError. Every other
// failure is ErrDecrypt.
func (c *TenantCipher) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	id, ok := KeyIDOf(ciphertext)
	if !ok {
		return nil, ErrDecrypt
	}
	k, err := c.current()
	if errors.Is(err, errNoKeys) {
		return nil, ErrDecrypt
	}
	if err != nil {
		return nil, err
	}
	switch k.status[id] {
	case "":
		owner, _ := c.ks.Owner(id)
		if owner == c.tenant {
			return nil, fmt.Errorf("%w: key id 0x%08x of tenant %s: %w", ErrDecrypt, id, c.tenant, ErrKeyDestroyed)
		}
		return nil, &ForeignKeyError{KeyID: id, Tenant: c.tenant, Owner: owner}
	case KeyDisabled:
		return nil, fmt.Errorf("%w: key id 0x%08x of tenant %s: %w", ErrDecrypt, id, c.tenant, ErrKeyDisabled)
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
// Hash returns nil when the keys are gone (destroyed tenant, closed
// keystore) or could not be unwrapped again (logged); [TenantCipher.TryHash]
// returns the error instead.
func (c *TenantCipher) Hash(kind string, data []byte) []byte {
	out, err := c.TryHash(kind, data)
	if err != nil && c != nil && c.ks != nil && !errors.Is(err, ErrDestroyed) && !errors.Is(err, errClosed) {
		c.ks.logger.Error("keyed hash failed", "tenant", c.tenant, "kind", kind, "err", err)
	}
	return out
}

// TryHash is Hash with the error: ErrDestroyed, a *MasterKeyError, ...
func (c *TenantCipher) TryHash(kind string, data []byte) ([]byte, error) {
	k, err := c.current()
	if err != nil {
		return nil, err
	}
	in := make([]byte, 0, binary.MaxVarintLen64+len(kind)+len(data))
	in = binary.AppendUvarint(in, uint64(len(kind)))
	in = append(in, kind...)
	in = append(in, data...)
	out, err := k.prf.ComputePrimaryPRF(in, HashSize)
	if err != nil {
		return nil, fmt.Errorf("keyed hash for tenant %s: %w", c.tenant, err)
	}
	return out, nil
}

// String returns a redacted description: tenant and primary key id only.
func (c *TenantCipher) String() string {
	if c == nil {
		return "TenantCipher(nil)"
	}
	if c.slot.Load() == destroyedSlot {
		return fmt.Sprintf("TenantCipher(%s, DESTROYED)", c.tenant)
	}
	return fmt.Sprintf("TenantCipher(%s, primary=0x%08x, REDACTED)", c.tenant, c.PrimaryKeyID())
}

// GoString keeps %#v redacted.
func (c *TenantCipher) GoString() string { return c.String() }

// LogValue keeps slog output redacted, whatever the handler.
func (c *TenantCipher) LogValue() slog.Value { return slog.StringValue(c.String()) }

// has reports whether m lists key id (destroyed keys included).
func (m *keysetMeta) has(id uint32) bool {
	return slices.ContainsFunc(m.keys, func(k KeyInfo) bool { return k.ID == id })
}
