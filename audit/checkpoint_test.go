package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/events"
)

const testOrigin = "tenantvault.example/audit-test"

// testKey returns a new Ed25519 note signer named name and its verifier key.
func testKey(tb testing.TB, name string) (note.Signer, string) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return s, vkey
}

func mustSignCheckpoint(tb testing.TB, c Checkpoint, s note.Signer) []byte {
	tb.Helper()
	b, err := SignCheckpoint(c, s)
	if err != nil {
		tb.Fatalf("SignCheckpoint(%v) = %v", c, err)
	}
	return b
}

func TestCheckpointMarshal(t *testing.T) {
	c := Checkpoint{Origin: "example.com/behind-the-sofa", Size: 20852163}
	copy(c.Root[:], []byte{0x0a, 0xc5, 0x18, 0x6a, 0x91, 0x86, 0x3e, 0x8e, 0x1d, 0x90, 0xc8, 0x08, 0x01, 0x4a, 0xa8, 0x9b,
		0xf5, 0xda, 0x8e, 0x3e, 0xe1, 0xd9, 0xf0, 0x76, 0x30, 0xf0, 0x37, 0x8f, 0x68, 0xf1, 0xab, 0x62})
	// The example of c2sp.org/tlog-checkpoint.
	want := "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	if got := string(c.Marshal()); got != want {
		t.Errorf("Marshal() = %q, want %q", got, want)
	}
	got, err := ParseCheckpoint([]byte(want))
	if err != nil || got != c {
		t.Errorf("ParseCheckpoint(%q) = %v, %v; want %v", want, got, err, c)
	}
	withExt, err := ParseCheckpoint([]byte(want + "an extension line\n"))
	if err != nil || withExt != c {
		t.Errorf("ParseCheckpoint(with an extension line) = %v, %v; want %v", withExt, err, c)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	const root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
	tests := []struct{ name, text string }{
		{"empty", ""},
		{"no final newline", "o\n1\n" + root},
		{"two lines", "o\n1\n"},
		{"empty origin", "\n1\n" + root + "\n"},
		{"space in origin", "o o\n1\n" + root + "\n"},
		{"plus in origin", "o+o\n1\n" + root + "\n"},
		{"control in origin", "o\x7fo\n1\n" + root + "\n"},
		{"leading zero", "o\n01\n" + root + "\n"},
		{"sign", "o\n+1\n" + root + "\n"},
		{"negative", "o\n-1\n" + root + "\n"},
		{"space in size", "o\n 1\n" + root + "\n"},
		{"size overflow", "o\n18446744073709551616\n" + root + "\n"},
		{"hex size", "o\n0x1\n" + root + "\n"},
		{"short root", "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxqw==\n"},
		{"unpadded root", "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n"},
		{"non-canonical root", "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n"},
		{"url base64 root", "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n"},
		{"empty extension line", "o\n1\n" + root + "\n\n"},
		{"CRLF", "o\r\n1\r\n" + root + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := ParseCheckpoint([]byte(tt.text)); err == nil {
				t.Errorf("ParseCheckpoint(%q) = %v, want an error", tt.text, c)
			}
		})
	}
}

