package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	whttp "github.com/transparency-dev/witness/client/http"
	tdwitness "github.com/transparency-dev/witness/witness"

	"github.com/tenantvault/tenantvault/audit"
)

// Log is what the Publisher needs of the audit log (*audit.Log).
type Log interface {
	Checkpoint() (signedNote []byte, size uint64, root [audit.HashSize]byte, err error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
}

// Topic is the ordered stream checkpoints are published to (the Kafka
// topic vault.checkpoints).
type Topic interface {
	// Name says where it is, for logs and errors.
	Name() string
	// Publish appends one signed note.
	Publish(ctx context.Context, signedNote []byte) error
	// Last returns the last note published, or nil, nil if there is none.
	Last(ctx context.Context) ([]byte, error)
}

// Client is a C2SP tlog-witness: transparency-dev/witness's
// client/http.Witness satisfies it. Update sends checkpoint newCP with a
// consistency proof from oldSize, the size the witness last cosigned, and
// returns its cosignature lines; an error wrapping
// tdwitness.ErrCheckpointStale returns the size the witness holds.
type Client interface {
	Update(ctx context.Context, oldSize uint64, newCP []byte, proof [][]byte) ([]byte, uint64, error)
}

var _ Client = whttp.Witness{}

// Witness is one witness the checkpoints are sent to.
type Witness struct {
	// Name names it in logs and errors: its URL without user info.
	Name   string
	Client Client
}

// NewHTTPWitness returns the tlog-witness at rawURL (http or https; the
// vault POSTs to rawURL + "/add-checkpoint"), spoken to with hc (nil:
// http.DefaultClient).
func NewHTTPWitness(rawURL string, hc *http.Client) (Witness, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Witness{}, fmt.Errorf("witness URL %q is not an http(s) URL", redactURL(rawURL))
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return Witness{Name: u.Redacted(), Client: whttp.NewWitness(u, hc)}, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

// Defaults of Config.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
)

// Config configures a Publisher.
type Config struct {
	// Log is the audit log whose checkpoints are published. Required.
	Log Log
	// VerifierKey is the log's note verifier key: what a published
	// checkpoint must be signed by. Required.
	VerifierKey string
	// Topic, if set, receives every checkpoint, with the cosignatures the
	// witnesses gave it.
	Topic Topic
	// Witnesses each receive every checkpoint.
	Witnesses []Witness
	// Logger receives publication failures (Warn) and rollbacks seen after
	// start (Error). Default: discard.
	Logger *slog.Logger
	// Timeout bounds one exchange with a witness or the topic. Default
	// DefaultTimeout.
	Timeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts after a
	// failure. Defaults DefaultRetryMin, DefaultRetryMax.
	RetryMin, RetryMax time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
}

// Validate reports every problem with c (after defaults).
func (c *Config) Validate() error {
	var errs []error
	if c.Log == nil {
		errs = append(errs, errors.New("witness: Log is required"))
	}
	if _, err := audit.OpenCheckpoint(nil, c.VerifierKey); err != nil && !isBadCheckpoint(err) {
		errs = append(errs, fmt.Errorf("witness: VerifierKey: %w", err))
	}
	for i, w := range c.Witnesses {
		if w.Client == nil {
			errs = append(errs, fmt.Errorf("witness: witness %d (%s) has no Client", i, w.Name))
		}
	}
	if c.Timeout < 0 || c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("witness: Timeout %v, RetryMin %v, RetryMax %v: want non-negative, RetryMin ≤ RetryMax", c.Timeout, c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

func isBadCheckpoint(err error) bool {
	var bad *audit.BadCheckpointError
	return errors.As(err, &bad)
}

// Publisher sends the log's checkpoints to witnesses and the topic. Check
// it at start, then Run it; Notify it of each new checkpoint.
type Publisher struct {
	cfg  Config
	wake chan struct{}

	mu      sync.Mutex // held for a round (Check, Run's rounds, Flush)
	checked bool       // Check passed: publishing is allowed
	topic   struct {
		size uint64
		sigs int  // cosignature lines in what was published at size
		done bool // something was published (or found published)
	}
	ws []witnessState
}

// witnessState is what the Publisher knows of one witness.
type witnessState struct {
	w     Witness
	known bool   // size is the size the witness holds
	size  uint64 // the size it last cosigned
	cosig []byte // its cosignature lines of our checkpoint of that size, if it gave them to us
}

// New returns a Publisher for cfg.
func New(cfg Config) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, wake: make(chan struct{}, 1)}
	for _, w := range cfg.Witnesses {
		p.ws = append(p.ws, witnessState{w: w})
	}
	return p, nil
}

// Notify tells the Publisher that the log signed a new checkpoint. It never
// blocks: the Publisher's Run picks up the latest checkpoint (of the log,
// not of the call) when it next wakes. Its signature fits
// audit.Options.OnCheckpoint.
func (p *Publisher) Notify([]byte, audit.Checkpoint) {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// RollbackError reports a local log that is not a consistent extension of
// a checkpoint that already left the vault: it is smaller than the
// checkpoint (records were cut off, or the log was rolled back), or it
// holds another tree at that size (records were rewritten, or this is a
// copy of the data dir that forked).
type RollbackError struct {
	// Source is where the checkpoint was found: "topic vault.checkpoints",
	// "witness https://...".
	Source string
	// PublishedSize is the size of that checkpoint; LocalSize the number
	// of records of the local log.
	PublishedSize, LocalSize uint64
	// Err says why they are inconsistent, when the local log is not
	// smaller (an *audit.BadProofError, the witness's refusal).
	Err error
}

func (e *RollbackError) Error() string {
	if e.LocalSize < e.PublishedSize {
		return fmt.Sprintf("audit log rolled back: %s holds a checkpoint of size %d, but the local log has only %d records", e.Source, e.PublishedSize, e.LocalSize)
	}
	return fmt.Sprintf("audit log forked: %s holds a checkpoint of size %d, and the local log of %d records is not a consistent extension of it: %v", e.Source, e.PublishedSize, e.LocalSize, e.Err)
}

func (e *RollbackError) Unwrap() error { return e.Err }

// Check reads the newest checkpoint that left the vault, the topic's last
// record and the size each witness holds, and returns a *RollbackError if
// the log's latest checkpoint (at start, of every record) does not extend
// it consistently. A topic that cannot be read, or whose last record is not
// a checkpoint of this log, is an error too; a witness that cannot be
// reached is logged and tried again by Run. Publishing (Run, Flush) starts
// only once Check has passed.
func (p *Publisher) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	signed, size, _, err := p.cfg.Log.Checkpoint()
	if err != nil {
		return fmt.Errorf("witness check: the audit log has no checkpoint: %w", err)
	}
	if t := p.cfg.Topic; t != nil {
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		last, err := t.Last(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("witness check: read the newest checkpoint published to %s: %w", t.Name(), err)
		}
		if last != nil {
			if err := p.checkAgainst(t.Name(), last, signed, size); err != nil {
				return err
			}
		}
	}
	for i := range p.ws {
		ws := &p.ws[i]
		err := p.updateWitness(ctx, ws, signed, size)
		var rb *RollbackError
		if errors.As(err, &rb) {
			return err
		}
		if err != nil {
			p.cfg.Logger.Warn("audit: a witness could not be asked at start; it is tried again while vaultd runs", "witness", ws.w.Name, "err", err)
		}
	}
	p.checked = true
	return nil
}

// checkAgainst checks that the log's checkpoint (signed, of size) extends
// published, found at source.
func (p *Publisher) checkAgainst(source string, published, signed []byte, size uint64) error {
	c, err := audit.OpenCheckpoint(published, p.cfg.VerifierKey)
	if err != nil {
		return fmt.Errorf("witness check: the newest checkpoint published to %s is not one of this log (%s): %w", source, p.cfg.VerifierKey, err)
	}
	if c.Size > size {
		return &RollbackError{Source: source, PublishedSize: c.Size, LocalSize: size}
	}
	proof, err := p.cfg.Log.ConsistencyProof(c.Size, size)
	if err != nil {
		return fmt.Errorf("witness check: consistency proof from size %d: %w", c.Size, err)
	}
	if err := audit.VerifyConsistency(published, signed, proof, p.cfg.VerifierKey); err != nil {
		return &RollbackError{Source: source, PublishedSize: c.Size, LocalSize: size, Err: err}
	}
	p.topic.size, p.topic.sigs, p.topic.done = c.Size, countSigLines(published)-1, true
	return nil
}

// Run publishes the latest checkpoint at once, then each time Notify is
// called, retrying failures with backoff, until ctx is done. It returns
// nil when ctx ends; publication failures are logged, never returned.
func (p *Publisher) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	backoff := p.cfg.RetryMin
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-t.C:
		}
		err := p.round(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			backoff = p.cfg.RetryMin
			t.Stop()
			continue
		}
		var rb *RollbackError
		if errors.As(err, &rb) {
			p.cfg.Logger.Error("audit: a witness holds a checkpoint the log does not extend: the log was rolled back or forked", "err", err)
		} else {
			p.cfg.Logger.Warn("audit: checkpoint publication failed; retrying", "in", backoff, "err", err)
		}
		t.Reset(backoff)
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

