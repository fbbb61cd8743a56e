package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// ErrClosed is returned by Append and List on a closed Log.
var ErrClosed = &events.Error{Code: events.EUNAVAILABLE, Message: "audit log is closed"}

// ErrNoCheckpoint is returned by Checkpoint when the log has no checkpoint
// (it has never had a Signer) and by CheckpointAt for a size that has none.
var ErrNoCheckpoint = &events.Error{Code: events.ENOTFOUND, Message: "audit log has no such checkpoint"}

// Defaults and bounds of Options.
const (
	DefaultMaxBatch           = 1024
	DefaultSegmentBytes       = 64 << 20
	MaxSegmentBytes           = 1 << 30 // offsets in the in-memory index are 32-bit
	DefaultCheckpointInterval = time.Second
)

// Options configures Open.
type Options struct {
	// Dir is the log's directory, <data-dir>/audit. Required; created 0700
	// if missing.
	Dir string
	// MaxBatch bounds how many records one group commit writes and fsyncs
	// at once. Default DefaultMaxBatch.
	MaxBatch int
	// OnFlagged, if set, is called once for each flagged record after it is
	// durable, in index order, from a goroutine of the Log's own (never
	// under a lock and never on the appender's goroutine). It may call
	// Append; it must not call Close. A panic in it is recovered and logged.
	// A crash between the fsync and the call loses the call, not the
	// record: List with Filter{Flagged: true} finds every flagged record.
	OnFlagged func(Record)
	// Logger receives recovery notices and asynchronous failures. Default:
	// discard.
	Logger *slog.Logger
	// SegmentBytes is the size at which a segment file is closed and the
	// next one started. Default DefaultSegmentBytes, at most MaxSegmentBytes.
	SegmentBytes int64
	// QueueSize is how many records may wait for the writer before Append
	// and AppendAsync block. Default 8 × MaxBatch.
	QueueSize int

	// Signer signs the log's checkpoints (keys.Keystore.AuditSigner returns
	// one); its key name is the log's origin, and must be a valid
	// checkpoint origin. With a Signer, Open makes a checkpoint if the
	// latest one does not cover every record, a checkpointer goroutine
	// makes one every CheckpointInterval while records arrive, and Close
	// makes a last one. Without a Signer, the log keeps its Merkle tree and
	// serves proofs but makes no checkpoints (Checkpoint returns the latest
	// one on disk, if any, or ErrNoCheckpoint).
	Signer note.Signer
	// VerifierKey is the note verifier key of Signer,
	// "<name>+<hash>+<base64>", returned by PublicKey. If empty it is taken
	// from Signer when Signer has a VerifierKey() string method (as
	// keys.CheckpointSigner has); with a Signer it is required and must
	// have Signer's name and key hash. When set, Open checks that the
	// latest checkpoint on disk is signed by it, and every new checkpoint
	// is verified with it before it is written.
	VerifierKey string
	// CheckpointInterval is how often the checkpointer signs a checkpoint
	// of the durable records, if any arrived since the last one. Default
	// DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// OnCheckpoint, if set, is called with each new signed checkpoint once
	// it is persisted (history and latest), from the goroutine that signed
	// it (Open, the checkpointer, Close). It must not block (hand the
	// checkpoint to a goroutine of the caller's, as audit/witness's
	// Publisher.Notify does) and must not call Close. It is how checkpoints
	// leave the vault as they are signed.
	OnCheckpoint func(signedNote []byte, c Checkpoint)
}

func (o *Options) setDefaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.QueueSize == 0 {
		o.QueueSize = 8 * o.MaxBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.VerifierKey == "" && o.Signer != nil {
		if s, ok := o.Signer.(interface{ VerifierKey() string }); ok {
			o.VerifierKey = s.VerifierKey()
		}
	}
}

