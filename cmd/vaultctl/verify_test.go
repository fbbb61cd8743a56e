package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectors is the audit package's export test vectors.
const vectors = "../../audit/testdata/export"

func vectorKey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectors, "log.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// runOffline runs vaultctl with no vault to talk to and returns its
// stdout and stderr.
func runOffline(args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = run(context.Background(), args, &out, &errb, func(string) string { return "" })
	return out.String(), errb.String(), err
}

// TestVerifySaysWhatWasVerified: a forged record appended after the
// checkpoint is reported as unverified, never counted as verified, and
// fails --exact; a torn last line too.
func TestVerifySaysWhatWasVerified(t *testing.T) {
	key := vectorKey(t)
	cp := filepath.Join(vectors, "checkpoint.note")
	tests := []struct {
		log        string
		want       []string
		unverified bool
	}{
		{"log.jsonl", []string{"ok: 7 records verified against checkpoint tenantvault.example/audit-test size 7"}, false},
		{"unverified/past-1_forged-record-after-checkpoint.jsonl", []string{"ok: 7 records verified", "UNVERIFIED: 1 records past the checkpoint (index 7 to 7)"}, true},
		{"unverified/past-0_torn-line-after-checkpoint.jsonl", []string{"ok: 7 records verified", "UNVERIFIED: 50 bytes of an unterminated last line"}, true},
	}
	for _, tt := range tests {
		args := []string{"audit", "verify", "--export", filepath.Join(vectors, tt.log), "--checkpoint", cp, "--public-key", key}
		out, _, err := runOffline(args...)
		if err != nil {
			t.Errorf("verify %s = %v", tt.log, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("verify %s printed %q, want %q", tt.log, out, w)
			}
		}
		if !tt.unverified && strings.Contains(out, "UNVERIFIED") {
			t.Errorf("verify %s printed %q: nothing is past the checkpoint", tt.log, out)
		}
		_, _, err = runOffline(append(args, "--exact")...)
		if tt.unverified != errors.Is(err, errUnverified) {
			t.Errorf("verify --exact %s = %v, want errUnverified: %v", tt.log, err, tt.unverified)
		}
	}
}

// TestReplayMarksUnverifiedRecords: replay prints records past the
// checkpoint marked unverified, announces them, and --exact stops before
// printing any.
func TestReplayMarksUnverifiedRecords(t *testing.T) {
	args := []string{"audit", "replay", "--export", filepath.Join(vectors, "unverified/past-1_forged-record-after-checkpoint.jsonl"),
		"--checkpoint", filepath.Join(vectors, "checkpoint.note"), "--public-key", vectorKey(t)}
	out, errOut, err := runOffline(args...)
	if err != nil {
		t.Fatalf("replay = %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("replay printed %d records, want 8:\n%s", len(lines), out)
	}
	for i, l := range lines {
		if marked := strings.Contains(l, `"unverified":true`); marked != (i == 7) {
			t.Errorf("replay record %d: %s; want unverified marked on record 7 only", i, l)
		}
	}
	if strings.Contains(errOut, "all verified") || !strings.Contains(errOut, "UNVERIFIED from here") || !strings.Contains(errOut, "1 past it NOT verified") {
		t.Errorf("replay stderr = %q, want the unverified record announced", errOut)
	}

	out, _, _ = runOffline(append(args, "--format", "csv")...)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 9 || rows[0][11] != "verified" || rows[7][11] != "true" || rows[8][11] != "false" {
		t.Errorf("replay --format csv = %q, %v; want a verified column, false for record 7 only", out, err)
	}

	out, _, err = runOffline(append(args, "--exact")...)
	if !errors.Is(err, errUnverified) || strings.Count(out, "\n") != 7 {
		t.Errorf("replay --exact = %v, printed %d records; want errUnverified before record 7", err, strings.Count(out, "\n"))
	}
}

// TestVerifyChecksReceipts: verify counts the genuine receipts and fails on
// every forged one, naming the record.
func TestVerifyChecksReceipts(t *testing.T) {
	key := vectorKey(t)
	out, _, err := runOffline("audit", "verify", "--export", filepath.Join(vectors, "receipts/log.jsonl"),
		"--checkpoint", filepath.Join(vectors, "receipts/checkpoint.note"), "--public-key", key)
	if err != nil || !strings.Contains(out, "ok: 2 shred receipts verified") {
		t.Errorf("verify receipts/log.jsonl = %q, %v", out, err)
	}
	forged, _ := filepath.Glob(filepath.Join(vectors, "receipts/at-*.jsonl"))
	if len(forged) < 5 {
		t.Fatalf("found %d forged receipt vectors", len(forged))
	}
	for _, f := range forged {
		_, _, err := runOffline("audit", "verify", "--export", f, "--checkpoint", strings.TrimSuffix(f, ".jsonl")+".note", "--public-key", key)
		at := strings.TrimPrefix(strings.SplitN(filepath.Base(f), "_", 2)[0], "at-")
		if err == nil || !strings.Contains(err.Error(), "receipt in record "+at+" rejected") {
			t.Errorf("verify %s = %v, want the receipt of record %s rejected", filepath.Base(f), err, at)
		}
	}
	// A log without receipt signer: the shred record is reported.
	out, _, _ = runOffline("audit", "verify", "--export", filepath.Join(vectors, "log.jsonl"),
		"--checkpoint", filepath.Join(vectors, "checkpoint.note"), "--public-key", key)
	if !strings.Contains(out, "warning: 1 tenant.shred records hold no signed receipt") {
		t.Errorf("verify log.jsonl = %q, want the shred without receipt reported", out)
	}
}
