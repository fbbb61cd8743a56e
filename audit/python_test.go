package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

const pythonVerifier = "testdata/export/verify.py"

// TestVerifyingMarkdownHoldsTheSampleVerifier: the Python verifier printed
// in VERIFYING.md is testdata/export/verify.py, byte for byte, so the code
// TestPythonVerifier runs is the code a reader copies.
func TestVerifyingMarkdownHoldsTheSampleVerifier(t *testing.T) {
	doc := string(mustRead(t, "VERIFYING.md"))
	_, rest, ok := strings.Cut(doc, "```python\n")
	code, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 {
		t.Fatal("VERIFYING.md has no ```python block")
	}
	if want := string(mustRead(t, pythonVerifier)); code != want {
		t.Errorf("the Python block of VERIFYING.md differs from %s: copy the file into the document", pythonVerifier)
	}
}

// pythonDriver runs verify.py's main once for each line of stdin (vkey,
// checkpoint and log, tab-separated) and prints one verdict a line: what
// main prints, or the message it exits with.
const pythonDriver = `
import contextlib, io, sys
sys.path.insert(0, sys.argv[1])
import verify
for line in sys.stdin:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            verify.main(*line.rstrip("\n").split("\t"))
        verdict = out.getvalue()
    except SystemExit as e:
        verdict = str(e.code)
    print(verdict.strip().replace("\n", " "))
`

// pythonVector is one log and checkpoint to verify.
type pythonVector struct{ name, vkey, checkpoint, log string }

func pythonVectors(t *testing.T, vkey string) []pythonVector {
	p := func(parts ...string) string { return filepath.Join(append([]string{exportDir}, parts...)...) }
	vs := []pythonVector{
		{"log.jsonl", vkey, p("checkpoint.note"), p("log.jsonl")},
		{"log.jsonl at size 4", vkey, p("checkpoint-4.note"), p("log.jsonl")},
		{"receipts/log.jsonl", vkey, p("receipts", "checkpoint.note"), p("receipts", "log.jsonl")},
	}
	glob := func(pattern string) []string {
		files, _ := filepath.Glob(p(pattern))
		if len(files) == 0 {
			t.Fatalf("no vectors %s", pattern)
		}
		return files
	}
	for _, dir := range []string{"tamper", "unverified"} {
		for _, f := range glob(dir + "/*.jsonl") {
			vs = append(vs, pythonVector{dir + "/" + filepath.Base(f), vkey, p("checkpoint.note"), f})
		}
	}
	for _, f := range glob("checkpoints/*.note") {
		vs = append(vs, pythonVector{"checkpoints/" + filepath.Base(f), vkey, f, p("log.jsonl")})
	}
	for _, f := range append(glob("receipts/at-*.jsonl"), glob("records/*.jsonl")...) {
		vs = append(vs, pythonVector{filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f), vkey, strings.TrimSuffix(f, ".jsonl") + ".note", f})
	}
	return vs
}

// plusKeyVector signs log.jsonl's checkpoint with a key whose verifier key
// has a '+' in its base64 (about half of all keys do), made from a fixed
// seed so the test is the same every run.
func plusKeyVector(t *testing.T) pythonVector {
	for seed := uint64(0); ; seed++ {
		skey, vkey, err := note.GenerateKey(&seededReader{seed: seed}, testOrigin)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(vkey, "+") < 3 {
			continue
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := noteText(mustRead(t, filepath.Join(exportDir, "checkpoint.note")))
		cp := filepath.Join(t.TempDir(), "plus.note")
		mustWriteFile(t, cp, mustSignText(t, string(text), s))
		return pythonVector{"a verifier key with '+' in its base64", vkey, cp, filepath.Join(exportDir, "log.jsonl")}
	}
}

// seededReader is a deterministic byte stream: SHA-256 of seed and counter.
type seededReader struct {
	seed, n uint64
	buf     []byte
}

func (r *seededReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], r.seed)
		binary.BigEndian.PutUint64(b[8:], r.n)
		r.n++
		h := sha256.Sum256(b[:])
		r.buf = append(r.buf, h[:]...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// goVerdict is VerifyExport's verdict in the words the Python verifier
// prints: "ok: S records verified, U past", "FAIL record N" or "FAIL
// checkpoint".
func goVerdict(t *testing.T, v pythonVector) string {
	log := mustRead(t, v.log)
	rep, err := VerifyExport(context.Background(), bytes.NewReader(log), mustRead(t, v.checkpoint), v.vkey)
	var inc *InconsistentError
	var br *BadReceiptError
	var bc *BadCheckpointError
	switch {
	case err == nil:
		return fmt.Sprintf("ok: %d records verified, %d past the checkpoint NOT verified, %d bytes of a torn last line, %d receipts verified",
			rep.Verified(), rep.Unverified(), rep.TornBytes, rep.Receipts)
	case errors.As(err, &inc):
		return fmt.Sprintf("FAIL record %d", inc.At)
	case errors.As(err, &br):
		return fmt.Sprintf("FAIL record %d", br.At)
	case errors.As(err, &bc):
		return "FAIL checkpoint"
	}
	t.Fatalf("%s: VerifyExport = %v", v.name, err)
	return ""
}

// TestPythonVerifier runs the sample verifier of VERIFYING.md against every
// vector and expects the verdict of VerifyExport: the same records
// verified and unverified, or a failure at the same record. It runs the
// pure-standard-library Ed25519 path always, and the `cryptography` one
// when that package is installed. It skips only when python3 is missing.
func TestPythonVerifier(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the sample verifier of VERIFYING.md is not run")
	}
	modes := []string{"pure-python Ed25519"}
	if exec.Command(py, "-c", "import cryptography").Run() == nil {
		modes = append(modes, "cryptography")
	} else {
		t.Log("the Python package cryptography is not installed: only the pure-standard-library path of the sample verifier runs")
	}
	vkey := strings.TrimSpace(string(mustRead(t, filepath.Join(exportDir, "log.vkey"))))
	vectors := append(pythonVectors(t, vkey), plusKeyVector(t))
	var in strings.Builder
	for _, v := range vectors {
		fmt.Fprintf(&in, "%s\t%s\t%s\n", v.vkey, v.checkpoint, v.log)
	}
	for _, mode := range modes {
		// One process per mode runs verify.py's main on every vector.
		cmd := exec.Command(py, "-c", pythonDriver, filepath.Dir(pythonVerifier))
		cmd.Env = os.Environ()
		if mode != "cryptography" {
			cmd.Env = append(cmd.Env, "TENANTVAULT_PURE_ED25519=1")
		}
		cmd.Stdin = strings.NewReader(in.String())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: python3: %v\n%s", mode, err, stderr.Bytes())
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != len(vectors) {
			t.Fatalf("%s: %d verdicts for %d vectors:\n%s", mode, len(lines), len(vectors), out)
		}
		for i, v := range vectors {
			got := lines[i]
			if strings.HasPrefix(got, "FAIL") {
				got, _, _ = strings.Cut(got, ":")
			}
			if want := goVerdict(t, v); got != want {
				t.Errorf("%s, %s: verify.py says %q, VerifyExport %q", mode, v.name, lines[i], want)
			}
		}
	}
}