// Flush publishes the latest checkpoint once (after the log's Close signed
// its last one), and returns what failed. Once the log is closed it serves
// no consistency proofs: a witness that needs one gets the checkpoint at the
// next start's Check instead; the topic gets it now.
func (p *Publisher) Flush(ctx context.Context) error { return p.round(ctx) }

// round sends the log's latest checkpoint to every witness that has not
// cosigned it, then publishes it with the cosignatures to the topic if the
// topic does not have it yet (or has it with fewer cosignatures).
func (p *Publisher) round(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked {
		return errors.New("witness: not checked: nothing is published before Check passes")
	}
	signed, size, _, err := p.cfg.Log.Checkpoint()
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	var errs []error
	var cosigs []byte
	n := 0
	for i := range p.ws {
		ws := &p.ws[i]
		if !ws.known || ws.size != size || ws.cosig == nil {
			if err := p.updateWitness(ctx, ws, signed, size); errors.Is(err, audit.ErrClosed) {
				// Flush after the log closed: no proofs any more. The
				// witness gets this checkpoint at the next start's Check.
				continue
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		cosigs = append(cosigs, ws.cosig...)
		n++
	}
	if t := p.cfg.Topic; t != nil && (!p.topic.done || size > p.topic.size || (size == p.topic.size && n > p.topic.sigs)) {
		out := append(append([]byte(nil), signed...), cosigs...)
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		err := t.Publish(cctx, out)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("publish the checkpoint of size %d to %s: %w", size, t.Name(), err))
		} else {
			p.topic.size, p.topic.sigs, p.topic.done = size, n, true
		}
	}
	return errors.Join(errs...)
}

