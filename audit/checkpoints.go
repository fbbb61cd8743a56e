package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// On-disk layout of the checkpoints, under <dir>/checkpoints/:
//
//	latest               the latest signed checkpoint, as is (a signed note);
//	                     replaced atomically (temporary file, fsync, rename)
//	NNNNNNNNNNNN.jsonl   history, append-only: one line per checkpoint,
//	                     {"size":N,"note":"<the signed note>"}, sizes strictly
//	                     increasing; a file is named by the size of its first
//	                     checkpoint and rolled at about Options.SegmentBytes
//
// A checkpoint is appended to the history (and fsynced) before latest is
// replaced, so the history's last line is always the latest checkpoint.
const (
	checkpointsDir = "checkpoints"
	latestName     = "latest"
)

// historyEntry is one line of a history file.
type historyEntry struct {
	Size uint64 `json:"size"`
	Note string `json:"note"`
}

// signedCheckpoint is a checkpoint with its signed note.
type signedCheckpoint struct {
	note []byte
	cp   Checkpoint
}

// cpLoc says where a checkpoint is in the history.
type cpLoc struct {
	size uint64
	file int32 // index in checkpointStore.files
	n    int32 // line length without the newline
	off  int64
}

// checkpointStore is the history of signed checkpoints. append is called by
// one goroutine at a time (Open, then the checkpointer, then Close); the
// readers (latest, at) may run concurrently with it.
type checkpointStore struct {
	dir    string
	roll   int64
	logger *slog.Logger

	mu    sync.RWMutex // guards files, locs and last
	files []string
	locs  []cpLoc
	last  *signedCheckpoint

	w      *os.File // the active history file, opened on the first append
	wSize  int64
	failed error // sticky: after a failed append nothing more is written until reopen
}

// openCheckpointStore reads the history in <dir>/checkpoints (creating the
// directory), cuts a torn last line (an append interrupted by a crash:
// never published in latest), and repairs latest if it lags behind. It
// returns the store and every checkpoint in the history, oldest first. With
// v set, the latest checkpoint must carry a valid signature by v.
func openCheckpointStore(dir string, roll int64, logger *slog.Logger, v note.Verifier) (*checkpointStore, []Checkpoint, error) {
	s := &checkpointStore{dir: filepath.Join(dir, checkpointsDir), roll: roll, logger: logger}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", s.dir, err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), atomicfile.TmpPrefix) {
			os.Remove(filepath.Join(s.dir, e.Name())) // left by a crash in atomicfile.WriteFile
		}
	}
	firsts, err := listSegments(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", s.dir, err)
	}
	var history []Checkpoint
	var lastNote []byte
	for fi, first := range firsts {
		name := segmentName(first)
		cps, note, err := s.readHistory(name, fi, first, fi == len(firsts)-1, history)
		if err != nil {
			return nil, nil, err
		}
		if len(cps) == 0 {
			// The last file, created by an append that crashed before its
			// line was written: it would name the wrong first size.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return nil, nil, fmt.Errorf("remove empty checkpoint history %s: %w", name, err)
			}
			if err := atomicfile.SyncDir(s.dir); err != nil {
				return nil, nil, fmt.Errorf("sync %s: %w", s.dir, err)
			}
			s.wSize = 0
			continue
		}
		s.files = append(s.files, name)
		history = append(history, cps...)
		if note != nil {
			lastNote = note
		}
	}

	latestPath := filepath.Join(s.dir, latestName)
	onDisk, err := os.ReadFile(latestPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read %s: %w", latestPath, err)
	}
	if len(history) == 0 {
		if err == nil {
			return nil, nil, &BadCheckpointError{Reason: fmt.Sprintf("%s/%s exists but the checkpoint history is empty: it was deleted", checkpointsDir, latestName)}
		}
		return s, nil, nil
	}
	last := history[len(history)-1]
	if v != nil {
		c, err := openCheckpoint(lastNote, v)
		if err != nil {
			return nil, nil, &BadCheckpointError{Reason: fmt.Sprintf("the latest checkpoint in the history (size %d) does not verify with the log's key: %s", last.Size, errReason(err)), Err: err}
		}
		if c != last {
			return nil, nil, &BadCheckpointError{Reason: fmt.Sprintf("the latest checkpoint in the history (size %d) has another text than its note", last.Size)}
		}
	}
	if !bytes.Equal(onDisk, lastNote) {
		if onDisk != nil {
			logger.Warn("audit: checkpoints/latest is not the last checkpoint of the history (interrupted write?): rewriting it", "size", last.Size)
		}
		if err := atomicfile.WriteFile(latestPath, lastNote, atomicfile.Options{}); err != nil {
			return nil, nil, fmt.Errorf("write %s: %w", latestPath, err)
		}
	}
	s.last = &signedCheckpoint{note: lastNote, cp: last}
	return s, history, nil
}