// Validate reports every problem with o (after defaults are applied).
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("audit: Dir is required"))
	}
	if o.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("audit: MaxBatch %d is negative", o.MaxBatch))
	}
	if o.SegmentBytes < 0 || o.SegmentBytes > MaxSegmentBytes {
		errs = append(errs, fmt.Errorf("audit: SegmentBytes %d is outside 1 to %d", o.SegmentBytes, MaxSegmentBytes))
	}
	if o.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("audit: QueueSize %d is negative", o.QueueSize))
	}
	if o.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("audit: CheckpointInterval %v is negative", o.CheckpointInterval))
	}
	var v note.Verifier
	if o.VerifierKey != "" {
		var err error
		if v, err = note.NewVerifier(o.VerifierKey); err != nil {
			errs = append(errs, fmt.Errorf("audit: VerifierKey is not a note verifier key: %w", err))
		} else if err := checkOrigin(v.Name()); err != nil {
			errs = append(errs, fmt.Errorf("audit: VerifierKey: %w", err))
		}
	}
	if o.Signer != nil {
		switch {
		case o.VerifierKey == "":
			errs = append(errs, errors.New("audit: VerifierKey is required with a Signer"))
		case v != nil && (v.Name() != o.Signer.Name() || v.KeyHash() != o.Signer.KeyHash()):
			errs = append(errs, fmt.Errorf("audit: VerifierKey is for key %s+%08x, but Signer is %s+%08x",
				v.Name(), v.KeyHash(), o.Signer.Name(), o.Signer.KeyHash()))
		}
	}
	return errors.Join(errs...)
}

// Log is the audit log. Its methods are safe for concurrent use.
type Log struct {
	opts   Options
	dir    string
	logger *slog.Logger
	unlock func() error

	reqs       chan *request
	closeMu    sync.RWMutex // held for reading while a request is handed to the writer
	closed     bool
	closing    chan struct{}
	writerDone chan struct{}

	// Owned by the writer goroutine (and by Open before it starts).
	w       *os.File // the active segment, opened for appending
	segSize int64    // bytes in the active segment
	next    uint64   // index of the next record
	head    [HashSize]byte
	failed  error // sticky: after a failed write or fsync nothing more is written
	buf     []byte
	batch   []*request
	pend    []pending
	syncs   atomic.Uint64 // fsyncs of committed batches (read by benchmarks)

	mu  sync.RWMutex // guards idx
	idx index

	filesMu     sync.RWMutex // held for reading while List reads segment files
	filesClosed bool

	notify *notifier

	tree     tree          // guarded by mu, like idx
	verifier note.Verifier // of Options.VerifierKey; nil without one
	cps      *checkpointStore
	cpMu     sync.Mutex    // serialises checkpoint: Open, the checkpointer, CheckpointNow, Close
	cpStop   chan struct{} // closed by Close to stop the checkpointer; nil without a Signer
	cpDone   chan struct{}
}

// request is one record waiting for the writer.
type request struct {
	rec   Record
	state atomic.Int32 // statePending, then stateTaken by the writer or stateCancelled by the waiter
	done  chan result  // buffered; nil for AppendAsync
	// seal, if set, completes rec once its Index and Prev are known (the
	// writer calls it; see AppendReceipt).
	seal func(*Record) error
}

const (
	statePending int32 = iota
	stateTaken
	stateCancelled
)

type result struct {
	rec Record
	err error
}

// pending is a record of the batch being committed.
type pending struct {
	req  *request
	rec  Record
	off  int64 // in its segment
	size int   // line length without the newline
	leaf [HashSize]byte
}

