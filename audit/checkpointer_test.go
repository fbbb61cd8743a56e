package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/events"
)

// withSigner makes the log sign checkpoints with s (verifier key vkey).
func withSigner(s note.Signer, vkey string) func(*Options) {
	return func(o *Options) { o.Signer, o.VerifierKey = s, vkey }
}

// withInterval sets the checkpoint interval.
func withInterval(d time.Duration) func(*Options) {
	return func(o *Options) { o.CheckpointInterval = d }
}

func mustCheckpoint(tb testing.TB, l *Log) ([]byte, Checkpoint) {
	tb.Helper()
	signed, size, root, err := l.Checkpoint()
	if err != nil {
		tb.Fatalf("Checkpoint() = %v", err)
	}
	c, err := OpenCheckpoint(signed, l.PublicKey())
	if err != nil {
		tb.Fatalf("OpenCheckpoint(Checkpoint()) = %v", err)
	}
	if c.Size != size || c.Root != root {
		tb.Fatalf("Checkpoint() = size %d root %x, but the note says %v", size, root, c)
	}
	return signed, c
}

// waitCheckpoint waits until the latest checkpoint covers size records.
func waitCheckpoint(tb testing.TB, l *Log, size uint64) ([]byte, Checkpoint) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		signed, c := mustCheckpoint(tb, l)
		if c.Size >= size {
			return signed, c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no checkpoint of size %d after 10s; latest %v", size, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckpointer(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	l := MustOpenLog(t, withSigner(s, vkey), withInterval(10*time.Millisecond))
	if l.PublicKey() != vkey {
		t.Errorf("PublicKey() = %q, want %q", l.PublicKey(), vkey)
	}
	// Open signs the empty tree.
	_, c0 := mustCheckpoint(t, l)
	if c0.Size != 0 || c0.Root != emptyRoot || c0.Origin != testOrigin {
		t.Errorf("checkpoint of a new log = %v, want size 0 and the empty root", c0)
	}
	for range 10 {
		mustAppend(t, l, rec("acme", ActionStreamRead))
	}
	_, c10 := waitCheckpoint(t, l, 10)
	if c10.Size != 10 {
		t.Errorf("checkpoint after 10 appends = %v", c10)
	}
	for range 5 {
		l.AppendAsync(rec("acme", ActionStreamRead))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	// Close signed the last records; the checkpoints are on disk.
	dir := l.dir
	latest := mustRead(t, filepath.Join(dir, checkpointsDir, latestName))
	lc, err := OpenCheckpoint(latest, vkey)
	if err != nil || lc.Size != 15 {
		t.Fatalf("checkpoints/latest = %v, %v; want size 15", lc, err)
	}
	history := readHistoryFile(t, filepath.Join(dir, checkpointsDir, segmentName(0)))
	if len(history) < 3 || history[0].Size != 0 || history[len(history)-1].Note != string(latest) {
		t.Errorf("history = %d entries, want at least 3 from size 0 to the latest", len(history))
	}

	// Reopened without a signer: the checkpoints are still served.
	l2 := mustOpenDir(t, dir)
	signed, size, _, err := l2.Checkpoint()
	if err != nil || size != 15 || !bytes.Equal(signed, latest) {
		t.Errorf("Checkpoint() after reopening = %d, %v; want the latest of size 15", size, err)
	}
	for _, e := range history {
		got, err := l2.CheckpointAt(e.Size)
		if err != nil || string(got) != e.Note {
			t.Errorf("CheckpointAt(%d) = %q, %v; want %q", e.Size, got, err, e.Note)
		}
	}
	if _, err := l2.CheckpointAt(1000); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("CheckpointAt(1000) = %v, want ErrNoCheckpoint", err)
	}
	if l2.PublicKey() != "" {
		t.Errorf("PublicKey() without a key = %q", l2.PublicKey())
	}
}

func readHistoryFile(tb testing.TB, path string) []historyEntry {
	tb.Helper()
	var out []historyEntry
	for line := range bytes.Lines(mustRead(tb, path)) {
		var e historyEntry
		if err := json.Unmarshal(line, &e); err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, e)
	}
	return out
}