func errReason(err error) string {
	var bad *BadCheckpointError
	if errors.As(err, &bad) {
		return bad.Reason
	}
	return err.Error()
}

// readHistory reads history file name (the fi-th, starting at size first),
// after the checkpoints in before. It returns its checkpoints and the last
// one's signed note.
func (s *checkpointStore) readHistory(name string, fi int, first uint64, last bool, before []Checkpoint) ([]Checkpoint, []byte, error) {
	path := filepath.Join(s.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open checkpoint history: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var (
		out      []Checkpoint
		lastNote []byte
		off      int64
		lineNo   int
	)
	prev := func() (Checkpoint, bool) {
		if len(out) > 0 {
			return out[len(out)-1], true
		}
		if len(before) > 0 {
			return before[len(before)-1], true
		}
		return Checkpoint{}, false
	}
	for {
		lineNo++
		bad := func(format string, args ...any) error {
			return &BadCheckpointError{Reason: fmt.Sprintf("%s/%s line %d: ", checkpointsDir, name, lineNo) + fmt.Sprintf(format, args...)}
		}
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			if len(line) == 0 {
				break
			}
			if !last {
				return nil, nil, bad("%d bytes without a newline at the end of a closed history file", len(line))
			}
			// An append interrupted by a crash: never fsynced whole, never
			// published in latest.
			s.logger.Warn("audit: cut a torn final line of the checkpoint history", "file", name, "offset", off, "bytes", len(line))
			if err := truncateSync(path, off); err != nil {
				return nil, nil, fmt.Errorf("cut torn tail of %s: %w", path, err)
			}
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", path, err)
		}
		c, note, err := parseHistoryLine(line)
		if err != nil {
			return nil, nil, bad("%v", err)
		}
		if p, ok := prev(); ok {
			if err := follows(c, p); err != nil {
				return nil, nil, bad("%v", err)
			}
		}
		if len(out) == 0 && c.Size != first {
			return nil, nil, bad("the first checkpoint has size %d, but the file is named for size %d", c.Size, first)
		}
		out = append(out, c)
		lastNote = note
		s.locs = append(s.locs, cpLoc{size: c.Size, file: int32(fi), n: int32(len(line) - 1), off: off})
		off += int64(len(line))
	}
	if len(out) == 0 && !last {
		return nil, nil, &BadCheckpointError{Reason: fmt.Sprintf("%s/%s: an empty history file before the last one", checkpointsDir, name)}
	}
	if last {
		s.wSize = off
	}
	return out, lastNote, nil
}

// parseHistoryLine decodes one line of a history file: an entry whose
// signed note holds a checkpoint of the entry's size. It returns the
// checkpoint and the note.
func parseHistoryLine(line []byte) (Checkpoint, []byte, error) {
	if len(line) > 4*MaxCheckpointBytes {
		return Checkpoint{}, nil, fmt.Errorf("a line of %d bytes", len(line))
	}
	var e historyEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return Checkpoint{}, nil, fmt.Errorf("not a history entry: %s", jsonErrorKind(err))
	}
	text, ok := noteText([]byte(e.Note))
	if !ok {
		return Checkpoint{}, nil, errors.New("not a signed note")
	}
	c, err := ParseCheckpoint(text)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Size != e.Size {
		return Checkpoint{}, nil, fmt.Errorf("entry for size %d holds a checkpoint of size %d", e.Size, c.Size)
	}
	return c, []byte(e.Note), nil
}

// follows checks that checkpoint c may come after p in the history: a
// larger tree of the same origin.
func follows(c, p Checkpoint) error {
	if c.Size <= p.Size {
		return fmt.Errorf("size %d after size %d: the history must grow", c.Size, p.Size)
	}
	if c.Origin != p.Origin {
		return fmt.Errorf("origin %.80q after origin %.80q", c.Origin, p.Origin)
	}
	return nil
}

// latest returns the latest checkpoint, or nil.
func (s *checkpointStore) latest() *signedCheckpoint {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last
}

// at returns the signed checkpoint of the given size from the history.
func (s *checkpointStore) at(size uint64) ([]byte, error) {
	s.mu.RLock()
	i := sort.Search(len(s.locs), func(i int) bool { return s.locs[i].size >= size })
	if i == len(s.locs) || s.locs[i].size != size {
		s.mu.RUnlock()
		return nil, ErrNoCheckpoint
	}
	loc := s.locs[i]
	name := s.files[loc.file]
	s.mu.RUnlock()

	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("audit: read checkpoint %d: %w", size, err)
	}
	defer f.Close()
	line := make([]byte, loc.n)
	if _, err := f.ReadAt(line, loc.off); err != nil {
		return nil, fmt.Errorf("audit: read checkpoint %d: %w", size, err)
	}
	var e historyEntry
	if err := json.Unmarshal(line, &e); err != nil || e.Size != size {
		return nil, &BadCheckpointError{Reason: fmt.Sprintf("%s/%s at byte %d: the entry for size %d changed on disk", checkpointsDir, name, loc.off, size)}
	}
	return []byte(e.Note), nil
}

