package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/export and the checkpoint fuzz seeds")

// The export vectors (testdata/export):
//
//	log.jsonl               7 records, untouched
//	log.vkey, log.skey      the test log's key (TEST ONLY: the private key is public)
//	other.vkey, other.skey  another key with the same name, for forgeries
//	checkpoint.note         the log's checkpoint of size 7
//	checkpoint-4.note       its checkpoint of size 4
//	inclusion-2-7.txt       inclusion proof of record 2 at size 7, base64, one hash a line
//	consistency-4-7.txt     consistency proof from size 4 to 7
//	tamper/at-N_*.jsonl     damaged logs: VerifyExport against checkpoint.note
//	                        fails with *InconsistentError at N
//	checkpoints/bad_*.note  forged checkpoints: *BadCheckpointError against log.jsonl
//	checkpoints/at-N_*.note checkpoints signed by the log's key that log.jsonl does
//	                        not match: *InconsistentError at N
//	expected.txt            the error every vector gives, as a user reads it
//
// go test -run TestExportVectors -update regenerates them (keys are kept).
const exportDir = "testdata/export"

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustWriteFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// exportKey returns the signer and verifier key stored as name.skey and
// name.vkey in testdata/export, generating them with -update if missing.
func exportKey(tb testing.TB, name string) (note.Signer, string) {
	tb.Helper()
	return exportKeyNamed(tb, name, testOrigin)
}

// exportKeyNamed is exportKey for a key of another name than the log's.
func exportKeyNamed(tb testing.TB, name, keyName string) (note.Signer, string) {
	tb.Helper()
	skeyPath, vkeyPath := filepath.Join(exportDir, name+".skey"), filepath.Join(exportDir, name+".vkey")
	if _, err := os.Stat(skeyPath); errors.Is(err, fs.ErrNotExist) && *updateGolden {
		skey, vkey, err := note.GenerateKey(rand.Reader, keyName)
		if err != nil {
			tb.Fatal(err)
		}
		mustWriteFile(tb, skeyPath, []byte(skey+"\n"))
		mustWriteFile(tb, vkeyPath, []byte(vkey+"\n"))
	}
	s, err := note.NewSigner(strings.TrimSpace(string(mustRead(tb, skeyPath))))
	if err != nil {
		tb.Fatal(err)
	}
	return s, strings.TrimSpace(string(mustRead(tb, vkeyPath)))
}

// exportRecords are the records of log.jsonl.
func exportRecords() []Record {
	at := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	return []Record{
		{Time: at, Principal: PrincipalAdmin, Tenant: "acme", Action: ActionTenantCreate, Outcome: OutcomeOK},
		{Time: at.Add(1 * time.Second), Principal: PrincipalIngest, Tenant: "acme", Action: ActionIngestBatch, Outcome: OutcomeOK, KeyIDs: []uint32{1234567}, Count: 12},
		{Time: at.Add(2 * time.Second), Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Resource: "stream:9f86d081884c7d65", KeyIDs: []uint32{1234567}, Outcome: OutcomeOK},
		{Time: at.Add(3 * time.Second), Principal: "tenant:globex", Tenant: "acme", Action: ActionStreamRead, Resource: "stream:9f86d081884c7d65", KeyIDs: []uint32{1234567}, Outcome: OutcomeDenied,
			Flagged: true, Reason: "token tenant differs from path tenant"}, // as Classify derives it
		{Time: at.Add(4 * time.Second), Principal: PrincipalAdmin, Tenant: "globex", Action: ActionTenantCreate, Outcome: OutcomeOK},
		{Time: at.Add(5 * time.Second), Principal: PrincipalAdmin, Tenant: "acme", Action: ActionKeysRotate, Outcome: OutcomeOK, Details: map[string]string{"new_primary": "7654321"}},
		{Time: at.Add(6 * time.Second), Principal: PrincipalAdmin, Tenant: "acme", Action: ActionTenantShred, Outcome: OutcomeOK},
	}
}