func TestNoSigner(t *testing.T) {
	l := MustOpenLog(t)
	if _, _, _, err := l.Checkpoint(); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Checkpoint() without a signer = %v, want ErrNoCheckpoint", err)
	}
	for range 3 {
		mustAppend(t, l, rec("acme", ActionAuth))
	}
	p, err := l.InclusionProof(1, 3)
	if err != nil || len(p) != 2 {
		t.Errorf("InclusionProof(1, 3) without a signer = %d hashes, %v; want 2", len(p), err)
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(l.dir, checkpointsDir, latestName)); err == nil {
		t.Errorf("a log without a signer wrote a checkpoint")
	}
}

// TestProofsFromLog builds a log whose blocks span segment files, and checks
// every inclusion proof and consistency proofs against the reference tree
// and with the offline verifier functions.
func TestProofsFromLog(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	dir := filepath.Join(t.TempDir(), "audit")
	mods := []func(*Options){withSigner(s, vkey), withInterval(time.Hour), func(o *Options) { o.SegmentBytes = 3000 }}
	// Three sessions: checkpoints at 0 (Open), 70 and 150 (Close).
	var cps [][]byte
	for _, n := range []int{0, 70, 80} {
		l := mustOpenDir(t, dir, mods...)
		for range n {
			l.AppendAsync(rec("acme", ActionStreamRead))
		}
		mustDo(t, l.Close())
		l = mustOpenDir(t, dir, mods...)
		signed, _ := mustCheckpoint(t, l)
		cps = append(cps, signed)
		l.Close()
	}
	l := mustOpenDir(t, dir, mods...)
	if firsts, _ := listSegments(dir); len(firsts) < 5 {
		t.Fatalf("segments = %v, want blocks to span several", firsts)
	}
	lines := readLines(t, dir)
	if len(lines) != 150 {
		t.Fatalf("%d records, want 150", len(lines))
	}
	ref := testonly.New(rfc6962.DefaultHasher)
	ref.AppendData(lines...)

	for i := range uint64(150) {
		p, err := l.InclusionProof(i, 150)
		want, _ := ref.InclusionProof(i, 150)
		if err != nil || !equalProofs(p, want) {
			t.Fatalf("InclusionProof(%d, 150) = %x, %v; want %x", i, p, err, want)
		}
		if err := VerifyInclusion(lines[i], i, p, cps[2], vkey); err != nil {
			t.Errorf("VerifyInclusion(record %d) = %v", i, err)
		}
	}
	for _, sizes := range [][2]uint64{{0, 70}, {70, 150}, {0, 150}, {150, 150}} {
		p, err := l.ConsistencyProof(sizes[0], sizes[1])
		want, _ := ref.ConsistencyProof(sizes[0], sizes[1])
		if err != nil || !equalProofs(p, want) {
			t.Fatalf("ConsistencyProof(%d, %d) = %x, %v; want %x", sizes[0], sizes[1], p, err, want)
		}
	}
	for i, pair := range [][2]int{{0, 1}, {1, 2}, {0, 2}, {2, 2}} {
		old, new := cps[pair[0]], cps[pair[1]]
		oc, _ := OpenCheckpoint(old, vkey)
		nc, _ := OpenCheckpoint(new, vkey)
		p, err := l.ConsistencyProof(oc.Size, nc.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyConsistency(old, new, p, vkey); err != nil {
			t.Errorf("%d: VerifyConsistency(%d, %d) = %v", i, oc.Size, nc.Size, err)
		}
	}
	// A record just appended is provable at the current size at once.
	r := mustAppend(t, l, rec("acme", ActionAuth))
	if p, err := l.InclusionProof(r.Index, l.Size()); err != nil || len(p) == 0 {
		t.Errorf("InclusionProof(new record) = %v, %v", p, err)
	}
}

func TestProofArguments(t *testing.T) {
	l := MustOpenLog(t)
	for range 5 {
		mustAppend(t, l, rec("acme", ActionAuth))
	}
	for _, args := range [][2]uint64{{0, 0}, {5, 5}, {0, 6}, {7, 3}} {
		if _, err := l.InclusionProof(args[0], args[1]); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("InclusionProof(%d, %d) = %v, want code EINVALID", args[0], args[1], err)
		}
	}
	for _, args := range [][2]uint64{{3, 2}, {0, 6}} {
		if _, err := l.ConsistencyProof(args[0], args[1]); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("ConsistencyProof(%d, %d) = %v, want code EINVALID", args[0], args[1], err)
		}
	}
	l.Close()
	if _, err := l.InclusionProof(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("InclusionProof after Close = %v, want ErrClosed", err)
	}
}

