package witness_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/inmemory"
	tdwitness "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/witness"
)

const origin = "tenantvault.test/audit"

// logKey is the audit log's signing key for one test.
type logKey struct {
	signer note.Signer
	vkey   string
}

func newLogKey(tb testing.TB) logKey {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return logKey{s, vkey}
}

// openLog opens the audit log in dir and appends n records; closing it
// signs a checkpoint of every record.
func openLog(tb testing.TB, dir string, k logKey, n int, action string) *audit.Log {
	tb.Helper()
	l, err := audit.Open(audit.Options{Dir: dir, Signer: k.signer, VerifierKey: k.vkey})
	if err != nil {
		tb.Fatalf("audit.Open(%s): %v", dir, err)
	}
	tb.Cleanup(func() { l.Close() })
	for range n {
		if _, err := l.Append(context.Background(), audit.Record{Principal: audit.PrincipalAdmin, Action: audit.Action(action), Outcome: audit.OutcomeOK}); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// grow appends n records to the log in dir and reopens it, so that its
// latest checkpoint covers them all.
func grow(tb testing.TB, dir string, k logKey, n int, action string) *audit.Log {
	tb.Helper()
	l := openLog(tb, dir, k, n, action)
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return openLog(tb, dir, k, 0, action)
}

// copyDir copies a closed audit log directory.
func copyDir(tb testing.TB, src string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "audit")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		tb.Fatal(err)
	}
	os.Remove(filepath.Join(dst, "LOCK"))
	return dst
}

// memTopic is an in-memory Topic.
type memTopic struct {
	mu    sync.Mutex
	notes [][]byte
	err   error // returned by Publish
}

func (t *memTopic) Name() string { return "topic test.checkpoints" }

func (t *memTopic) Publish(_ context.Context, n []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.notes = append(t.notes, bytes.Clone(n))
	return nil
}

func (t *memTopic) Last(context.Context) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.notes) == 0 {
		return nil, nil
	}
	return t.notes[len(t.notes)-1], nil
}

// testWitness is transparency-dev/witness's witness, in memory, serving
// C2SP tlog-witness over HTTP on loopback; it trusts the log's key.
type testWitness struct {
	w    *tdwitness.Witness
	url  string
	vkey string // its cosignature verifier key
}

