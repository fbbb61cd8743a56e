package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantvault/tenantvault/audit"
)

// Alert is one boundary violation, as sinks receive it.
type Alert struct {
	Index     uint64          `json:"index"` // the audit record's index
	Time      time.Time       `json:"time"`
	Violation string          `json:"violation"` // audit.Violation* code
	Reason    string          `json:"reason"`
	Principal audit.Principal `json:"principal"`
	Tenant    string          `json:"tenant"`
	Action    audit.Action    `json:"action"`
	Resource  string          `json:"resource,omitempty"`
	Outcome   audit.Outcome   `json:"outcome"`
	KeyIDs    []uint32        `json:"key_ids,omitempty"`
	// Dropped and FirstIndex are set on a ViolationAlertsDropped notice
	// only: alerts of audit records FirstIndex to Index were dropped.
	Dropped    uint64 `json:"dropped,omitempty"`
	FirstIndex uint64 `json:"first_index,omitempty"`
}

// FromRecord returns the alert of a flagged record, and false for a record
// that crosses no boundary.
func FromRecord(r audit.Record) (Alert, bool) {
	flagged, code, reason := audit.Classify(r)
	if !flagged {
		return Alert{}, false
	}
	return Alert{
		Index: r.Index, Time: r.Time, Violation: code, Reason: reason, Principal: r.Principal,
		Tenant: r.Tenant, Action: r.Action, Resource: r.Resource, Outcome: r.Outcome, KeyIDs: r.KeyIDs,
	}, true
}

// Sink delivers alerts somewhere. Send may block (the dispatcher calls it
// from the sink's own goroutine) and should honour ctx.
type Sink interface {
	Name() string
	Send(ctx context.Context, a Alert) error
}

// ViolationAlertsDropped is the Violation of the notice a sink receives
// after its queue overflowed: Dropped alerts of audit records FirstIndex
// to LastIndex were not delivered to it (they are in the audit log, GET
// /v1/alerts?after=FirstIndex-1 lists them).
const ViolationAlertsDropped = "alerts_dropped"

// Other is the tenant that violations of a tenant Config.Known does not
// know are counted under.
const Other = "other"

// Config configures a Dispatcher.
type Config struct {
	Sinks     []Sink
	QueueSize int // per sink; default 1024
	Logger    *slog.Logger
	// Known reports whether a tenant exists: violations are counted by
	// tenant only for those, under Other for any other (a made-up tenant
	// in a request path), so the counts stay bounded. Nil: by the tenant
	// the record names.
	Known func(tenant string) bool
}

// Dispatcher fans alerts out to sinks and counts them.
type Dispatcher struct {
	cfg   Config
	sinks []*sinkState

	mu     sync.Mutex
	counts map[[2]string]uint64 // (tenant, violation) → count
}

// sinkState is one sink's queue, counters and overflow gap.
type sinkState struct {
	sink  Sink
	queue chan Alert

	sent, failed, dropped atomic.Uint64

	mu  sync.Mutex
	gap gap // alerts dropped since the last notice
}

// gap is a run of alerts a sink's full queue dropped.
type gap struct {
	n           uint64
	first, last uint64 // audit indexes
}

// New returns a Dispatcher. Call Run to start delivery.
func New(cfg Config) *Dispatcher {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{cfg: cfg, counts: make(map[[2]string]uint64)}
	for _, s := range cfg.Sinks {
		d.sinks = append(d.sinks, &sinkState{sink: s, queue: make(chan Alert, cfg.QueueSize)})
	}
	return d
}

// tenantKey is the tenant a violation is counted under.
func (d *Dispatcher) tenantKey(tenant string) string {
	if d.cfg.Known == nil || d.cfg.Known(tenant) {
		return tenant
	}
	return Other
}