// updateWitness sends the checkpoint signed (of size) to ws with a proof
// from the size it holds, learning that size from a 409 first if need be.
func (p *Publisher) updateWitness(ctx context.Context, ws *witnessState, signed []byte, size uint64) error {
	for range 3 { // unknown size → 409 with the size → proof from it; once more if it moved meanwhile
		var old uint64
		if ws.known {
			old = ws.size
		}
		if old > size {
			return &RollbackError{Source: "witness " + ws.w.Name, PublishedSize: old, LocalSize: size}
		}
		var proof [][]byte
		if old > 0 && old < size {
			var err error
			if proof, err = p.cfg.Log.ConsistencyProof(old, size); err != nil {
				return fmt.Errorf("witness %s: consistency proof from size %d: %w", ws.w.Name, old, err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		sigs, held, err := ws.w.Client.Update(cctx, old, signed, proof)
		cancel()
		switch {
		case err == nil:
			if err := checkSigLines(sigs); err != nil {
				return fmt.Errorf("witness %s: its answer is not cosignature lines: %w", ws.w.Name, err)
			}
			ws.known, ws.size, ws.cosig = true, size, sigs
			return nil
		case errors.Is(err, tdwitness.ErrCheckpointStale):
			ws.known, ws.size, ws.cosig = true, held, nil
		case errors.Is(err, tdwitness.ErrInvalidProof), errors.Is(err, tdwitness.ErrRootMismatch):
			ws.cosig = nil
			return &RollbackError{Source: "witness " + ws.w.Name, PublishedSize: old, LocalSize: size,
				Err: fmt.Errorf("the witness refused the checkpoint with a consistency proof from size %d: %w", old, err)}
		default:
			return fmt.Errorf("witness %s: %w", ws.w.Name, err)
		}
	}
	return fmt.Errorf("witness %s: its size kept changing (now %d)", ws.w.Name, ws.size)
}

// maxCosigBytes bounds what one witness may add to a published checkpoint.
const maxCosigBytes = 4 << 10

// checkSigLines checks that b is one or more signed-note signature lines
// ("— name base64\n"), so that appending it to a signed note keeps the
// note valid.
func checkSigLines(b []byte) error {
	if len(b) == 0 || len(b) > maxCosigBytes || !bytes.HasSuffix(b, []byte("\n")) {
		return fmt.Errorf("%d bytes, want 1 to %d bytes of newline-terminated lines", len(b), maxCosigBytes)
	}
	for line := range strings.SplitSeq(string(b[:len(b)-1]), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		name, b64, ok2 := strings.Cut(rest, " ")
		sig, err := base64.StdEncoding.DecodeString(b64)
		if !ok || !ok2 || name == "" || strings.ContainsAny(name, "+ ") || err != nil || len(sig) < 5 {
			return errors.New("a line is not a signature line")
		}
	}
	return nil
}

// countSigLines counts the signature lines of a signed note.
func countSigLines(signed []byte) int {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return 0
	}
	return bytes.Count(signed[i+2:], []byte("\n"))
}