func startWitness(tb testing.TB, logVkey string) *testWitness {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "witness.test/w1")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		tb.Fatal(err)
	}
	lv, err := note.NewVerifier(logVkey)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := tdwitness.New(context.Background(), tdwitness.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{s},
		VerifierForLog: func(_ context.Context, o string) (note.Verifier, bool, error) {
			return lv, o == lv.Name(), nil
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", tdwitness.NewHTTPHandler(w).AddCheckpoint)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return &testWitness{w: w, url: srv.URL, vkey: vkey}
}

// size is the size of the checkpoint the witness holds for the log.
func (w *testWitness) size(tb testing.TB) uint64 {
	tb.Helper()
	cp, err := w.w.GetCheckpoint(context.Background(), origin)
	if err != nil || cp == nil {
		tb.Fatalf("witness GetCheckpoint = %v, %v", cp, err)
	}
	c, err := audit.ParseCheckpoint(cp[:bytes.Index(cp, []byte("\n\n"))+1])
	if err != nil {
		tb.Fatal(err)
	}
	return c.Size
}

func newPublisher(tb testing.TB, l *audit.Log, k logKey, topic witness.Topic, ws ...*testWitness) *witness.Publisher {
	tb.Helper()
	cfg := witness.Config{Log: l, VerifierKey: k.vkey}
	if topic != nil {
		cfg.Topic = topic
	}
	for _, w := range ws {
		hw, err := witness.NewHTTPWitness(w.url, nil)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Witnesses = append(cfg.Witnesses, hw)
	}
	p, err := witness.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// The vault's checkpoints are C2SP tlog-checkpoints as transparency-dev's
// own parser reads them.
func TestCheckpointIsC2SP(t *testing.T) {
	k := newLogKey(t)
	l := grow(t, t.TempDir(), k, 3, "test.write")
	signed, size, root, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(k.vkey)
	c, _, _, err := flog.ParseCheckpoint(signed, origin, v)
	if err != nil {
		t.Fatalf("formats/log.ParseCheckpoint(our checkpoint) = %v", err)
	}
	if c.Origin != origin || c.Size != size || !bytes.Equal(c.Hash, root[:]) {
		t.Errorf("formats/log.ParseCheckpoint = %s@%d, want %s@%d and our root", c.Origin, c.Size, origin, size)
	}
}

// The protocol against transparency-dev/witness: the first checkpoint is
// taken on first use, a Publisher that does not know the witness's size
// learns it from the 409 and sends a consistency proof from it, and what
// goes to the topic carries the witness's cosignature.
func TestPublishToWitness(t *testing.T) {
	k := newLogKey(t)
	dir := t.TempDir()
	w := startWitness(t, k.vkey)
	topic := &memTopic{}

	l := grow(t, dir, k, 3, "test.write")
	p := newPublisher(t, l, k, topic, w)
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	if got := w.size(t); got != 3 {
		t.Errorf("witness holds size %d, want 3", got)
	}
	l.Close()

	// A new Publisher (a restart) does not know what the witness holds.
	l = grow(t, dir, k, 4, "test.write")
	p = newPublisher(t, l, k, topic, w)
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check after growing = %v", err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after growing = %v", err)
	}
	if got := w.size(t); got != 7 {
		t.Errorf("witness holds size %d, want 7 (after a 409 and a consistency proof from 3)", got)
	}
	last, _ := topic.Last(context.Background())
	c, have, err := witness.VerifyCosigned(last, k.vkey, []string{w.vkey}, 1)
	if err != nil || c.Size != 7 || len(have) != 1 {
		t.Errorf("VerifyCosigned(the topic's last checkpoint) = size %d, cosigned by %v, %v; want size 7 cosigned by the witness", c.Size, have, err)
	}
	if len(topic.notes) != 2 {
		t.Errorf("the topic has %d checkpoints, want 2 (sizes 3 and 7)", len(topic.notes))
	}
}

// A rolled-back or forked copy of the log is refused at start, by the
// topic and by a witness alike, naming both sizes.
func TestCheckRefusesRollbackAndFork(t *testing.T) {
	k := newLogKey(t)
	tests := []struct {
		name string
		// local makes the local log from a copy taken at size 3 of a log
		// that then grew to 6 and published.
		local      func(t *testing.T, dir string) *audit.Log
		localSize  uint64
		wantForked bool
	}{
		{"rolled back", func(t *testing.T, dir string) *audit.Log { return grow(t, dir, k, 0, "") }, 3, false},
		{"forked, same size", func(t *testing.T, dir string) *audit.Log { return grow(t, dir, k, 3, "test.other") }, 6, true},
		{"forked, larger", func(t *testing.T, dir string) *audit.Log { return grow(t, dir, k, 5, "test.other") }, 8, true},
	}
	for _, via := range []string{"topic", "witness"} {
		for _, tt := range tests {
			t.Run(via+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				l := grow(t, dir, k, 3, "test.write")
				l.Close()
				copied := copyDir(t, dir)

				var topic *memTopic
				var w *testWitness
				if via == "topic" {
					topic = &memTopic{}
				} else {
					w = startWitness(t, k.vkey)
				}
				pub := func(l *audit.Log) *witness.Publisher {
					if topic != nil {
						return newPublisher(t, l, k, topic)
					}
					return newPublisher(t, l, k, nil, w)
				}
				l = grow(t, dir, k, 3, "test.write")
				p := pub(l)
				if err := p.Check(context.Background()); err != nil {
					t.Fatalf("Check of the original = %v", err)
				}
				if err := p.Flush(context.Background()); err != nil {
					t.Fatalf("Flush = %v", err)
				}
				l.Close()

				local := tt.local(t, copied)
				err := pub(local).Check(context.Background())
				var rb *witness.RollbackError
				if !errors.As(err, &rb) {
					t.Fatalf("Check of the copy = %v, want a *RollbackError", err)
				}
				if rb.PublishedSize != 6 || rb.LocalSize != tt.localSize {
					t.Errorf("RollbackError = published %d, local %d; want 6, %d (%v)", rb.PublishedSize, rb.LocalSize, tt.localSize, err)
				}
				if forked := rb.Err != nil; forked != tt.wantForked {
					t.Errorf("RollbackError.Err = %v, want forked %v", rb.Err, tt.wantForked)
				}
				if err := pub(local).Flush(context.Background()); err == nil {
					t.Errorf("Flush of a Publisher whose Check failed = nil, want an error")
				}
			})
		}
	}
}

