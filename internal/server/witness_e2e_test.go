package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/inmemory"
	tdwitness "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/witness"
	"github.com/tenantvault/tenantvault/internal/server"
)

// openErr opens (and closes) a vault on dataDir and returns Open's error.
func openErr(t *testing.T, dataDir string, edit func(*server.Config)) error {
	t.Helper()
	s := &server.Server{Config: server.Config{DataDir: dataDir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MaxEventBytes: maxEventBytes}}
	if edit != nil {
		edit(&s.Config)
	}
	if testing.Verbose() {
		s.Logger = testLogger(t)
	}
	err := s.Open(context.Background())
	if err == nil {
		s.Close()
	}
	return err
}

// historyEntry is a line of <data-dir>/audit/checkpoints/NNN.jsonl.
type historyEntry struct {
	Size uint64 `json:"size"`
	Note string `json:"note"`
}

func readHistory(t *testing.T, auditDir string) []historyEntry {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(auditDir, "checkpoints", "[0-9]*.jsonl"))
	sort.Strings(files)
	var out []historyEntry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e historyEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
	return out
}

func readRecords(t *testing.T, auditDir string) [][]byte {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(auditDir, "[0-9]*.jsonl"))
	sort.Strings(segs)
	var lines [][]byte
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, bytes.SplitAfter(b, []byte("\n"))...)
	}
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	return lines
}

// rollBack rewrites the audit directory as an attacker with write access to
// the data dir would: the checkpoint history cut after the checkpoint of
// size keep (latest set to it), and the records after it replaced by recs,
// renumbered and re-chained.
func rollBack(t *testing.T, auditDir string, keep uint64, recs [][]byte) {
	t.Helper()
	hist := readHistory(t, auditDir)
	lines := readRecords(t, auditDir)
	var kept []historyEntry
	for _, e := range hist {
		if e.Size <= keep {
			kept = append(kept, e)
		}
	}
	if len(kept) == 0 || kept[len(kept)-1].Size != keep {
		t.Fatalf("no archived checkpoint of size %d", keep)
	}
	files, _ := filepath.Glob(filepath.Join(auditDir, "checkpoints", "*"))
	for _, f := range files {
		os.Remove(f)
	}
	var hb []byte
	for _, e := range kept {
		b, _ := json.Marshal(e)
		hb = append(append(hb, b...), '\n')
	}
	must(t, os.WriteFile(filepath.Join(auditDir, "checkpoints", "000000000000.jsonl"), hb, 0o600))
	must(t, os.WriteFile(filepath.Join(auditDir, "checkpoints", "latest"), []byte(kept[len(kept)-1].Note), 0o600))

	out := append([][]byte(nil), lines[:keep]...)
	prev := ""
	if keep > 0 {
		h := audit.LeafHash(bytes.TrimSuffix(out[keep-1], []byte("\n")))
		prev = hex.EncodeToString(h[:])
	}
	for i, line := range recs {
		r, err := audit.ParseRecord(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			t.Fatal(err)
		}
		r.Index, r.Prev = keep+uint64(i), prev
		b, err := audit.MarshalRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		h := audit.LeafHash(b)
		prev = hex.EncodeToString(h[:])
		out = append(out, append(b, '\n'))
	}
	segs, _ := filepath.Glob(filepath.Join(auditDir, "[0-9]*.jsonl"))
	for _, s := range segs {
		os.Remove(s)
	}
	must(t, os.WriteFile(filepath.Join(auditDir, "000000000000.jsonl"), bytes.Join(out, nil), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// activeVault makes a data dir whose audit log has several archived
// checkpoints and a last one published to the checkpoint topic; it returns
// it stopped, with the sizes of its checkpoints.
func activeVault(t *testing.T, edit func(*server.Config)) (string, []uint64) {
	t.Helper()
	dir := t.TempDir()
	for _, id := range []string{"acme", "globex", "initech"} {
		v := mustStartWith(t, dir, "", edit)
		v.createTenant(id)
		v.stop() // Close signs a checkpoint of every record and publishes it
	}
	var sizes []uint64
	for _, e := range readHistory(t, filepath.Join(dir, "audit")) {
		sizes = append(sizes, e.Size)
	}
	return dir, sizes
}

// TestLaunderingFails is issue 10's attack: latest set back to an archived
// checkpoint, the records after it deleted (one of them) and the rest
// renumbered and re-chained, restart. The audit log alone accepts it (the
// control run without the checkpoint topic); the published checkpoint
// makes vaultd refuse to start, naming both sizes.
func TestLaunderingFails(t *testing.T) {
	dir, sizes := activeVault(t, nil)
	if len(sizes) < 3 {
		t.Fatalf("history has checkpoints of sizes %v, want at least 3", sizes)
	}
	published := sizes[len(sizes)-1]
	keep := sizes[1]
	launder := func(t *testing.T) string {
		d := filepath.Join(t.TempDir(), "data")
		must(t, os.CopyFS(d, os.DirFS(dir)))
		lines := readRecords(t, filepath.Join(d, "audit"))
		// Delete record keep (the "break-glass read"), keep the rest.
		rollBack(t, filepath.Join(d, "audit"), keep, lines[keep+1:])
		return d
	}

	t.Run("control: the log alone does not see it", func(t *testing.T) {
		if err := openErr(t, launder(t), func(c *server.Config) { c.CheckpointTopic = "-" }); err != nil {
			t.Fatalf("Open of the laundered log without the checkpoint topic = %v; the attack itself is broken", err)
		}
	})
	t.Run("the published checkpoint does", func(t *testing.T) {
		err := openErr(t, launder(t), nil)
		var rb *witness.RollbackError
		if !errors.As(err, &rb) {
			t.Fatalf("Open of the laundered log = %v, want a *witness.RollbackError", err)
		}
		if rb.PublishedSize != published || rb.LocalSize != published-1 {
			t.Errorf("RollbackError: published %d, local %d; want %d, %d", rb.PublishedSize, rb.LocalSize, published, published-1)
		}
		for _, want := range []string{"vault.checkpoints", itoa(published), itoa(published - 1)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open error %q does not name %q", err, want)
			}
		}
	})
}

// TestRollbackToEveryArchivedCheckpoint rolls the data dir back to each
// archived checkpoint in turn (records after it cut off): each is refused.
func TestRollbackToEveryArchivedCheckpoint(t *testing.T) {
	dir, sizes := activeVault(t, nil)
	published := sizes[len(sizes)-1]
	for _, keep := range sizes[:len(sizes)-1] {
		t.Run("to size "+itoa(keep), func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "data")
			must(t, os.CopyFS(d, os.DirFS(dir)))
			rollBack(t, filepath.Join(d, "audit"), keep, nil)
			err := openErr(t, d, nil)
			var rb *witness.RollbackError
			if !errors.As(err, &rb) || rb.PublishedSize != published || rb.LocalSize != keep {
				t.Fatalf("Open of the log rolled back to %d = %v, want a *witness.RollbackError (published %d, local %d)", keep, err, published, keep)
			}
		})
	}
}