// Open opens the log in opts.Dir, creating it if needed. It reads every
// record, checks the chain, rebuilds the Merkle tree and checks it against
// every checkpoint in <dir>/checkpoints: a checkpoint whose size is past the
// end of the log (records cut off) or whose root does not match is an
// *InconsistentError, a damaged checkpoint history or a latest checkpoint not
// signed by Options.VerifierKey an *BadCheckpointError. A torn final line (a
// crash in the middle of a write: never acknowledged, never checkpointed)
// is cut off and logged; any other damage is an *InconsistentError naming the
// first bad record, and the log is not opened. With a Signer, Open then
// signs a checkpoint of every record if the latest one does not cover them
// all, and starts the checkpointer. Only one Log may have a directory open
// at a time.
func Open(opts Options) (*Log, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	dir := filepath.Clean(opts.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: lock %s: %w", dir, err)
	}
	l := &Log{
		opts:       opts,
		dir:        dir,
		logger:     opts.Logger,
		unlock:     unlock,
		reqs:       make(chan *request, opts.QueueSize),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
		idx:        newIndex(),
	}
	if opts.VerifierKey != "" {
		l.verifier, _ = note.NewVerifier(opts.VerifierKey) // checked by Validate
	}
	cps, history, err := openCheckpointStore(dir, opts.SegmentBytes, l.logger, l.verifier)
	if err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	l.cps = cps
	if err := l.recover(history); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	if opts.Signer != nil {
		if err := l.checkpoint(); err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("audit: open %s: %w", dir, err)
		}
		l.cpStop, l.cpDone = make(chan struct{}), make(chan struct{})
		go l.runCheckpointer()
	}
	l.notify = newNotifier(opts.OnFlagged, l.logger)
	go l.notify.run()
	go l.run()
	return l, nil
}

// recover scans the directory, builds the index and the tree, checks them
// against the checkpoints in history (oldest first) and opens the active
// segment.
func (l *Log) recover(history []Checkpoint) error {
	// Checkpoints are compared with the tree as the scan reaches their sizes.
	next := 0
	check := func(last scanned) error {
		for ; next < len(history) && history[next].Size == l.tree.size; next++ {
			if root := l.tree.root(); root != history[next].Root {
				return checkpointMismatch(history[next], root, last)
			}
		}
		return nil
	}
	if err := check(scanned{}); err != nil {
		return err
	}
	res, err := scan(context.Background(), l.dir, scanOptions{
		visit: func(s scanned) error {
			if end := s.off + int64(len(s.line)); end > math.MaxUint32 {
				return fmt.Errorf("record %d ends at byte %d of its segment, past the limit of %d", s.rec.Index, end, uint64(math.MaxUint32))
			}
			l.idx.add1(s.rec, s.off, len(s.line))
			l.tree.append(s.hash)
			return check(s)
		},
	})
	if err != nil {
		return err
	}
	if next < len(history) {
		return checkpointPastEnd(history[len(history)-1], res)
	}
	if res.torn > 0 {
		last := res.segs[len(res.segs)-1]
		if err := truncateSync(filepath.Join(l.dir, last.name), last.size); err != nil {
			return fmt.Errorf("cut torn tail of %s: %w", last.name, err)
		}
		l.logger.Warn("audit: cut a torn final line left by an interrupted write",
			"file", last.name, "offset", last.size, "bytes", res.torn, "records", res.n)
	}
	for _, s := range res.segs {
		seg, err := openSegment(l.dir, s.first)
		if err != nil {
			return err
		}
		l.idx.segs = append(l.idx.segs, seg)
	}
	l.next = res.n
	l.head = res.head
	l.idx.size = res.n
	l.idx.head = l.headHex()

	if len(res.segs) == 0 {
		seg, w, err := createSegment(l.dir, 0)
		if err != nil {
			return err
		}
		l.idx.segs = append(l.idx.segs, seg)
		l.w = w
		return nil
	}
	last := res.segs[len(res.segs)-1]
	w, err := os.OpenFile(filepath.Join(l.dir, last.name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open segment %s for append: %w", last.name, err)
	}
	l.w = w
	l.segSize = last.size
	return nil
}

func (l *Log) headHex() string {
	if l.next == 0 {
		return ""
	}
	return hex.EncodeToString(l.head[:])
}

// Append adds r to the log and returns it as stored, with Index, Time (if it
// was zero) and Prev filled, once it is durable on disk. Concurrent Appends
// share one write and one fsync (group commit).
//
// Index and Prev in r are ignored. Strings are bounded and forced to valid
// UTF-8 and an invalid Tenant is quoted (see the package documentation); an
// empty Action, an unknown Outcome or a Details[DetailReceipt] (receipts go
// through AppendReceipt) is refused with code EINVALID.
//
// If ctx ends first, Append returns ctx.Err() and the record is not in the
// log; if the writer has already taken the record, Append waits for its
// fsync and returns the outcome. An error from the disk leaves the log failed
// (every later Append fails with it) until it is reopened; a record whose
// Append failed that way may still be found in the log after reopening.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	rec, err := normalize(r)
	if err != nil {
		return Record{}, err
	}
	req := &request{rec: rec, done: make(chan result, 1)}
	if err := l.enqueue(ctx, req); err != nil {
		return Record{}, err
	}
	select {
	case res := <-req.done:
		return res.rec, res.err
	case <-ctx.Done():
		if req.state.CompareAndSwap(statePending, stateCancelled) {
			return Record{}, ctx.Err()
		}
		res := <-req.done // taken: the writer answers after one fsync
		return res.rec, res.err
	}
}