// A witness that is down does not stop the start, nor the topic.
func TestCheckWitnessDown(t *testing.T) {
	k := newLogKey(t)
	l := grow(t, t.TempDir(), k, 2, "test.write")
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	hw, err := witness.NewHTTPWitness(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	topic := &memTopic{}
	p, err := witness.New(witness.Config{Log: l, VerifierKey: k.vkey, Topic: topic, Witnesses: []witness.Witness{hw}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(context.Background()); err != nil {
		t.Fatalf("Check with a witness down = %v, want nil", err)
	}
	if err := p.Flush(context.Background()); err == nil {
		t.Errorf("Flush with a witness down = nil, want its error")
	}
	if len(topic.notes) != 1 {
		t.Errorf("the topic has %d checkpoints, want 1 (published without the witness)", len(topic.notes))
	}
}

func TestVerifyCosigned(t *testing.T) {
	k := newLogKey(t)
	w := startWitness(t, k.vkey)
	other := startWitness(t, k.vkey)
	topic := &memTopic{}
	l := grow(t, t.TempDir(), k, 2, "test.write")
	p := newPublisher(t, l, k, topic, w)
	if err := p.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cosigned, _ := topic.Last(context.Background())
	plain, _, _, _ := l.Checkpoint()
	i := bytes.LastIndex(cosigned, []byte("\n— witness.test/w1 ")) + len("\n— witness.test/w1 ") + 12
	forged := bytes.Clone(cosigned)
	forged[i] ^= 'A' ^ 'B'
	if forged[i] == cosigned[i] || bytes.Equal(forged, cosigned) {
		t.Fatal("the forgery changed nothing")
	}

	tests := []struct {
		name    string
		signed  []byte
		keys    []string
		min     int
		wantErr any // nil, *witness.CosignatureError, *audit.BadCheckpointError, or error
	}{
		{"cosigned, min 1", cosigned, []string{w.vkey}, 1, nil},
		{"cosigned, key given twice", cosigned, []string{w.vkey, w.vkey}, 1, nil},
		{"cosigned, min 0", cosigned, []string{w.vkey}, 0, nil},
		{"not cosigned", plain, []string{w.vkey}, 1, new(*witness.CosignatureError)},
		{"cosigned by another witness", cosigned, []string{other.vkey}, 1, new(*witness.CosignatureError)},
		{"one of two", cosigned, []string{w.vkey, other.vkey}, 2, new(*witness.CosignatureError)},
		{"forged cosignature", forged, []string{w.vkey}, 1, new(*audit.BadCheckpointError)},
		{"min above the keys", cosigned, []string{w.vkey}, 2, new(error)},
		{"no log signature", cosigned, []string{w.vkey}, 1, nil},
	}
	tests[len(tests)-1].signed = bytes.Replace(cosigned, []byte("— "+origin+" "), []byte("— "+origin+"x "), 1)
	tests[len(tests)-1].wantErr = new(*audit.BadCheckpointError)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, have, err := witness.VerifyCosigned(tt.signed, k.vkey, tt.keys, tt.min)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Errorf("VerifyCosigned = %v, want nil", err)
				}
			case **witness.CosignatureError:
				if !errors.As(err, want) {
					t.Errorf("VerifyCosigned = %v (cosigned by %v), want a *CosignatureError", err, have)
				}
			case **audit.BadCheckpointError:
				if !errors.As(err, want) {
					t.Errorf("VerifyCosigned = %v, want an *audit.BadCheckpointError", err)
				}
			default:
				if err == nil {
					t.Errorf("VerifyCosigned = nil, want an error")
				}
			}
		})
	}
}