// chainLines returns the canonical lines of recs, indexed and chained.
func chainLines(tb testing.TB, recs []Record) [][]byte {
	tb.Helper()
	var lines [][]byte
	prev := ""
	for i, r := range recs {
		r.Index, r.Prev = uint64(i), prev
		line := mustMarshal(tb, r)
		lines = append(lines, line)
		h := LeafHash(line)
		prev = hex.EncodeToString(h[:])
	}
	return lines
}

// rechain rewrites the Prev of every line after the first to match the line
// before it: what a forger who edits a record and recomputes the chain does.
func rechain(tb testing.TB, lines [][]byte) [][]byte {
	tb.Helper()
	out := slices.Clone(lines)
	for i := 1; i < len(out); i++ {
		r, err := ParseRecord(out[i])
		if err != nil {
			tb.Fatal(err)
		}
		h := LeafHash(out[i-1])
		r.Prev = hex.EncodeToString(h[:])
		out[i] = mustMarshal(tb, r)
	}
	return out
}

func joinLines(lines [][]byte) []byte {
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	return b
}

func encodeProof(p [][]byte) []byte {
	var b []byte
	for _, h := range p {
		b = append(append(b, base64.StdEncoding.EncodeToString(h)...), '\n')
	}
	return b
}

func decodeProof(tb testing.TB, b []byte) [][]byte {
	tb.Helper()
	var p [][]byte
	for _, l := range strings.Fields(string(b)) {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			tb.Fatal(err)
		}
		p = append(p, h)
	}
	return p
}

func fuzzSeed(b []byte) []byte { return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b) }