// AppendAsync adds r to the log without waiting for it to be durable. It is
// ordered with Append and written by the next group commit. It blocks only
// while Options.QueueSize records are already waiting (the disk is stalled):
// an audit record is never dropped to keep a hot path fast. Failures (an
// invalid record, a closed log, a disk error) are logged, not returned.
func (l *Log) AppendAsync(r Record) {
	rec, err := normalize(r)
	if err != nil {
		l.logger.Error("audit: record not appended", "action", clean(string(r.Action), MaxActionLen), "err", err)
		return
	}
	if err := l.enqueue(context.Background(), &request{rec: rec}); err != nil {
		l.logger.Error("audit: record not appended", "action", rec.Action, "err", err)
	}
}

// enqueue hands req to the writer.
func (l *Log) enqueue(ctx context.Context, req *request) error {
	l.closeMu.RLock()
	defer l.closeMu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Size returns the number of durable records; the next record gets this index.
func (l *Log) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.idx.size
}

// Head returns the number of durable records and the hex leaf hash of the
// last one ("" for an empty log): the Prev the next record will carry, and
// what a checkpoint of this size commits to.
func (l *Log) Head() (size uint64, prev string) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.idx.size, l.idx.head
}

// Verify re-reads every durable record from disk and checks the chain,
// that the Merkle tree over them has the root the latest checkpoint signed,
// and that the last record still hashes to the head the Log holds in memory
// (so a record altered on disk after it was written is caught, the last one
// included). It returns an *InconsistentError for the first bad record.
func (l *Log) Verify(ctx context.Context) error {
	n, head := l.Head()
	if n == 0 {
		return nil
	}
	var cp *Checkpoint
	if last := l.cps.latest(); last != nil && last.cp.Size > 0 && last.cp.Size <= n {
		cp = &last.cp
	}
	var t tree
	res, err := scan(ctx, l.dir, scanOptions{limit: n, visit: func(s scanned) error {
		if cp == nil {
			return nil
		}
		t.append(s.hash)
		if t.size == cp.Size {
			if root := t.root(); root != cp.Root {
				return checkpointMismatch(*cp, root, s)
			}
		}
		return nil
	}})
	if err != nil {
		return err
	}
	if res.n < n {
		return &InconsistentError{At: res.n, Want: fmt.Sprintf("%d records", n), Got: fmt.Sprintf("the log ends after %d", res.n), Offset: -1}
	}
	if got := hex.EncodeToString(res.head[:]); got != head {
		return &InconsistentError{At: n - 1, Want: fmt.Sprintf("leaf hash %s", head), Got: fmt.Sprintf("leaf hash %s", got), Offset: -1}
	}
	return nil
}