// TestProofOverChangedDisk: a record changed on disk under a running log is
// reported when a proof reads its block, not served as a wrong proof.
func TestProofOverChangedDisk(t *testing.T) {
	l := MustOpenLog(t)
	for range 2 * blockSize {
		l.AppendAsync(rec("acme", ActionStreamRead))
	}
	mustAppend(t, l, rec("acme", ActionAuth))
	path := filepath.Join(l.dir, segmentName(0))
	b := mustRead(t, path)
	i := bytes.Index(b, []byte(`{"index":70,`))
	j := i + bytes.Index(b[i:], []byte(`"tenant:acme"`))
	b[j+len(`"tenant:a`)] = 'x'
	mustDo(t, os.WriteFile(path, b, 0o600))
	_, err := l.InclusionProof(blockSize+1, l.Size())
	checkInconsistent(t, "InclusionProof over a changed block", err, blockSize)
	if _, err := l.InclusionProof(1, l.Size()); err != nil {
		t.Errorf("InclusionProof in an untouched block = %v", err)
	}
}

// TestOpenChecksCheckpoints closes a signed log of 8 records (checkpoint of
// size 8), damages it, and expects Open to name the record, with or without
// the key.
func TestOpenChecksCheckpoints(t *testing.T) {
	const n = 8
	tests := []struct {
		name   string
		tamper func(t *testing.T, lines [][]byte) [][]byte
		at     uint64
	}{
		{"last record deleted", func(t *testing.T, ls [][]byte) [][]byte { return ls[:n-1] }, n - 1},
		{"last three records deleted", func(t *testing.T, ls [][]byte) [][]byte { return ls[:n-3] }, n - 3},
		{"every record deleted", func(t *testing.T, ls [][]byte) [][]byte { return nil }, 0},
		{"last record rewritten", func(t *testing.T, ls [][]byte) [][]byte {
			ls[n-1] = bytes.Replace(ls[n-1], []byte(`"outcome":"ok"`), []byte(`"outcome":"denied"`), 1)
			return ls
		}, n - 1},
		{"middle record rewritten, chain recomputed", func(t *testing.T, ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"outcome":"ok"`), []byte(`"outcome":"denied"`), 1)
			return rechain(t, ls)
		}, n - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, vkey := testKey(t, testOrigin)
			l := MustOpenLog(t, withSigner(s, vkey))
			for range n {
				mustAppend(t, l, rec("acme", ActionStreamRead))
			}
			mustDo(t, l.Close())
			lines := tt.tamper(t, readLines(t, l.dir))
			mustDo(t, os.WriteFile(filepath.Join(l.dir, segmentName(0)), joinLines(lines), 0o600))

			_, err := Open(Options{Dir: l.dir, Signer: s, VerifierKey: vkey})
			checkInconsistent(t, "Open(with the key)", err, tt.at)
			_, err = Open(Options{Dir: l.dir})
			checkInconsistent(t, "Open(without a key)", err, tt.at)
		})
	}
}

// TestOpenTornTail: a torn line after the checkpointed records is cut as
// before; a checkpointed record cut short is an error, and the evidence is
// left on disk.
func TestOpenTornTail(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	l := MustOpenLog(t, withSigner(s, vkey))
	for range 5 {
		mustAppend(t, l, rec("acme", ActionStreamRead))
	}
	mustDo(t, l.Close())
	path := filepath.Join(l.dir, segmentName(0))
	good := mustRead(t, path)

	mustDo(t, os.WriteFile(path, append(bytes.Clone(good), `{"index":5,"ti`...), 0o600))
	l2 := mustOpenDir(t, l.dir, withSigner(s, vkey))
	if n := l2.Size(); n != 5 {
		t.Errorf("Size() after cutting a torn line = %d, want 5", n)
	}
	mustAppend(t, l2, rec("acme", ActionAuth))
	mustDo(t, l2.Close())

	b := mustRead(t, path)
	cut := b[:len(b)-20]
	mustDo(t, os.WriteFile(path, cut, 0o600))
	_, err := Open(Options{Dir: l.dir, Signer: s, VerifierKey: vkey})
	checkInconsistent(t, "Open(checkpointed record cut short)", err, 5)
	if after := mustRead(t, path); !bytes.Equal(after, cut) {
		t.Errorf("Open changed a segment whose checkpointed record was cut short: %d bytes, was %d", len(after), len(cut))
	}
}

func TestOpenChecksCheckpointHistory(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	other, otherVkey := testKey(t, testOrigin)
	setup := func(t *testing.T) string {
		l := MustOpenLog(t, withSigner(s, vkey), withInterval(time.Millisecond))
		for i := range 20 {
			mustAppend(t, l, rec("acme", ActionStreamRead))
			if i%5 == 4 {
				waitCheckpoint(t, l, uint64(i+1))
			}
		}
		mustDo(t, l.Close())
		return l.dir
	}
	cpDir := func(dir string) string { return filepath.Join(dir, checkpointsDir) }
	histPath := func(dir string) string { return filepath.Join(cpDir(dir), segmentName(0)) }

	t.Run("latest deleted or damaged is rewritten", func(t *testing.T) {
		dir := setup(t)
		latest := mustRead(t, filepath.Join(cpDir(dir), latestName))
		for _, damage := range []func(){
			func() { mustDo(t, os.Remove(filepath.Join(cpDir(dir), latestName))) },
			func() { mustDo(t, os.WriteFile(filepath.Join(cpDir(dir), latestName), []byte("junk"), 0o600)) },
		} {
			damage()
			l := mustOpenDir(t, dir, withSigner(s, vkey))
			mustDo(t, l.Close())
			if got := mustRead(t, filepath.Join(cpDir(dir), latestName)); !bytes.Equal(got, latest) {
				t.Errorf("checkpoints/latest after reopening = %q, want %q", got, latest)
			}
		}
	})
	t.Run("torn history line is cut", func(t *testing.T) {
		dir := setup(t)
		f, err := os.OpenFile(histPath(dir), os.O_WRONLY|os.O_APPEND, 0)
		mustDo(t, err)
		f.WriteString(`{"size":21,"no`)
		f.Close()
		l := mustOpenDir(t, dir, withSigner(s, vkey), withInterval(time.Millisecond))
		mustAppend(t, l, rec("acme", ActionAuth))
		waitCheckpoint(t, l, 21)
		mustDo(t, l.Close())
		mustOpenDir(t, dir, withSigner(s, vkey))
	})
	t.Run("history deleted", func(t *testing.T) {
		dir := setup(t)
		mustDo(t, os.Remove(histPath(dir)))
		_, err := Open(Options{Dir: dir})
		var bc *BadCheckpointError
		if !errors.As(err, &bc) {
			t.Errorf("Open(history deleted, latest kept) = %v, want *BadCheckpointError", err)
		}
	})
	t.Run("another key", func(t *testing.T) {
		dir := setup(t)
		_, err := Open(Options{Dir: dir, Signer: other, VerifierKey: otherVkey})
		var bc *BadCheckpointError
		if !errors.As(err, &bc) || !strings.Contains(bc.Reason, "does not verify with the log's key") {
			t.Errorf("Open(another key) = %v, want *BadCheckpointError", err)
		}
	})
	damages := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"entry size changed", func(b []byte) []byte { return bytes.Replace(b, []byte(`{"size":5,`), []byte(`{"size":6,`), 1) }},
		{"entries swapped", func(b []byte) []byte {
			ls := bytes.SplitAfter(b, []byte("\n"))
			ls[1], ls[2] = ls[2], ls[1]
			return bytes.Join(ls, nil)
		}},
		{"not JSON", func(b []byte) []byte { return append([]byte("x\n"), b...) }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := setup(t)
			mustDo(t, os.WriteFile(histPath(dir), d.damage(mustRead(t, histPath(dir))), 0o600))
			_, err := Open(Options{Dir: dir, Signer: s, VerifierKey: vkey})
			var bc *BadCheckpointError
			if !errors.As(err, &bc) {
				t.Errorf("Open(%s) = %v, want *BadCheckpointError", d.name, err)
			}
		})
	}
	t.Run("root of an old checkpoint", func(t *testing.T) {
		// A history entry for size 5 with another root, validly signed:
		// the records do not match it.
		dir := setup(t)
		forged := mustSignCheckpoint(t, Checkpoint{Origin: testOrigin, Size: 5, Root: LeafHash([]byte("x"))}, s)
		line, _ := json.Marshal(historyEntry{Size: 5, Note: string(forged)})
		b := mustRead(t, histPath(dir))
		ls := bytes.SplitAfter(b, []byte("\n"))
		for i, l := range ls {
			if bytes.HasPrefix(l, []byte(`{"size":5,`)) {
				ls[i] = append(line, '\n')
			}
		}
		mustDo(t, os.WriteFile(histPath(dir), bytes.Join(ls, nil), 0o600))
		_, err := Open(Options{Dir: dir, Signer: s, VerifierKey: vkey})
		checkInconsistent(t, "Open(history root forged)", err, 4)
	})
}

func TestHistoryRolls(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	l := MustOpenLog(t, withSigner(s, vkey), withInterval(time.Millisecond), func(o *Options) { o.SegmentBytes = 1000 })
	var sizes []uint64
	for i := range 12 {
		mustAppend(t, l, rec("acme", ActionAuth))
		waitCheckpoint(t, l, uint64(i+1))
		sizes = append(sizes, uint64(i+1))
	}
	mustDo(t, l.Close())
	firsts, _ := listSegments(filepath.Join(l.dir, checkpointsDir))
	if len(firsts) < 3 {
		t.Fatalf("history files = %v, want it rolled", firsts)
	}
	l2 := mustOpenDir(t, l.dir, withSigner(s, vkey))
	for _, size := range sizes {
		b, err := l2.CheckpointAt(size)
		if err != nil {
			t.Errorf("CheckpointAt(%d) = %v", size, err)
			continue
		}
		if c, err := OpenCheckpoint(b, vkey); err != nil || c.Size != size {
			t.Errorf("CheckpointAt(%d) = %v, %v", size, c, err)
		}
	}
}

func TestOptionsValidateSigner(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	_, otherVkey := testKey(t, testOrigin)
	_, renamedVkey := testKey(t, "other.example/log")
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"signer without verifier key", Options{Dir: "d", Signer: s}, "VerifierKey is required"},
		{"another key", Options{Dir: "d", Signer: s, VerifierKey: otherVkey}, "VerifierKey is for key"},
		{"another name", Options{Dir: "d", Signer: s, VerifierKey: renamedVkey}, "VerifierKey is for key"},
		{"not a key", Options{Dir: "d", Signer: s, VerifierKey: "x"}, "not a note verifier key"},
		{"negative interval", Options{Dir: "d", CheckpointInterval: -1}, "CheckpointInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.setDefaults()
			if err := tt.o.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
	// A signer with a VerifierKey method needs no VerifierKey option.
	o := Options{Dir: "d", Signer: vkeySigner{s, vkey}}
	o.setDefaults()
	if err := o.Validate(); err != nil || o.VerifierKey != vkey {
		t.Errorf("Validate(signer with VerifierKey()) = %v, VerifierKey %q", err, o.VerifierKey)
	}
}

type vkeySigner struct {
	note.Signer
	vkey string
}

func (s vkeySigner) VerifierKey() string { return s.vkey }

// TestVerifyExportDirOfLiveLog verifies the directory of a running log
// against its own checkpoint.
func TestVerifyExportDirOfLiveLog(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	l := MustOpenLog(t, withSigner(s, vkey), withInterval(time.Millisecond), func(o *Options) { o.SegmentBytes = 2000 })
	for range 100 {
		l.AppendAsync(rec("acme", ActionStreamRead))
	}
	mustAppend(t, l, rec("acme", ActionAuth))
	signed, c := waitCheckpoint(t, l, 101)
	rep, err := VerifyExportDir(context.Background(), l.dir, signed, vkey)
	if err != nil || rep.Records != 101 || rep.Checkpoint != c || rep.Files < 5 {
		t.Errorf("VerifyExportDir(live log) = %+v, %v", rep, err)
	}
	if err := l.Verify(context.Background()); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

// TestSignerAddedLater: a log written without a signer gets a checkpoint of
// all its records when it is first opened with one.
func TestSignerAddedLater(t *testing.T) {
	l := MustOpenLog(t)
	for range 10 {
		mustAppend(t, l, rec("acme", ActionAuth))
	}
	mustDo(t, l.Close())
	s, vkey := testKey(t, testOrigin)
	l2 := mustOpenDir(t, l.dir, withSigner(s, vkey), withInterval(time.Hour))
	if _, c := mustCheckpoint(t, l2); c.Size != 10 {
		t.Errorf("checkpoint after adding a signer = %v, want size 10", c)
	}
}
