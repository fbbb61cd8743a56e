package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/inmemory"
	tdwitness "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/internal/server"
)

// startWitness runs transparency-dev/witness in memory on loopback. It
// trusts the log key stored in logKey once it is set (until then it
// answers 404: unknown log).
func startWitness(t *testing.T, logKey *atomic.Pointer[string]) (url, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "witness.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tdwitness.New(context.Background(), tdwitness.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{s},
		VerifierForLog: func(_ context.Context, origin string) (note.Verifier, bool, error) {
			k := logKey.Load()
			if k == nil {
				return nil, false, nil
			}
			v, err := note.NewVerifier(*k)
			if err != nil {
				return nil, false, err
			}
			return v, v.Name() == origin, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", tdwitness.NewHTTPHandler(w).AddCheckpoint)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, vkey
}

// TestAuditVerifyWitnessed fetches the latest checkpoint from the
// checkpoint topic, requires the witness's cosignature on it, and refuses
// an old checkpoint larger than the new one.
func TestAuditVerifyWitnessed(t *testing.T) {
	dir := t.TempDir()
	var logKey atomic.Pointer[string]
	wURL, wKey := startWitness(t, &logKey)
	srv := &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Witnesses: []string{wURL}}}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	c := ctl{t, map[string]string{"TENANTVAULT_ADDR": "http://" + srv.HTTPAddr(), "TENANTVAULT_DATA_DIR": dir, "TENANTVAULT_BROKERS": srv.Brokers()[0]}}
	key := strings.TrimSpace(c.must("audit", "public-key"))
	logKey.Store(&key)

	checkpointOf := func(min int) (string, int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			cp := c.must("audit", "checkpoint")
			var n int
			if lines := strings.Split(cp, "\n"); len(lines) > 2 {
				if _, err := fmt.Sscan(lines[1], &n); err == nil && n >= min {
					return cp, n
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint covering %d records: %q", min, cp)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.must("tenant", "create", "acme")
	small, n := checkpointOf(1)
	c.must("tenant", "create", "globex")
	big, _ := checkpointOf(n + 1)
	smallFile, bigFile := filepath.Join(t.TempDir(), "small.cp"), filepath.Join(t.TempDir(), "big.cp")
	os.WriteFile(smallFile, []byte(small), 0o600)
	os.WriteFile(bigFile, []byte(big), 0o600)
	exportFile := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(exportFile, []byte(c.must("audit", "export")), 0o600)

	if out := c.must("audit", "verify", "--export", exportFile, "--checkpoint", bigFile, "--public-key", key, "--old-checkpoint", smallFile); !strings.Contains(out, "only grew") {
		t.Fatalf("verify --old-checkpoint (smaller) = %q", out)
	}
	// The records hold both trees, but the "old" checkpoint is the larger.
	if out, err := c.run("audit", "verify", "--export", exportFile, "--checkpoint", smallFile, "--public-key", key, "--old-checkpoint", bigFile); err == nil || !strings.Contains(err.Error(), "NOT only grow") {
		t.Fatalf("verify --old-checkpoint larger than the checkpoint = %q, %v; want a failure", out, err)
	}

	// The checkpoint topic, read with the vault's own principal (the only
	// one that may read it on the embedded broker).
	topicArgs := []string{"audit", "verify", "--public-key", key, "--checkpoint-topic", "vault.checkpoints",
		"--kafka-sasl-user", "tenantvault", "--kafka-sasl-password-file", filepath.Join(dir, "kafka.password")}
	var out string
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		// The witness learns the log's key after vaultd started: the
		// publisher's retries bring it the checkpoint.
		out, err = c.run(append(topicArgs, "--witness-key", wKey)...)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, "cosigned by 1 of the 1 witness keys") {
		t.Fatalf("verify --checkpoint-topic --witness-key = %q, %v", out, err)
	}
	otherKey := func() string {
		_, vkey, err := note.GenerateKey(rand.Reader, "witness.test/other")
		if err != nil {
			t.Fatal(err)
		}
		return vkey
	}()
	if out, err := c.run(append(topicArgs, "--witness-key", otherKey)...); err == nil || !strings.Contains(err.Error(), "NOT witnessed") {
		t.Errorf("verify with another witness's key = %q, %v; want a failure", out, err)
	}
	if out, err := c.run(append(topicArgs, "--witness-key", wKey, "--witness-key", otherKey, "--min-cosignatures", "2")...); err == nil || !strings.Contains(err.Error(), "NOT witnessed") {
		t.Errorf("verify --min-cosignatures 2 with one witness = %q, %v; want a failure", out, err)
	}
	if out, err := c.run("audit", "verify", "--public-key", key, "--min-cosignatures", "1"); err == nil {
		t.Errorf("verify --min-cosignatures without --witness-key = %q, want an error", out)
	}
}
