package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	ed25519pb "github.com/tink-crypto/tink-go/v2/proto/ed25519_go_proto"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"

	"github.com/tenantvault/tenantvault/events"
)

var _ note.Signer = (*CheckpointSigner)(nil)

const testOrigin = "vault.example.com/audit"

func mustAuditSigner(tb testing.TB, ks *Keystore, origin string) *CheckpointSigner {
	tb.Helper()
	s, err := ks.AuditSigner(origin)
	if err != nil {
		tb.Fatalf("AuditSigner(%q) = %v", origin, err)
	}
	return s
}

// auditKeyBytes returns the raw Ed25519 private key (seed) of s.
func auditKeyBytes(tb testing.TB, s *CheckpointSigner) []byte {
	tb.Helper()
	ks := insecurecleartextkeyset.KeysetMaterial(s.handle).GetKey()
	if len(ks) != 1 {
		tb.Fatalf("signer keyset holds %d keys, want 1", len(ks))
	}
	var k ed25519pb.Ed25519PrivateKey
	if err := proto.Unmarshal(ks[0].GetKeyData().GetValue(), &k); err != nil {
		tb.Fatal(err)
	}
	if len(k.GetKeyValue()) != 32 {
		tb.Fatalf("Ed25519 private key of %d bytes, want 32", len(k.GetKeyValue()))
	}
	return k.GetKeyValue()
}

