package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditCLI checkpoints, exports, verifies (live, exported, offline
// from the data dir), checks consistency with an older checkpoint, catches
// tampering and a forged checkpoint, and replays with filters.
func TestAuditCLI(t *testing.T) {
	dir := t.TempDir()
	c := ctl{t, startVault(t, dir)}
	acmeKafka := filepath.Join(t.TempDir(), "acme.kafka")
	acme := strings.TrimSpace(c.must("tenant", "create", "acme", "--kafka-config", acmeKafka))
	globex := strings.TrimSpace(c.must("tenant", "create", "globex"))
	c.must("publish", "--tenant", "acme", "--stream", "s1", "--type", "t.created", "--data", `{"a":1}`, "--kafka-config", acmeKafka)
	var covered int
	waitCheckpointCovering := func(min int) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cp := c.must("audit", "checkpoint")
			lines := strings.Split(cp, "\n")
			if len(lines) > 2 {
				var n int
				if _, err := fmt.Sscan(lines[1], &n); err == nil && n >= min {
					covered = n
					return cp
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint covering %d records: %q", min, cp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	old := waitCheckpointCovering(3)
	oldFile := filepath.Join(t.TempDir(), "old.cp")
	os.WriteFile(oldFile, []byte(old), 0o600)

	// Activity after the old checkpoint, one boundary crossing among it.
	c.env["TENANTVAULT_TOKEN"] = globex
	if _, err := c.run("get", "--tenant", "acme", "s1"); err == nil {
		t.Fatal("globex read acme")
	}
	c.env["TENANTVAULT_TOKEN"] = acme
	c.run("streams", "--tenant", "acme")
	delete(c.env, "TENANTVAULT_TOKEN")
	cp := waitCheckpointCovering(covered + 2)
	cpFile := filepath.Join(t.TempDir(), "new.cp")
	os.WriteFile(cpFile, []byte(cp), 0o600)
	key := strings.TrimSpace(c.must("audit", "public-key"))
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)

	if out := c.must("audit", "verify", "--public-key", key); !strings.Contains(out, "ok:") {
		t.Fatalf("live verify = %q", out)
	}
	if out := c.must("audit", "verify", "--public-key", "@"+keyFile, "--old-checkpoint", oldFile); !strings.Contains(out, "only grew") {
		t.Fatalf("live verify --old-checkpoint = %q", out)
	}

	export := c.must("audit", "export")
	exportFile := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(exportFile, []byte(export), 0o600)
	if out := c.must("audit", "verify", "--export", exportFile, "--checkpoint", cpFile, "--public-key", key, "--old-checkpoint", oldFile); !strings.Contains(out, "only grew") {
		t.Fatalf("offline verify = %q", out)
	}
	// Offline, from a copy of the data dir's audit directory.
	if out := c.must("audit", "verify", "--dir", filepath.Join(dir, "audit"), "--public-key", key); !strings.Contains(out, "ok:") {
		t.Fatalf("verify --dir = %q", out)
	}

	// Tampering: one byte of record 2 changed.
	lines := strings.SplitAfter(export, "\n")
	tampered := strings.Replace(lines[2], `"outcome":"ok"`, `"outcome":"no"`, 1)
	if tampered == lines[2] {
		t.Fatalf("record 2 has no outcome to change: %s", lines[2])
	}
	bad := strings.Join(append(append(append([]string{}, lines[:2]...), tampered), lines[3:]...), "")
	badFile := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(badFile, []byte(bad), 0o600)
	_, err := c.run("audit", "verify", "--export", badFile, "--checkpoint", cpFile, "--public-key", key)
	if err == nil || !strings.Contains(err.Error(), "does NOT verify") || !strings.Contains(err.Error(), "3") {
		t.Fatalf("verify of a tampered export = %v, want a failure naming the record", err)
	}
	// A checkpoint that claims another root fails, whoever signed it.
	forged := strings.Replace(cp, strings.Split(cp, "\n")[2], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1)
	forgedFile := filepath.Join(t.TempDir(), "forged.cp")
	os.WriteFile(forgedFile, []byte(forged), 0o600)
	if _, err := c.run("audit", "verify", "--export", exportFile, "--checkpoint", forgedFile, "--public-key", key); err == nil {
		t.Fatal("verify accepted a forged checkpoint")
	}

	// Replay: filters, formats, verified flags.
	out := c.must("audit", "replay", "--export", exportFile, "--checkpoint", cpFile, "--public-key", key, "--tenant", "acme", "--format", "csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 3 || rows[0][0] != "index" {
		t.Fatalf("replay csv = %q, %v", out, err)
	}
	for _, r := range rows[1:] {
		if r[3] != "acme" {
			t.Fatalf("replay --tenant acme gave a row of %q", r[3])
		}
	}
	out = c.must("audit", "replay", "--export", exportFile, "--checkpoint", cpFile, "--public-key", key, "--flagged")
	if n := bytes.Count([]byte(out), []byte("\n")); n != 1 || !strings.Contains(out, "token tenant differs") {
		t.Fatalf("replay --flagged = %q, want the one crossing", out)
	}
	if _, err := c.run("audit", "replay", "--export", badFile, "--checkpoint", cpFile, "--public-key", key); err == nil || !strings.Contains(err.Error(), "NOT verify") {
		t.Fatalf("replay of a tampered export = %v", err)
	}
}