// TestForkBetweenDataDirs runs a copy of a data dir that then diverges:
// the witness both reported to refuses it, and so vaultd does.
func TestForkBetweenDataDirs(t *testing.T) {
	var logKey atomic.Pointer[string]
	w := startTestWitness(t, &logKey)
	withWitness := func(c *server.Config) { c.Witnesses = []string{w.URL} }

	a := t.TempDir()
	v := mustStartWith(t, a, "", withWitness)
	key := strings.TrimSpace(string(v.get("/v1/audit/public-key")))
	logKey.Store(&key) // the witness trusts the log from now on
	v.createTenant("acme")
	v.stop() // Close publishes the last checkpoint to the witness

	b := filepath.Join(t.TempDir(), "data")
	must(t, os.CopyFS(b, os.DirFS(a)))

	v = mustStartWith(t, a, "", withWitness)
	v.createTenant("globex")
	v.stop()
	// A start checks with the witness and brings it every record of a.
	if err := openErr(t, a, withWitness); err != nil {
		t.Fatalf("Open of the original with the witness = %v, want nil", err)
	}

	// The copy lives on, unwitnessed, and writes a history of its own.
	unwitnessed := func(c *server.Config) { c.CheckpointTopic = "-" }
	v = mustStartWith(t, b, "", unwitnessed)
	v.createTenant("umbrella")
	v.createTenant("hooli")
	v.stop()

	err := openErr(t, b, func(c *server.Config) { c.CheckpointTopic = "-"; withWitness(c) })
	var rb *witness.RollbackError
	if !errors.As(err, &rb) || !strings.Contains(rb.Source, w.URL) {
		t.Fatalf("Open of the forked copy with the witness = %v, want a *witness.RollbackError from the witness", err)
	}
	if err := openErr(t, a, withWitness); err != nil {
		t.Errorf("Open of the original with the witness = %v, want nil", err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// startTestWitness runs transparency-dev/witness in memory on loopback,
// trusting the log key in logKey once it is set.
func startTestWitness(t *testing.T, logKey *atomic.Pointer[string]) *httptest.Server {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, "witness.test/w1")
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
	return srv
}
