package projections

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

// testCipher is a trivial Cipher for tests: AES-256-GCM with a random nonce
// prefix, and HMAC-SHA256 for Hash, both keyed from a seed.
type testCipher struct {
	name string
	aead cipher.AEAD
	mac  []byte
}

var _ Cipher = (*testCipher)(nil)

// openError is what testCipher.Decrypt returns; tests find it with
// errors.As, as vault does with the keys package's error.
type openError struct{ cipher string }

func (e *openError) Error() string {
	return "xtest: cipher " + e.cipher + ": message authentication failed"
}

func newTestCipher(tb testing.TB, seed string) *testCipher {
	tb.Helper()
	k := sha256.Sum256([]byte("aead|" + seed))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	m := sha256.Sum256([]byte("mac|" + seed))
	return &testCipher{name: seed, aead: aead, mac: m[:]}
}

func (c *testCipher) Encrypt(plaintext, ad []byte) ([]byte, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return c.aead.Seal(nonce, nonce, plaintext, ad), nil
}

func (c *testCipher) Decrypt(ciphertext, ad []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, &openError{c.name}
	}
	pt, err := c.aead.Open(nil, ciphertext[:n], ciphertext[n:], ad)
	if err != nil {
		return nil, &openError{c.name}
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
