package projections

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

// testCipher is a Cipher for tests shaped like keys.TenantCipher: a set
// of AES-256-GCM keys, one of them primary, whose ciphertexts carry Tink's
// 5-byte prefix (0x01, big-endian key id), then a random nonce; and
// HMAC-SHA256 for Hash. Keys are derived from a seed. Rotate adds a new
// primary and Drop removes a key, swapping the key set copy-on-write under
// callers that hold the cipher, as rotation does in keys.
type testCipher struct {
	name string
	mac  []byte
	keys atomic.Pointer[testKeys]
}

// testKeys is one immutable generation of a testCipher's keys.
type testKeys struct {
	gen     int // keys derived so far
	primary uint32
	aeads   map[uint32]cipher.AEAD
}

var (
	_ Cipher      = (*testCipher)(nil)
	_ KeyedCipher = (*testCipher)(nil)
)

// openError is what testCipher.Decrypt returns; tests find it with
// errors.As, as vault does with the keys package's error.
type openError struct {
	cipher string
	keyID  uint32
}

func (e *openError) Error() string {
	return fmt.Sprintf("xtest: cipher %s: key 0x%08x: message authentication failed", e.cipher, e.keyID)
}

// newTestCipher returns a cipher with one key, derived from seed: two
// ciphers with the same seed open each other's values.
func newTestCipher(tb testing.TB, seed string) *testCipher {
	tb.Helper()
	m := sha256.Sum256([]byte("mac|" + seed))
	c := &testCipher{name: seed, mac: m[:]}
	c.keys.Store(&testKeys{aeads: map[uint32]cipher.AEAD{}})
	c.Rotate(tb)
	return c
}

// Rotate adds a key and makes it the primary; the others keep decrypting.
// It returns the new key's id.
func (c *testCipher) Rotate(tb testing.TB) uint32 {
	tb.Helper()
	old := c.keys.Load()
	next := &testKeys{gen: old.gen, aeads: maps.Clone(old.aeads)}
	for {
		next.gen++
		seed := fmt.Sprintf("%s|%d", c.name, next.gen)
		idh := sha256.Sum256([]byte("id|" + seed))
		id := binary.BigEndian.Uint32(idh[:4])
		if _, dup := next.aeads[id]; dup || id == 0 {
			continue
		}
		k := sha256.Sum256([]byte("aead|" + seed))
		block, err := aes.NewCipher(k[:])
		if err != nil {
			tb.Fatal(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			tb.Fatal(err)
		}
		next.aeads[id], next.primary = aead, id
		break
	}
	if !c.keys.CompareAndSwap(old, next) {
		tb.Fatal("testCipher: concurrent Rotate")
	}
	return next.primary
}

// Drop removes key id, as destroying an old key after a rewrap does.
func (c *testCipher) Drop(id uint32) {
	old := c.keys.Load()
	next := &testKeys{gen: old.gen, primary: old.primary, aeads: maps.Clone(old.aeads)}
	delete(next.aeads, id)
	c.keys.Store(next)
}

func (c *testCipher) PrimaryKeyID() uint32 { return c.keys.Load().primary }

func (c *testCipher) KeyIDOf(ciphertext []byte) (uint32, bool) {
	if len(ciphertext) < 5 || ciphertext[0] != 0x01 {
		return 0, false
	}
	return binary.BigEndian.Uint32(ciphertext[1:5]), true
}

func (c *testCipher) Encrypt(plaintext, ad []byte) ([]byte, error) {
	k := c.keys.Load()
	aead := k.aeads[k.primary]
	n := aead.NonceSize()
	out := make([]byte, 5+n, 5+n+len(plaintext)+aead.Overhead())
	out[0] = 0x01
	binary.BigEndian.PutUint32(out[1:5], k.primary)
	if _, err := rand.Read(out[5:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[5:], plaintext, ad), nil
}

func (c *testCipher) Decrypt(ciphertext, ad []byte) ([]byte, error) {
	id, ok := c.KeyIDOf(ciphertext)
	if !ok {
		return nil, &openError{cipher: c.name}
	}
	aead := c.keys.Load().aeads[id]
	if aead == nil || len(ciphertext) < 5+aead.NonceSize() {
		return nil, &openError{cipher: c.name, keyID: id}
	}
	n := 5 + aead.NonceSize()
	pt, err := aead.Open(nil, ciphertext[5:n], ciphertext[n:], ad)
	if err != nil {
		return nil, &openError{cipher: c.name, keyID: id}
	}
	return pt, nil
}

func (c *testCipher) Hash(kind string, data []byte) []byte {
	h := hmac.New(sha256.New, c.mac)
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum(nil)
}

// MustOpenStores opens Stores on a temporary directory, closed at the end
// of the test. Commits are not synced unless cfg says otherwise through
// edit; edit may change any field.
func MustOpenStores(tb testing.TB, edit ...func(*Config)) *Stores {
	tb.Helper()
	cfg := Config{Dir: tb.TempDir(), NoSync: true}
	for _, e := range edit {
		e(&cfg)
	}
	s, err := OpenStores(cfg)
	if err != nil {
		tb.Fatalf("OpenStores() = %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Stores.Close() = %v", err)
		}
	})
	return s
}

// MustCreateStore creates tenant t's store and acquires it until the end of
// the test.
func MustCreateStore(tb testing.TB, s *Stores, t events.TenantID) *Store {
	tb.Helper()
	if err := s.Create(t); err != nil {
		tb.Fatalf("Create(%q) = %v", t, err)
	}
	st, release, err := s.Acquire(t)
	if err != nil {
		tb.Fatalf("Acquire(%q) = %v", t, err)
	}
	tb.Cleanup(release)
	return st
}

// MustApply applies batch and fails the test on error.
func MustApply(tb testing.TB, st *Store, c Cipher, batch []Record) Result {
	tb.Helper()
	res, err := st.Apply(c, batch)
	if err != nil {
		tb.Fatalf("Apply(%d records) = %v", len(batch), err)
	}
	return res
}

const testTopic = "tenant.acme.events"

func newEvent(id, stream, data string) *events.Event {
	e := &events.Event{ID: id, Source: "test", SpecVersion: events.SpecVersion, Type: "customer.updated", Subject: stream}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

func rec(partition int, offset int64, e *events.Event) Record {
	return Record{Topic: testTopic, Partition: partition, Offset: offset, Event: e}
}

func reject(partition int, offset int64, code, reason string, raw []byte) Record {
	return Record{Topic: testTopic, Partition: partition, Offset: offset, Reject: &Rejection{Code: code, Reason: reason, Raw: raw}}
}

// eventBatch returns n events on streams stream-0 … stream-(streams-1),
// round robin, with ids prefix-i and offsets from first on partition 0.
func eventBatch(prefix string, n, streams int, first int64, data string) []Record {
	b := make([]Record, n)
	for i := range b {
		b[i] = rec(0, first+int64(i), newEvent(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("stream-%d", i%streams), data))
	}
	return b
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