// Notify takes a durable audit record (the audit log's OnFlagged hook). It
// counts a flagged record and queues its alert on every sink, never
// blocking. A full queue drops the alert for that sink, but never
// silently: the drop is counted (Stats), logged as an error when a run of
// drops begins, and once the sink catches up it is sent a notice
// (ViolationAlertsDropped) saying how many alerts of which audit records
// it missed.
func (d *Dispatcher) Notify(r audit.Record) {
	a, ok := FromRecord(r)
	if !ok {
		return
	}
	d.mu.Lock()
	d.counts[[2]string{d.tenantKey(a.Tenant), a.Violation}]++
	d.mu.Unlock()
	for _, s := range d.sinks {
		select {
		case s.queue <- a:
		default:
			s.dropped.Add(1)
			s.mu.Lock()
			if s.gap.n == 0 {
				s.gap.first = a.Index
				d.cfg.Logger.Error("alert queue full: alerts are dropped for this sink until it catches up; they are in the audit log and the sink will be told which",
					"sink", s.sink.Name(), "index", a.Index, "queue", cap(s.queue))
			}
			s.gap.n++
			s.gap.last = a.Index
			s.mu.Unlock()
		}
	}
}

// Run delivers queued alerts until ctx is done, then returns once every
// sink goroutine has stopped. Alerts still queued at that point are left
// (they are in the audit log).
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range d.sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case a := <-s.queue:
					if !d.send(ctx, s, a) {
						return
					}
					// A gap is only ever opened while the queue is
					// full; its notice goes out once the sink has
					// drained half of it.
					if len(s.queue) <= cap(s.queue)/2 && !d.sendGap(ctx, s) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// send delivers a to s; false when ctx is done.
func (d *Dispatcher) send(ctx context.Context, s *sinkState, a Alert) bool {
	if err := s.sink.Send(ctx, a); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.failed.Add(1)
		d.cfg.Logger.Error("alert not delivered", "sink", s.sink.Name(), "index", a.Index, "violation", a.Violation, "err", err)
		return true
	}
	s.sent.Add(1)
	return true
}

// sendGap sends s the notice of the alerts its queue dropped, if any;
// false when ctx is done.
func (d *Dispatcher) sendGap(ctx context.Context, s *sinkState) bool {
	s.mu.Lock()
	g := s.gap
	s.gap = gap{}
	s.mu.Unlock()
	if g.n == 0 {
		return true
	}
	d.cfg.Logger.Error("alerts were dropped for a sink whose queue was full; they are in the audit log",
		"sink", s.sink.Name(), "dropped", g.n, "first_index", g.first, "last_index", g.last)
	return d.send(ctx, s, Alert{
		Index: g.last, Time: time.Now().UTC(), Violation: ViolationAlertsDropped,
		Reason:  fmt.Sprintf("%d alerts of audit records %d to %d were not delivered to this sink (its queue was full); they are in the audit log", g.n, g.first, g.last),
		Dropped: g.n, FirstIndex: g.first,
	})
}

// Count returns how many violations of code were counted for tenant
// (Other: for tenants Config.Known does not know).
func (d *Dispatcher) Count(tenant, code string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[[2]string{tenant, code}]
}

// ViolationCount is how many violations of one code were counted for one
// tenant.
type ViolationCount struct {
	Tenant, Violation string
	Count             uint64
}

// SinkStats are one sink's delivery counters.
type SinkStats struct {
	Sink                  string
	Sent, Failed, Dropped uint64
}

// Violations returns the violation counts, sorted by tenant and code.
func (d *Dispatcher) Violations() []ViolationCount {
	d.mu.Lock()
	out := make([]ViolationCount, 0, len(d.counts))
	for k, n := range d.counts {
		out = append(out, ViolationCount{Tenant: k[0], Violation: k[1], Count: n})
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		return out[i].Violation < out[j].Violation
	})
	return out
}

// Sinks returns the delivery counters of each sink, in Config order.
func (d *Dispatcher) Sinks() []SinkStats {
	out := make([]SinkStats, len(d.sinks))
	for i, s := range d.sinks {
		out[i] = SinkStats{Sink: s.sink.Name(), Sent: s.sent.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load()}
	}
	return out
}

// ErrPermanent marks a delivery error a retry cannot fix.
var ErrPermanent = errors.New("permanent failure")