// Close writes every record already handed to the log, stops the writer and
// the OnFlagged goroutine, and closes the files. Appends after Close fail
// with ErrClosed. Close is idempotent.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		<-l.writerDone
		return nil
	}
	l.closed = true
	l.closeMu.Unlock()

	close(l.closing)
	<-l.writerDone
	var errs []error
	if l.cpStop != nil {
		close(l.cpStop)
		<-l.cpDone
		errs = append(errs, l.checkpoint()) // of everything written
	}
	l.notify.stopAndWait()
	errs = append(errs, l.closeFiles())
	return errors.Join(errs...)
}

func (l *Log) closeFiles() error {
	var errs []error
	if l.w != nil {
		errs = append(errs, l.w.Close())
		l.w = nil
	}
	if l.cps != nil {
		errs = append(errs, l.cps.close())
	}
	l.filesMu.Lock()
	l.filesClosed = true
	l.mu.Lock()
	for _, s := range l.idx.segs {
		errs = append(errs, s.r.Close())
	}
	l.mu.Unlock()
	l.filesMu.Unlock()
	if l.unlock != nil {
		errs = append(errs, l.unlock())
	}
	return errors.Join(errs...)
}

// run is the writer goroutine: it takes waiting requests in batches of up to
// MaxBatch, writes and fsyncs each batch once, and answers its waiters. On
// Close it commits whatever is still queued and returns.
func (l *Log) run() {
	defer close(l.writerDone)
	for {
		select {
		case req := <-l.reqs:
			l.commit(l.collect(req))
		case <-l.closing:
			for {
				select {
				case req := <-l.reqs:
					l.commit(l.collect(req))
				default:
					return
				}
			}
		}
	}
}

// collect returns first and whatever else is waiting, up to MaxBatch.
func (l *Log) collect(first *request) []*request {
	b := append(l.batch[:0], first)
	for len(b) < l.opts.MaxBatch {
		select {
		case req := <-l.reqs:
			b = append(b, req)
		default:
			return b
		}
	}
	return b
}

// commit writes one batch: the records whose waiters still want them are
// chained and encoded, written and fsynced once, then published and
// answered.
func (l *Log) commit(batch []*request) {
	defer func() {
		clear(batch)
		l.batch = batch[:0]
		clear(l.pend)
		l.pend = l.pend[:0]
	}()
	live := takeLive(batch)
	if len(live) == 0 {
		return
	}
	if l.failed != nil {
		for _, req := range live {
			l.reply(req, Record{}, l.failed)
		}
		return
	}
	if !l.encode(live) || len(l.pend) == 0 {
		return
	}
	if err := l.flush(); err != nil {
		l.fail(err, nil)
		return
	}
	if err := l.w.Sync(); err != nil {
		l.fail(fmt.Errorf("fsync: %w", err), nil)
		return
	}
	l.syncs.Add(1)
	l.publish()
	if cap(l.buf) > 4<<20 { // do not keep a huge buffer after a burst
		l.buf = nil
	}
}

// takeLive marks batch's requests taken by the writer and returns, in
// batch's backing array, those whose waiter had not given up.
func takeLive(batch []*request) []*request {
	live := batch[:0]
	for _, req := range batch {
		if req.state.CompareAndSwap(statePending, stateTaken) {
			live = append(live, req)
		}
	}
	return live
}