func TestAuditSignerSignsNotes(t *testing.T) {
	ks := MustOpenKeystore(t)
	if _, err := ks.AuditVerifierKey(); !errors.Is(err, ErrNotFound) {
		t.Errorf("AuditVerifierKey() before AuditSigner = %v, want ErrNotFound", err)
	}
	s := mustAuditSigner(t, ks, testOrigin)
	vkey, err := ks.AuditVerifierKey()
	if err != nil || vkey != s.VerifierKey() {
		t.Fatalf("AuditVerifierKey() = %q, %v; want the signer's %q", vkey, err, s.VerifierKey())
	}
	if !strings.HasPrefix(vkey, testOrigin+"+") || s.Name() != testOrigin {
		t.Errorf("verifier key %q / name %q, want origin %q", vkey, s.Name(), testOrigin)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("note.NewVerifier(%q) = %v", vkey, err)
	}
	if v.KeyHash() != s.KeyHash() || v.Name() != s.Name() {
		t.Errorf("verifier %s/%08x, signer %s/%08x: want the same name and key hash", v.Name(), v.KeyHash(), s.Name(), s.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: testOrigin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s)
	if err != nil {
		t.Fatalf("note.Sign = %v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil || len(n.Sigs) != 1 {
		t.Fatalf("note.Open(signed note) = %v, %v; want one verified signature", n, err)
	}
	// A signature is a bare 64-byte Ed25519 signature: the note signature
	// is base64(4-byte key hash || signature).
	if len(n.Sigs[0].Base64) != 92 { // base64 of 68 bytes
		t.Errorf("signature %q is not 4+64 bytes in base64", n.Sigs[0].Base64)
	}

	// The same key comes back, from the cache and after a reopen.
	if s2 := mustAuditSigner(t, ks, testOrigin); s2 != s {
		t.Errorf("second AuditSigner returned another signer")
	}
	data := dataDir(ks)
	ks.Close()
	if _, err := ks.AuditSigner(testOrigin); err == nil {
		t.Errorf("AuditSigner after Close succeeded")
	}
	ks2 := mustOpenAt(t, data)
	if vk, err := ks2.AuditVerifierKey(); err != nil || vk != vkey {
		t.Errorf("AuditVerifierKey() after reopen = %q, %v; want %q", vk, err, vkey)
	}
	s3 := mustAuditSigner(t, ks2, testOrigin)
	if _, err := note.Open(mustSign(t, s3, "x\n"), note.VerifierList(v)); err != nil {
		t.Errorf("a signature by the reopened signer does not verify with the first verifier key: %v", err)
	}
}

func mustSign(tb testing.TB, s note.Signer, text string) []byte {
	tb.Helper()
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

func TestAuditSignerOrigin(t *testing.T) {
	ks := MustOpenKeystore(t)
	for _, bad := range []string{"", "a b", "a+b", "a\nb", "a\x00b", "\xff", strings.Repeat("a", MaxAuditOriginLen+1)} {
		if _, err := ks.AuditSigner(bad); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("AuditSigner(%q) = %v, want code EINVALID", bad, err)
		}
	}
	if _, err := os.Stat(filepath.Join(ks.dir, auditSignerFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an invalid origin created a key file: %v", err)
	}
	mustAuditSigner(t, ks, testOrigin)
	if _, err := ks.AuditSigner("other.example/audit"); events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("AuditSigner(another origin) = %v, want code ECONFLICT", err)
	}
}

func TestAuditSignerConcurrentFirstUse(t *testing.T) {
	ks := MustOpenKeystore(t)
	var wg sync.WaitGroup
	vkeys := make([]string, 8)
	for i := range vkeys {
		wg.Go(func() {
			s, err := ks.AuditSigner(testOrigin)
			if err != nil {
				t.Error(err)
				return
			}
			vkeys[i] = s.VerifierKey()
		})
	}
	wg.Wait()
	for _, v := range vkeys {
		if v != vkeys[0] {
			t.Fatalf("concurrent first AuditSigner calls made different keys: %q", vkeys)
		}
	}
}

func TestAuditSignerFileIsWrapped(t *testing.T) {
	ks := MustOpenKeystore(t)
	s := mustAuditSigner(t, ks, testOrigin)
	path := filepath.Join(ks.dir, auditSignerFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("Stat(%s) = %v, %v; want mode 0600", path, fi, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if containsAny(b, encodings(auditKeyBytes(t, s))) {
		t.Errorf("%s contains the private key in some encoding", path)
	}
	var f auditSignerFileData
	readJSON(t, path, &f)
	if f.Format != auditSignerFormat || f.Origin != testOrigin {
		t.Errorf("key file format %q, origin %q", f.Format, f.Origin)
	}

	// Printing never shows the key.
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "signer", s)
	outs := []string{logs.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outs = append(outs, fmt.Sprintf(verb, s))
	}
	for _, out := range outs {
		if containsAny([]byte(out), encodings(auditKeyBytes(t, s))) {
			t.Errorf("%q contains key material", out)
		}
	}
	if want := fmt.Sprintf("CheckpointSigner(%s, hash=%08x, REDACTED)", testOrigin, s.KeyHash()); s.String() != want {
		t.Errorf("String() = %q, want %q", s.String(), want)
	}
}

func TestAuditSignerFileTampered(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, ks *Keystore, path string)
	}{
		{"tenant keyset copied over it", func(t *testing.T, ks *Keystore, path string) {
			// Right master key, wrong associated data.
			mustCreate(t, ks, "acme")
			var k keysetFile
			readJSON(t, ks.path("acme"), &k)
			b := []byte(fmt.Sprintf(`{"format":%q,"origin":%q,"keyset":%s}`, auditSignerFormat, testOrigin, k.AEAD))
			mustWrite(t, path, b)
		}},
		{"not JSON", func(t *testing.T, ks *Keystore, path string) { mustWrite(t, path, []byte("x")) }},
		{"origin renamed", func(t *testing.T, ks *Keystore, path string) {
			b, _ := os.ReadFile(path)
			mustWrite(t, path, bytes.Replace(b, []byte(testOrigin), []byte("evil.example/audit"), 1))
		}},
		{"wrapped keyset altered", func(t *testing.T, ks *Keystore, path string) {
			b, _ := os.ReadFile(path)
			i := bytes.Index(b, []byte(`"encryptedKeyset": "`)) + len(`"encryptedKeyset": "`) + 10
			b[i] ^= 'A' ^ 'B'
			mustWrite(t, path, b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := MustOpenKeystore(t)
			s := mustAuditSigner(t, ks, testOrigin)
			data := dataDir(ks)
			path := filepath.Join(ks.dir, auditSignerFile)
			tt.tamper(t, ks, path)
			ks.Close()
			ks2 := mustOpenAt(t, data)
			got, err := ks2.AuditSigner(testOrigin)
			if err == nil && got.VerifierKey() == s.VerifierKey() {
				return // the tamper left the key usable and unchanged (not expected, but safe)
			}
			if err == nil {
				t.Errorf("AuditSigner after %s = %v (another key), want an error", tt.name, got)
			}
		})
	}
}

func mustWrite(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestAuditSignerNeedsTheMasterKey: the signer file counts as sealed keys,
// so a missing master key is not silently replaced by a new one.
func TestAuditSignerNeedsTheMasterKey(t *testing.T) {
	ks := MustOpenKeystore(t)
	mustAuditSigner(t, ks, testOrigin)
	data := dataDir(ks)
	ks.Close()
	mustDo(t, os.Remove(filepath.Join(ks.dir, checkFile)))
	mustDo(t, os.Remove(filepath.Join(data, "master.key")))
	if ks2, err := OpenKeystore(filepath.Join(data, "keys"), masterURI(data), nil); err == nil {
		ks2.Close()
		t.Fatal("OpenKeystore without the master key that wrapped the audit key succeeded")
	}
}

func mustDo(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkAuditSign(b *testing.B) {
	s := mustAuditSigner(b, MustOpenKeystore(b), testOrigin)
	msg := []byte(testOrigin + "\n123456\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	for b.Loop() {
		if _, err := s.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}
