package bundle

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
)

// mustBundle writes a small bundle signed by a fresh key, and returns it
// with the key's verifier key.
func mustBundle(tb testing.TB, records int) ([]byte, string) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "src.example/audit")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Tenant: "acme", SourceKey: vkey, ImportKey: "fp"})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range records {
		if err := w.Record("log", []byte{byte(i)}, []byte("sealed")); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Offsets(Offsets{Topic: "tenant.acme.events", Partitions: map[int]int64{0: int64(records)}}); err != nil {
		tb.Fatal(err)
	}
	// An empty log's checkpoint: size 0 (no audit records to prove).
	cp, err := audit.SignCheckpoint(audit.Checkpoint{Origin: "src.example/audit", Size: 0, Root: emptyRoot()}, signer)
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Checkpoint(cp, 0); err != nil {
		tb.Fatal(err)
	}
	sum, err := w.Manifest()
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Finish([]byte("keyset ciphertext"), sum, func(text string) ([]byte, error) { return note.Sign(&note.Note{Text: text}, signer) }); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), vkey
}

func emptyRoot() [audit.HashSize]byte {
	var r [audit.HashSize]byte
	copy(r[:], newRecordsTree().rootBytes())
	return r
}

func TestVerifyRoundTrip(t *testing.T) {
	b, vkey := mustBundle(t, 5)
	var n int
	got, err := Verify(bytes.NewReader(b), VerifyOptions{SourceKey: vkey, Tenant: "acme", ImportKey: "fp",
		OnRecord: func(string, []byte, []byte) error { n++; return nil }})
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if n != 5 || got.Manifest.Records != 5 || got.Offsets.Partitions[0] != 5 || string(got.Keyset) != "keyset ciphertext" {
		t.Errorf("Verify = %+v after %d records", got, n)
	}
	for cut := 0; cut < len(b); cut += max(1, len(b)/50) {
		if _, err := Verify(bytes.NewReader(b[:cut]), VerifyOptions{SourceKey: vkey}); err == nil {
			t.Fatalf("Verify(first %d of %d bytes) = nil, want an error", cut, len(b))
		}
	}
	for i := len(Format) + 1; i < len(b); i += max(1, len(b)/80) {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		if _, err := Verify(bytes.NewReader(c), VerifyOptions{SourceKey: vkey}); err == nil {
			t.Fatalf("Verify(byte %d flipped) = nil, want an error", i)
		}
	}
}

// FuzzVerify: Verify never panics, and accepts only what a Writer made.
func FuzzVerify(f *testing.F) {
	b, vkey := mustBundle(f, 3)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(Format + "\nR\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Verify(bytes.NewReader(data), VerifyOptions{SourceKey: vkey})
		if err == nil && !bytes.Equal(data, b) {
			t.Fatalf("Verify accepted a bundle the writer did not make: %+v", got)
		}
	})
}