// encode gives live's records their index, time and Prev, encodes them
// into l.buf and notes each in l.pend, closing the active segment first
// when a record would grow it past SegmentBytes. A record that cannot be
// encoded is refused on its own. It returns false if a write failed: the
// log has failed and every waiter of the batch is answered.
func (l *Log) encode(live []*request) bool {
	now := time.Now().UTC()
	l.buf = l.buf[:0]
	for k, req := range live {
		rec := req.rec
		rec.Index = l.next
		rec.Prev = l.headHex()
		if rec.Time.IsZero() {
			rec.Time = now
		}
		if req.seal != nil {
			if err := req.seal(&rec); err != nil {
				l.reply(req, Record{}, err)
				continue
			}
		}
		line, err := MarshalRecord(rec)
		if err == nil && len(line) > maxLineBytes {
			err = events.Errorf(events.ETOOLARGE, "audit record of %d bytes is over the limit of %d", len(line), maxLineBytes)
		}
		if err != nil {
			l.reply(req, Record{}, fmt.Errorf("audit: encode record: %w", err))
			continue
		}
		if l.segSize+int64(len(l.buf)) > 0 && l.segSize+int64(len(l.buf)+len(line)+1) > l.opts.SegmentBytes {
			if err := l.flush(); err != nil {
				l.fail(err, live[k:])
				return false
			}
			if err := l.roll(); err != nil {
				l.fail(err, live[k:])
				return false
			}
		}
		l.head = LeafHash(line)
		l.pend = append(l.pend, pending{req: req, rec: rec, off: l.segSize + int64(len(l.buf)), size: len(line), leaf: l.head})
		l.buf = append(l.buf, line...)
		l.buf = append(l.buf, '\n')
		l.next++
	}
	return true
}

// publish makes the durable records of l.pend visible to readers (index,
// tree, Size and Head), answers their waiters and hands the flagged ones to
// the notifier.
func (l *Log) publish() {
	l.mu.Lock()
	l.idx.add(l.pend)
	l.idx.size = l.next
	l.idx.head = l.headHex()
	for _, p := range l.pend {
		l.tree.append(p.leaf)
	}
	l.mu.Unlock()

	var flagged []Record
	for _, p := range l.pend {
		if p.rec.Flagged && l.opts.OnFlagged != nil {
			flagged = append(flagged, cloneRecord(p.rec))
		}
		l.reply(p.req, p.rec, nil)
	}
	l.notify.push(flagged)
}

// flush writes the buffered lines to the active segment.
func (l *Log) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	n, err := l.w.Write(l.buf)
	l.segSize += int64(n)
	l.buf = l.buf[:0]
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// roll makes the active segment durable, closes it and starts the next one
// at l.next.
func (l *Log) roll() error {
	if err := l.w.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	err := l.w.Close()
	l.w = nil
	if err != nil {
		return fmt.Errorf("close segment: %w", err)
	}
	seg, w, err := createSegment(l.dir, l.next)
	if err != nil {
		return err
	}
	l.w = w
	l.segSize = 0
	// Published now, before its records: List only reads records below Size.
	l.mu.Lock()
	l.idx.segs = append(l.idx.segs, seg)
	l.mu.Unlock()
	return nil
}

// fail makes err sticky and answers the waiters of the batch's records
// buffered so far (pend) and not yet reached (rest) with it.
func (l *Log) fail(err error, rest []*request) {
	l.failed = fmt.Errorf("audit: log failed (reopen to recover): %w", err)
	l.logger.Error("audit: write failed; no more records will be appended until the log is reopened", "err", err)
	for _, p := range l.pend {
		l.reply(p.req, Record{}, l.failed)
	}
	for _, req := range rest {
		l.reply(req, Record{}, l.failed)
	}
}

func (l *Log) reply(req *request, rec Record, err error) {
	if req.done != nil {
		req.done <- result{rec: rec, err: err}
		return
	}
	if err != nil && !errors.Is(err, l.failed) {
		l.logger.Error("audit: asynchronous record not appended", "action", req.rec.Action, "err", err)
	}
}

// createSegment creates the segment file starting at first, makes its
// creation durable, and returns it with a handle for appending.
func createSegment(dir string, first uint64) (*segment, *os.File, error) {
	name := segmentName(first)
	w, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("sync %s: %w", dir, err)
	}
	seg, err := openSegment(dir, first)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return seg, w, nil
}

// openSegment opens the segment starting at first for reading.
func openSegment(dir string, first uint64) (*segment, error) {
	name := segmentName(first)
	r, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	return &segment{first: first, name: name, r: r}, nil
}
