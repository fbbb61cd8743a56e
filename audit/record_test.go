package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// goldenHead is the leaf hash of the last record of testdata/golden,
// computed independently of this package (Python hashlib:
// sha256(b"\x00" + line)). A change means the canonical encoding changed,
// which would break every existing log: do not update it lightly.
const goldenHead = "196705f94688eefb39d92a6e9fa85517a8331bbd3e5068c7b204dc6b3bc41cf4"

func copyLog(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestGoldenLog(t *testing.T) {
	dir := copyLog(t, map[string]string{segmentName(0): "testdata/golden/000000000000.jsonl"})
	l := mustOpenDir(t, dir)
	if n, head := l.Head(); n != 3 || head != goldenHead {
		t.Errorf("Head() of the golden log = %d, %s; want 3, %s", n, head, goldenHead)
	}
	if err := l.Verify(context.Background()); err != nil {
		t.Errorf("Verify() = %v", err)
	}
	recs, err := l.List(context.Background(), Filter{Flagged: true})
	if err != nil || len(recs) != 1 || recs[0].Reason != "token tenant <globex> != path tenant & key owner" || recs[0].Details["a"] != "é\u2028" {
		t.Errorf("List(flagged) = %+v, %v; want record 1 with its reason and details decoded", recs, err)
	}
	recs, err = l.List(context.Background(), Filter{Tenant: "../Evil\x1b"})
	if err != nil || len(recs) != 1 || recs[0].Index != 2 {
		t.Errorf("List(hostile tenant) = %+v, %v; want record 2", recs, err)
	}
}

// TestTamperVectors opens each testdata/tamper/at-N_*.jsonl (the golden log,
// damaged) and expects an *InconsistentError at N.
func TestTamperVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/tamper/at-*.jsonl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no tamper vectors: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			at, err := strconv.ParseUint(strings.TrimPrefix(strings.SplitN(name, "_", 2)[0], "at-"), 10, 64)
			if err != nil {
				t.Fatalf("vector name %s does not start with at-N_", name)
			}
			dir := copyLog(t, map[string]string{segmentName(0): f})
			l, err := Open(Options{Dir: dir})
			if err == nil {
				l.Close()
			}
			checkInconsistent(t, "Open()", err, at)
		})
	}
}

func TestParseRecord(t *testing.T) {
	golden, err := os.ReadFile("testdata/golden/000000000000.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(golden, []byte("\n")), []byte("\n"))
	for i, line := range lines {
		r, err := ParseRecord(line)
		if err != nil || r.Index != uint64(i) {
			t.Errorf("ParseRecord(golden %d) = index %d, %v; want index %d", i, r.Index, err, i)
		}
	}
	l0, l1, l2 := string(lines[0]), string(lines[1]), string(lines[2])
	tests := []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"not an object", "[]"},
		{"null", "null"},
		{"trailing newline", l0 + "\n"},
		{"space after a comma", strings.Replace(l0, `,"time"`, `, "time"`, 1)},
		{"fields reordered", `{"time":"2025-03-14T15:09:26.535897932Z","index":0,"principal":"admin","tenant":"acme","action":"tenant.create","outcome":"ok","prev":""}`},
		{"unknown field", strings.Replace(l0, `"prev":""`, `"prev":"","x":1`, 1)},
		{"duplicate key", strings.Replace(l0, `{"index":0`, `{"index":1,"index":0`, 1)},
		{"key in other case", strings.Replace(l0, `"principal"`, `"Principal"`, 1)},
		{"time with numeric UTC offset", strings.Replace(l0, `932Z"`, `932+00:00"`, 1)},
		{"time in another zone", strings.Replace(l0, `15:09:26.535897932Z`, `16:09:26.535897932+01:00`, 1)},
		{"time with trailing zeros", strings.Replace(l0, `.535897932Z`, `.535897932000Z`, 1)},
		{"unescaped <", strings.Replace(l1, `\u003c`, `<`, 1)},
		{"empty omitted field present", strings.Replace(l0, `"prev":""`, `"resource":"","prev":""`, 1)},
		{"empty key_ids present", strings.Replace(l0, `"prev":""`, `"key_ids":[],"prev":""`, 1)},
		{"prev upper-case hex", strings.Replace(l2, `"prev":"fa`, `"prev":"FA`, 1)},
		{"prev too short", strings.Replace(l0, `"prev":""`, `"prev":"abcd"`, 1)},
		{"index negative", strings.Replace(l0, `"index":0`, `"index":-1`, 1)},
		{"invalid UTF-8", strings.Replace(l0, "admin", "adm\xffn", 1)},
		{"over the size limit", strings.Replace(l0, "admin", strings.Repeat("a", maxLineBytes), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := ParseRecord([]byte(tt.line)); err == nil {
				t.Errorf("ParseRecord(%.80q) = %+v, want an error", tt.line, r)
			}
		})
	}
}

func TestNormalizeTenant(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"acme", "acme"},
		{"a", `"a"`},
		{"ACME", `"ACME"`},
		{"-acme", `"-acme"`},
		{"acme\x00", `"acme\x00"`},
		{"ünï", `"\u00fcn\u00ef"`},
		{`"acme"`, `"acme"`}, // already in stored form
		{`"acme`, `"\"acme"`},
		{strings.Repeat("X", 100), `"` + strings.Repeat("X", MaxInvalidTenantRunes) + `"`},
	}
	for _, tt := range tests {
		if got := NormalizeTenant(tt.in); got != tt.want {
			t.Errorf("NormalizeTenant(%q) = %s, want %s", tt.in, got, tt.want)
		}
		// Idempotent: a stored value used as a filter finds itself.
		if got := NormalizeTenant(tt.in); NormalizeTenant(got) != got {
			t.Errorf("NormalizeTenant(%s) = %s, want it unchanged", got, NormalizeTenant(got))
		}
	}
}

func TestInconsistentErrorMessage(t *testing.T) {
	err := error(&InconsistentError{At: 7, Want: `prev "ab"`, Got: `prev "cd"`, File: "000000000000.jsonl", Offset: 1234})
	want := `audit log inconsistent at record 7 (000000000000.jsonl at byte 1234): want prev "ab", got prev "cd"`
	if err.Error() != want {
		t.Errorf("Error() = %s, want %s", err, want)
	}
	var inc *InconsistentError
	if !errors.As(err, &inc) || inc.At != 7 {
		t.Errorf("errors.As(%v) failed", err)
	}
}

// FuzzParseRecord checks that ParseRecord never panics and that whatever it
// accepts is canonical: re-encoding gives the same bytes, and parsing those
// gives the same record.
func FuzzParseRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			return
		}
		b, err := MarshalRecord(r)
		if err != nil {
			t.Fatalf("MarshalRecord(ParseRecord(%q)) = %v", line, err)
		}
		if !bytes.Equal(b, line) {
			t.Fatalf("ParseRecord accepted a non-canonical line:\n got %q\nwant %q", line, b)
		}
		r2, err := ParseRecord(b)
		if err != nil {
			t.Fatalf("ParseRecord(MarshalRecord(r)) = %v", err)
		}
		if b2, _ := MarshalRecord(r2); !bytes.Equal(b2, b) {
			t.Fatalf("round trip changed the record: %q vs %q", b2, b)
		}
		if r.Prev != "" && len(r.Prev) != 2*HashSize {
			t.Fatalf("ParseRecord accepted prev %q", r.Prev)
		}
	})
}