func TestOpenCheckpoint(t *testing.T) {
	signer, vkey := testKey(t, testOrigin)
	other, _ := testKey(t, testOrigin) // same name, another key
	renamed, _ := testKey(t, "other.example/log")
	c := Checkpoint{Origin: testOrigin, Size: 7, Root: LeafHash([]byte("x"))}
	good := mustSignCheckpoint(t, c, signer)

	got, err := OpenCheckpoint(good, vkey)
	if err != nil || got != c {
		t.Fatalf("OpenCheckpoint(good) = %v, %v; want %v", got, err, c)
	}
	// A witness cosignature by another key is fine.
	n, _ := note.Open(good, note.VerifierList(mustVerifier(t, vkey)))
	cosigned, err := note.Sign(n, renamed)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenCheckpoint(cosigned, vkey); err != nil || got != c {
		t.Errorf("OpenCheckpoint(cosigned) = %v, %v; want %v", got, err, c)
	}

	badSig := corruptSignature(t, good)
	otherOrigin := c
	otherOrigin.Origin = "other.example/log"
	bad := []struct {
		name    string
		signed  []byte
		reason  string
		wantErr any
	}{
		{"bad signature", badSig, "does not verify", new(*note.InvalidSignatureError)},
		{"another key", mustSignCheckpoint(t, c, other), "not signed by the log's key", new(*note.UnverifiedNoteError)},
		{"another origin", mustSignWithName(t, otherOrigin, signer), "is not the name of the log's key", nil},
		{"unsigned", c.Marshal(), "not a signed note", nil},
		{"not a checkpoint", mustSignText(t, "hello\n", signer), "lines", nil},
		{"too big", append(bytes.Repeat([]byte("x"), MaxCheckpointBytes), good...), "over the limit", nil},
		{"empty", nil, "not a signed note", nil},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenCheckpoint(tt.signed, vkey)
			var bc *BadCheckpointError
			if !errors.As(err, &bc) || !strings.Contains(bc.Reason, tt.reason) {
				t.Fatalf("OpenCheckpoint(%s) = %v, want *BadCheckpointError with %q", tt.name, err, tt.reason)
			}
			if tt.wantErr != nil && !errors.As(err, tt.wantErr) {
				t.Errorf("OpenCheckpoint(%s) = %v, want it to wrap %T", tt.name, err, tt.wantErr)
			}
		})
	}
	if _, err := OpenCheckpoint(good, "not a key"); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("OpenCheckpoint(bad verifier key) = %v, want code EINVALID", err)
	}
	if _, err := SignCheckpoint(otherOrigin, signer); err == nil {
		t.Errorf("SignCheckpoint with an origin that is not the key name succeeded")
	}
}

// corruptSignature flips one bit of the (last) signature of a signed note,
// keeping the note well-formed.
func corruptSignature(tb testing.TB, signed []byte) []byte {
	tb.Helper()
	i := bytes.LastIndex(signed, []byte(" "))
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(signed[i+1:])))
	if err != nil || len(sig) < 10 {
		tb.Fatalf("no signature in %q", signed)
	}
	sig[len(sig)-1] ^= 1
	return append(append(bytes.Clone(signed[:i+1]), base64.StdEncoding.EncodeToString(sig)...), '\n')
}

func mustVerifier(tb testing.TB, vkey string) note.Verifier {
	tb.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// mustSignWithName signs c's text with s even though c.Origin is not s's
// name (which SignCheckpoint refuses): a forged checkpoint for another log.
func mustSignWithName(tb testing.TB, c Checkpoint, s note.Signer) []byte {
	tb.Helper()
	return mustSignText(tb, string(c.Marshal()), s)
}

func mustSignText(tb testing.TB, text string, s note.Signer) []byte {
	tb.Helper()
	b, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzParseCheckpoint: ParseCheckpoint never panics, and what it accepts
// marshals back to its first three lines.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		m := c.Marshal()
		if !bytes.HasPrefix(text, m) {
			t.Fatalf("ParseCheckpoint(%q) = %v, which marshals to %q: not a prefix", text, c, m)
		}
		if c2, err := ParseCheckpoint(m); err != nil || c2 != c {
			t.Fatalf("round trip of %v = %v, %v", c, c2, err)
		}
	})
}

// FuzzOpenCheckpoint: OpenCheckpoint never panics, fails only with
// *BadCheckpointError, and accepts only notes that carry a valid signature by
// the test key over a checkpoint text of its origin. The seeds (see
// testdata/fuzz/FuzzOpenCheckpoint) are signed by testdata/export/log.vkey.
func FuzzOpenCheckpoint(f *testing.F) {
	vkey := strings.TrimSpace(string(mustRead(f, "testdata/export/log.vkey")))
	v := mustVerifier(f, vkey)
	f.Fuzz(func(t *testing.T, signed []byte) {
		c, err := OpenCheckpoint(signed, vkey)
		if err != nil {
			var bc *BadCheckpointError
			if !errors.As(err, &bc) {
				t.Fatalf("OpenCheckpoint = %v, want *BadCheckpointError", err)
			}
			return
		}
		n, err := note.Open(signed, note.VerifierList(v))
		if err != nil {
			t.Fatalf("OpenCheckpoint accepted a note that note.Open rejects: %v", err)
		}
		if c.Origin != testOrigin || !strings.HasPrefix(n.Text, string(c.Marshal())) {
			t.Fatalf("OpenCheckpoint = %v for text %q", c, n.Text)
		}
	})
}