// generateExportVectors writes testdata/export (with -update).
func generateExportVectors(t *testing.T) {
	signer, _ := exportKey(t, "log")
	other, _ := exportKey(t, "other")
	lines := chainLines(t, exportRecords())
	var tr tree
	var leaves [][HashSize]byte
	for _, l := range lines {
		leaves = append(leaves, LeafHash(l))
		tr.append(leaves[len(leaves)-1])
	}
	v := memView(&tr, leaves)
	root := func(size uint64) [HashSize]byte {
		r, err := v.root(size)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cp7 := Checkpoint{Origin: testOrigin, Size: 7, Root: root(7)}
	cp4 := Checkpoint{Origin: testOrigin, Size: 4, Root: root(4)}
	good := mustSignCheckpoint(t, cp7, signer)
	w := func(name string, b []byte) { mustWriteFile(t, filepath.Join(exportDir, name), b) }
	for _, d := range []string{"tamper", "checkpoints"} {
		os.RemoveAll(filepath.Join(exportDir, d))
	}
	w("log.jsonl", joinLines(lines))
	w("checkpoint.note", good)
	w("checkpoint-4.note", mustSignCheckpoint(t, cp4, signer))
	incl, _ := v.inclusion(2, 7)
	w("inclusion-2-7.txt", encodeProof(incl))
	cons, _ := v.consistency(4, 7)
	w("consistency-4-7.txt", encodeProof(cons))

	edit := func(i int, old, new string) [][]byte {
		out := slices.Clone(lines)
		if !bytes.Contains(out[i], []byte(old)) {
			t.Fatalf("record %d has no %q", i, old)
		}
		out[i] = bytes.Replace(out[i], []byte(old), []byte(new), 1)
		return out
	}
	tampered := map[string][]byte{
		// One byte of record 2 changed: named through record 3's prev.
		"at-3_byte-changed-in-record-2": joinLines(edit(2, `"principal":"tenant:acme"`, `"principal":"tenant:acmf"`)),
		// One byte of the last record changed: only the checkpoint sees it.
		"at-6_byte-changed-in-last-record": joinLines(edit(6, `"action":"tenant.shred"`, `"action":"tenant.shrex"`)),
		// The record that was denied now says ok, and the chain after it
		// was recomputed: only the checkpoint sees it.
		"at-6_record-3-rewritten-chain-recomputed": joinLines(rechain(t, edit(3, `"outcome":"denied"`, `"outcome":"ok"`))),
		"at-2_record-2-deleted":                    joinLines(slices.Delete(slices.Clone(lines), 2, 3)),
		"at-2_records-2-and-3-swapped":             joinLines(append(append(slices.Clone(lines[:2]), lines[3], lines[2]), lines[4:]...)),
		"at-4_record-3-duplicated":                 joinLines(slices.Insert(slices.Clone(lines), 4, lines[3])),
		"at-5_tail-truncated":                      joinLines(lines[:5]),
		"at-6_last-line-cut-short":                 joinLines(lines)[:len(joinLines(lines))-40],
		"at-0_empty":                               nil,
		// Spacing is no tampering of itself (a verifier does not require the
		// canonical form), but the bytes changed: record 2's prev sees it.
		"at-2_spacing-changed-in-record-1": joinLines(edit(1, `,"action"`, `, "action"`)),
	}
	for name, b := range tampered {
		w("tamper/"+name+".jsonl", b)
	}

	forgedRoot := cp7
	forgedRoot.Root = LeafHash([]byte("another log"))
	past := Checkpoint{Origin: testOrigin, Size: 9, Root: LeafHash([]byte("nine"))}
	otherOrigin := cp7
	otherOrigin.Origin = "evil.example/audit"
	badSig := corruptSignature(t, good)
	checkpoints := map[string][]byte{
		"bad_signature-changed":                  badSig,
		"bad_other-root-signed-by-another-key":   mustSignCheckpoint(t, forgedRoot, other),
		"bad_signed-by-log-key-for-other-origin": mustSignWithName(t, otherOrigin, signer),
		"bad_unsigned":                           cp7.Marshal(),
		"bad_text-altered":                       bytes.Replace(good, []byte("\n7\n"), []byte("\n6\n"), 1),
		// Signed by the log's key, but not over these records: a rewritten
		// log (or a key that leaked) — the records do not match.
		"at-6_other-root-signed-by-log-key": mustSignCheckpoint(t, forgedRoot, signer),
		// Signed for more records than the export holds: the tail was cut.
		"at-7_size-9-signed-by-log-key": mustSignCheckpoint(t, past, signer),
	}
	for name, b := range checkpoints {
		w("checkpoints/"+name+".note", b)
	}

	// Fuzz seeds.
	fz := func(target, name string, b []byte) {
		mustWriteFile(t, filepath.Join("testdata/fuzz", target, name), fuzzSeed(b))
	}
	fz("FuzzOpenCheckpoint", "good", good)
	fz("FuzzOpenCheckpoint", "bad-signature", badSig)
	fz("FuzzOpenCheckpoint", "other-key", checkpoints["bad_other-root-signed-by-another-key"])
	fz("FuzzOpenCheckpoint", "other-origin", checkpoints["bad_signed-by-log-key-for-other-origin"])
	fz("FuzzOpenCheckpoint", "unsigned", cp7.Marshal())
	fz("FuzzParseCheckpoint", "c2sp-example", []byte("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"))
	fz("FuzzParseCheckpoint", "extension", append(cp7.Marshal(), "ext\n"...))
	fz("FuzzParseCheckpoint", "leading-zero", []byte(testOrigin+"\n07\n"+base64.StdEncoding.EncodeToString(cp7.Root[:])+"\n"))
	fz("FuzzVerifyExport", "good", joinLines(lines))
	fz("FuzzVerifyExport", "truncated", joinLines(lines[:5]))
	fz("FuzzVerifyExport", "swapped", tampered["at-2_records-2-and-3-swapped"])

	generateSpecVectors(t, lines, good)
}

// exportVectors runs every vector and returns "name: outcome" lines.
func exportVectors(t *testing.T) []string {
	vkey := strings.TrimSpace(string(mustRead(t, filepath.Join(exportDir, "log.vkey"))))
	good := mustRead(t, filepath.Join(exportDir, "checkpoint.note"))
	log := mustRead(t, filepath.Join(exportDir, "log.jsonl"))
	ctx := context.Background()
	var out []string
	run := func(name string, stream, cp []byte) error {
		rep, err := VerifyExport(ctx, bytes.NewReader(stream), cp, vkey)
		out = append(out, fmt.Sprintf("%s: %s", name, outcome(rep, err)))
		// The same through a directory of segments.
		dir := t.TempDir()
		mustWriteFile(t, filepath.Join(dir, segmentName(0)), stream)
		drep, derr := VerifyExportDir(ctx, dir, cp, vkey)
		if !sameFailure(err, derr) {
			t.Errorf("%s: VerifyExportDir = %v, VerifyExport = %v; want the same failure", name, derr, err)
		}
		if drep.Records != rep.Records || drep.Head != rep.Head || drep.Checkpoint != rep.Checkpoint {
			t.Errorf("%s: VerifyExportDir report %+v, VerifyExport report %+v", name, drep, rep)
		}
		return err
	}
	atOf := func(name string) (uint64, bool) {
		if !strings.HasPrefix(name, "at-") {
			return 0, false
		}
		at, err := strconv.ParseUint(strings.TrimPrefix(strings.SplitN(name, "_", 2)[0], "at-"), 10, 64)
		if err != nil {
			t.Fatalf("vector %s does not start with at-N_", name)
		}
		return at, true
	}

	if err := run("log.jsonl", log, good); err != nil {
		t.Errorf("VerifyExport(untouched log) = %v", err)
	}
	tampers, _ := filepath.Glob(filepath.Join(exportDir, "tamper", "*.jsonl"))
	checkpoints, _ := filepath.Glob(filepath.Join(exportDir, "checkpoints", "*.note"))
	if len(tampers) < 8 || len(checkpoints) < 6 {
		t.Fatalf("found %d tamper and %d checkpoint vectors", len(tampers), len(checkpoints))
	}
	for _, f := range tampers {
		name := filepath.Base(f)
		err := run("tamper/"+name, mustRead(t, f), good)
		at, _ := atOf(name)
		checkInconsistent(t, "VerifyExport(tamper/"+name+")", err, at)
	}
	for _, f := range checkpoints {
		name := filepath.Base(f)
		err := run("checkpoints/"+name, log, mustRead(t, f))
		if strings.HasPrefix(name, "ok_") {
			if err != nil {
				t.Errorf("VerifyExport(log, checkpoints/%s) = %v, want ok", name, err)
			}
			continue
		}
		if at, ok := atOf(name); ok {
			checkInconsistent(t, "VerifyExport(checkpoints/"+name+")", err, at)
			continue
		}
		var bc *BadCheckpointError
		if !errors.As(err, &bc) {
			t.Errorf("VerifyExport(log, checkpoints/%s) = %v, want *BadCheckpointError", name, err)
		}
	}
	return append(out, specVectors(t, vkey, good)...)
}

// sameFailure reports whether a and b are both nil, the same
// *BadCheckpointError, or *InconsistentError at the same record.
func sameFailure(a, b error) bool {
	var ia, ib *InconsistentError
	if errors.As(a, &ia) && errors.As(b, &ib) {
		return ia.At == ib.At && ia.Want == ib.Want && ia.Got == ib.Got
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestExportVectors verifies the golden export and every tamper vector,
// both as a stream and as a directory of segments, and compares the errors
// with expected.txt.
func TestExportVectors(t *testing.T) {
	if *updateGolden {
		generateExportVectors(t)
	}
	got := strings.Join(exportVectors(t), "\n") + "\n"
	path := filepath.Join(exportDir, "expected.txt")
	if *updateGolden {
		mustWriteFile(t, path, []byte(got))
	}
	if want := string(mustRead(t, path)); got != want {
		t.Errorf("outcomes differ from %s (go test -run TestExportVectors -update rewrites it):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestExportProofVectors checks the golden proofs with the verifier
// functions, and that damage to them is caught.
func TestExportProofVectors(t *testing.T) {
	vkey := strings.TrimSpace(string(mustRead(t, filepath.Join(exportDir, "log.vkey"))))
	cp7 := mustRead(t, filepath.Join(exportDir, "checkpoint.note"))
	cp4 := mustRead(t, filepath.Join(exportDir, "checkpoint-4.note"))
	lines := bytes.Split(bytes.TrimSuffix(mustRead(t, filepath.Join(exportDir, "log.jsonl")), []byte("\n")), []byte("\n"))
	incl := decodeProof(t, mustRead(t, filepath.Join(exportDir, "inclusion-2-7.txt")))
	cons := decodeProof(t, mustRead(t, filepath.Join(exportDir, "consistency-4-7.txt")))

	if err := VerifyInclusion(lines[2], 2, incl, cp7, vkey); err != nil {
		t.Errorf("VerifyInclusion(record 2) = %v", err)
	}
	if err := VerifyConsistency(cp4, cp7, cons, vkey); err != nil {
		t.Errorf("VerifyConsistency(4, 7) = %v", err)
	}
	if err := VerifyConsistency(cp7, cp7, nil, vkey); err != nil {
		t.Errorf("VerifyConsistency(7, 7) = %v", err)
	}

	flipped := func(p [][]byte) [][]byte {
		out := make([][]byte, len(p))
		for i := range p {
			out[i] = bytes.Clone(p[i])
		}
		out[0][0] ^= 1
		return out
	}
	badProofs := []struct {
		name string
		err  error
	}{
		{"inclusion of record 3 with record 2's proof", VerifyInclusion(lines[3], 3, incl, cp7, vkey)},
		{"inclusion of record 3 claimed as index 2", VerifyInclusion(lines[3], 2, incl, cp7, vkey)},
		{"inclusion with a flipped bit", VerifyInclusion(lines[2], 2, flipped(incl), cp7, vkey)},
		{"inclusion with a short proof", VerifyInclusion(lines[2], 2, incl[1:], cp7, vkey)},
		{"inclusion with a truncated hash", VerifyInclusion(lines[2], 2, [][]byte{incl[0][:31], incl[1], incl[2]}, cp7, vkey)},
		{"consistency with a flipped bit", VerifyConsistency(cp4, cp7, flipped(cons), vkey)},
		{"consistency backwards", VerifyConsistency(cp7, cp4, cons, vkey)},
		{"consistency without a proof", VerifyConsistency(cp4, cp7, nil, vkey)},
	}
	for _, tt := range badProofs {
		var bp *BadProofError
		if !errors.As(tt.err, &bp) {
			t.Errorf("%s: %v, want *BadProofError", tt.name, tt.err)
		}
	}
	forged := mustRead(t, filepath.Join(exportDir, "checkpoints", "bad_other-root-signed-by-another-key.note"))
	var bc *BadCheckpointError
	if err := VerifyConsistency(cp4, forged, cons, vkey); !errors.As(err, &bc) {
		t.Errorf("VerifyConsistency(to a forged checkpoint) = %v, want *BadCheckpointError", err)
	}
	if err := VerifyInclusion(lines[2], 2, incl, forged, vkey); !errors.As(err, &bc) {
		t.Errorf("VerifyInclusion(in a forged checkpoint) = %v, want *BadCheckpointError", err)
	}
	// A fork: a checkpoint of size 7 with another root, signed by the log's
	// key, is consistent with neither.
	fork := mustRead(t, filepath.Join(exportDir, "checkpoints", "at-6_other-root-signed-by-log-key.note"))
	var bp *BadProofError
	if err := VerifyConsistency(cp7, fork, nil, vkey); !errors.As(err, &bp) {
		t.Errorf("VerifyConsistency(7, a fork of size 7) = %v, want *BadProofError", err)
	}
	if err := VerifyConsistency(cp4, fork, cons, vkey); !errors.As(err, &bp) {
		t.Errorf("VerifyConsistency(4, a fork of size 7) = %v, want *BadProofError", err)
	}
}

// FuzzVerifyExport: VerifyExport never panics, and accepts a stream against
// the golden checkpoint only if its first 7 records are the golden ones.
func FuzzVerifyExport(f *testing.F) {
	vkey := strings.TrimSpace(string(mustRead(f, filepath.Join(exportDir, "log.vkey"))))
	cp := mustRead(f, filepath.Join(exportDir, "checkpoint.note"))
	log := mustRead(f, filepath.Join(exportDir, "log.jsonl"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		rep, err := VerifyExport(context.Background(), bytes.NewReader(stream), cp, vkey)
		if err != nil {
			var inc *InconsistentError
			if !errors.As(err, &inc) {
				t.Fatalf("VerifyExport = %v, want *InconsistentError", err)
			}
			return
		}
		if !bytes.HasPrefix(stream, log) || rep.Records < 7 {
			t.Fatalf("VerifyExport accepted %q (%+v)", stream, rep)
		}
	})
}
