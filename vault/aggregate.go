package vault

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tenantvault/tenantvault/audit"
)

// Defaults of Config.AggregateInterval and Config.AggregateSources.
const (
	DefaultAggregateInterval = 10 * time.Second
	DefaultAggregateSources  = 1024
)

// aggKey names one aggregation window: records of one action, outcome and
// reason from one source.
type aggKey struct {
	source  string
	action  audit.Action
	outcome audit.Outcome
	reason  string
	// tenant is the record's tenant when it is one of the vault's (a
	// request that probed it), so that its aggregate names it; "" for the
	// keyed hash of a made-up one, which would make every probe a window
	// of its own.
	tenant string
}

// aggWindow is an open window: its first occurrence was recorded, the
// others are counted.
type aggWindow struct {
	first       audit.Record // the first occurrence, as recorded
	start       time.Time    // when the window opened (Config.Now)
	n, count    int          // occurrences counted, and the sum of their counts
	firstAt, at time.Time    // times of the first and last counted occurrence
	timer       *time.Timer
}

// aggregator aggregates the records anyone can cause without a credential
// (see audit.DetailAggregated): per source per interval, the first
// occurrence is written at once and the others counted, into one aggregate
// record written when the window closes (by its timer, by the next
// occurrence after it, or by close). At most max windows are open at once,
// and past them every new source shares the windows of
// audit.SourceOverflow: memory and the records written per interval are
// bounded whatever the number of sources. Flagged records are written,
// never aggregated.
type aggregator struct {
	interval time.Duration // <= 0: every record written
	max      int
	now      func() time.Time
	write    func(context.Context, audit.Record) error
	log      *slog.Logger

	mu      sync.Mutex
	windows map[aggKey]*aggWindow
	closed  bool
	writing sync.WaitGroup // aggregates written by timers
}

func newAggregator(interval time.Duration, max int, now func() time.Time, write func(context.Context, audit.Record) error, log *slog.Logger) *aggregator {
	return &aggregator{interval: interval, max: max, now: now, write: write, log: log, windows: make(map[aggKey]*aggWindow)}
}

// record writes rec as an occurrence from source: at once when it is the
// first of its window (or flagged, or aggregation is off), else counted. It
// returns once what it wrote is durable; an aggregate of a window found
// closed is written first.
func (a *aggregator) record(ctx context.Context, source string, rec audit.Record) error {
	if rec.Details == nil {
		rec.Details = map[string]string{}
	}
	rec.Details[audit.DetailSource] = source
	if audit.Flag(&rec); rec.Flagged || a.interval <= 0 {
		return a.write(ctx, rec)
	}
	k := aggKey{source: source, action: rec.Action, outcome: rec.Outcome, reason: rec.Reason}
	if !strings.HasPrefix(rec.Tenant, KeyedHashPrefix) {
		k.tenant = rec.Tenant
	}
	now := a.now()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return a.write(ctx, rec)
	}
	var ended []audit.Record
	w, ok := a.windows[k]
	if ok && now.Sub(w.start) >= a.interval {
		ended = append(ended, a.endLocked(k, w)...)
		ok = false
	}
	if !ok && len(a.windows) >= a.max {
		k.source = audit.SourceOverflow
		if w, ok = a.windows[k]; ok && now.Sub(w.start) >= a.interval {
			ended = append(ended, a.endLocked(k, w)...)
			ok = false
		}
	}
	if ok {
		w.n++
		w.count += max(rec.Count, 1)
		if w.n == 1 {
			w.firstAt = now
		}
		w.at = now
		a.mu.Unlock()
		return a.writeAll(ctx, ended)
	}
	w = &aggWindow{first: rec, start: now}
	a.windows[k] = w
	w.timer = time.AfterFunc(a.interval, func() { a.expire(k, w) })
	a.mu.Unlock()
	return a.writeAll(ctx, append(ended, rec))
}

// endLocked closes window w of k and returns its aggregate record, if it
// counted anything. a.mu must be held.
func (a *aggregator) endLocked(k aggKey, w *aggWindow) []audit.Record {
	delete(a.windows, k)
	w.timer.Stop()
	if w.n == 0 {
		return nil
	}
	r := audit.Record{
		Principal: w.first.Principal, Tenant: k.tenant, Action: k.action, Outcome: k.outcome, Reason: k.reason, Count: w.count,
		Details: map[string]string{
			audit.DetailSource:     k.source,
			audit.DetailAggregated: strconv.Itoa(w.n),
			audit.DetailFirst:      w.firstAt.UTC().Format(time.RFC3339Nano),
			audit.DetailLast:       w.at.UTC().Format(time.RFC3339Nano),
		},
	}
	if k.source != audit.SourceOverflow && k.action == audit.ActionIngestSkip {
		r.Resource = w.first.Resource // the topic: the source (an HTTP request's path differs from one to the next)
	}
	return []audit.Record{r}
}

// expire closes window w of k when its timer fires, unless it was closed
// since.
func (a *aggregator) expire(k aggKey, w *aggWindow) {
	a.mu.Lock()
	if a.closed || a.windows[k] != w {
		a.mu.Unlock()
		return
	}
	recs := a.endLocked(k, w)
	a.writing.Add(1)
	a.mu.Unlock()
	defer a.writing.Done()
	if err := a.writeAll(context.Background(), recs); err != nil {
		a.log.Error("audit: write aggregate record", "err", err)
	}
}

// close closes every window, writes their aggregates and waits for those
// its timers are writing; records written after it are not aggregated.
func (a *aggregator) close(ctx context.Context) error {
	a.mu.Lock()
	a.closed = true
	var recs []audit.Record
	for k, w := range a.windows {
		recs = append(recs, a.endLocked(k, w)...)
	}
	a.mu.Unlock()
	err := a.writeAll(ctx, recs)
	a.writing.Wait()
	return err
}

func (a *aggregator) writeAll(ctx context.Context, recs []audit.Record) error {
	var errs []error
	for _, r := range recs {
		if err := a.write(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