// append persists a new checkpoint, larger than the last: one history line
// (fsynced, in a new file if the active one is full), then latest.
func (s *checkpointStore) append(sc *signedCheckpoint) error {
	if s.failed != nil {
		return s.failed
	}
	if last := s.latest(); last != nil && sc.cp.Size <= last.cp.Size {
		return fmt.Errorf("checkpoint of size %d after one of size %d", sc.cp.Size, last.cp.Size)
	}
	line, err := json.Marshal(historyEntry{Size: sc.cp.Size, Note: string(sc.note)})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	s.mu.RLock()
	nfiles := len(s.files)
	s.mu.RUnlock()
	newFile := nfiles == 0 || (s.wSize > 0 && s.wSize+int64(len(line)) > s.roll)
	if !newFile && s.w == nil {
		s.mu.RLock()
		name := s.files[nfiles-1]
		s.mu.RUnlock()
		if s.w, err = os.OpenFile(filepath.Join(s.dir, name), os.O_WRONLY|os.O_APPEND, 0); err != nil {
			return fmt.Errorf("open checkpoint history: %w", err)
		}
	}
	name := segmentName(sc.cp.Size)
	if newFile {
		if s.w != nil {
			err := s.w.Close()
			s.w = nil
			if err != nil {
				return fmt.Errorf("close checkpoint history: %w", err)
			}
		}
		if s.w, err = os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return fmt.Errorf("create checkpoint history: %w", err)
		}
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("sync %s: %w", s.dir, err)
		}
		s.wSize = 0
		s.mu.Lock()
		s.files = append(s.files, name)
		nfiles++
		s.mu.Unlock()
	}
	off := s.wSize
	n, err := s.w.Write(line)
	s.wSize += int64(n)
	if err == nil {
		err = s.w.Sync()
	}
	if err != nil {
		// The line may be half written: appending after it would bury a
		// torn line in the middle of the history. Stop; Open cuts it.
		s.failed = fmt.Errorf("append checkpoint history (no more checkpoints until the log is reopened): %w", err)
		return s.failed
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, latestName), sc.note, atomicfile.Options{}); err != nil {
		return fmt.Errorf("write checkpoints/%s: %w", latestName, err)
	}
	s.mu.Lock()
	s.locs = append(s.locs, cpLoc{size: sc.cp.Size, file: int32(nfiles - 1), n: int32(len(line) - 1), off: off})
	s.last = sc
	s.mu.Unlock()
	return nil
}

func (s *checkpointStore) close() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}

// checkpointMismatch is the error for records that chain correctly but do
// not hash to the root checkpoint c signed; last is record c.Size-1. That
// record is then provably not the one signed (its leaf hash commits, through
// the chain, to every record before it), though records before it may have
// been rewritten too, their chain recomputed: At names it. A checkpoint of
// size 0 with another root than the empty tree's is itself bad.
func checkpointMismatch(c Checkpoint, got [HashSize]byte, last scanned) error {
	if c.Size == 0 {
		return &BadCheckpointError{Reason: fmt.Sprintf("the checkpoint of size 0 has root %s, not the empty tree's", base64.StdEncoding.EncodeToString(c.Root[:]))}
	}
	return &InconsistentError{At: c.Size - 1,
		Want: fmt.Sprintf("the tree root %s signed by the checkpoint of size %d", base64.StdEncoding.EncodeToString(c.Root[:]), c.Size),
		Got: fmt.Sprintf("root %s: record %d is not the record signed (records before it may have been rewritten with it, their chain recomputed)",
			base64.StdEncoding.EncodeToString(got[:]), c.Size-1),
		File: last.file, Line: last.lineNo, Offset: last.off}
}

// checkpointPastEnd is the error for a log that ends before the records
// checkpoint c signed: records were cut off its end.
func checkpointPastEnd(c Checkpoint, res scanResult) error {
	got := fmt.Sprintf("the log ends after %d records", res.n)
	if res.torn > 0 {
		got += fmt.Sprintf(" and %d bytes of a cut-off line", res.torn)
	}
	e := &InconsistentError{At: res.n, Want: fmt.Sprintf("%d records, as the checkpoint of size %d signed", c.Size, c.Size), Got: got, Offset: -1}
	if len(res.segs) > 0 {
		last := res.segs[len(res.segs)-1]
		e.File, e.Offset = last.name, last.size
	}
	return e
}
