package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
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

// Config configures a Dispatcher.
type Config struct {
	Sinks     []Sink
	QueueSize int // per sink; default 1024
	Logger    *slog.Logger
}

// Dispatcher fans alerts out to sinks and counts them.
type Dispatcher struct {
	cfg    Config
	queues []chan Alert

	mu     sync.Mutex
	counts map[[2]string]uint64 // (tenant, violation) → count

	dropped atomic.Uint64
	failed  atomic.Uint64
	sent    atomic.Uint64
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
	for range cfg.Sinks {
		d.queues = append(d.queues, make(chan Alert, cfg.QueueSize))
	}
	return d
}

// Notify takes a durable audit record (the audit log's OnFlagged hook). It
// counts a flagged record and queues its alert on every sink, never
// blocking: a full queue drops the alert for that sink and counts it.
func (d *Dispatcher) Notify(r audit.Record) {
	a, ok := FromRecord(r)
	if !ok {
		return
	}
	d.mu.Lock()
	d.counts[[2]string{a.Tenant, a.Violation}]++
	d.mu.Unlock()
	for i, q := range d.queues {
		select {
		case q <- a:
		default:
			d.dropped.Add(1)
			d.cfg.Logger.Error("alert queue full; alert dropped (it is in the audit log)", "sink", d.cfg.Sinks[i].Name(), "index", a.Index)
		}
	}
}

// Run delivers queued alerts until ctx is done, then returns once every
// sink goroutine has stopped. Alerts still queued at that point are left
// (they are in the audit log).
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i, s := range d.cfg.Sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case a := <-d.queues[i]:
					if err := s.Send(ctx, a); err != nil {
						if ctx.Err() != nil {
							return
						}
						d.failed.Add(1)
						d.cfg.Logger.Error("alert not delivered", "sink", s.Name(), "index", a.Index, "err", err)
						continue
					}
					d.sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// Count returns how many violations of code were counted for tenant.
func (d *Dispatcher) Count(tenant, code string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[[2]string{tenant, code}]
}

// WritePrometheus writes the counters in the Prometheus text format.
func (d *Dispatcher) WritePrometheus(w io.Writer) error {
	d.mu.Lock()
	keys := make([][2]string, 0, len(d.counts))
	for k := range d.counts {
		keys = append(keys, k)
	}
	counts := make(map[[2]string]uint64, len(d.counts))
	for k, v := range d.counts {
		counts[k] = v
	}
	d.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	var b strings.Builder
	b.WriteString("# HELP tenantvault_boundary_violations_total Attempts to cross a tenant boundary, by tenant and reason.\n")
	b.WriteString("# TYPE tenantvault_boundary_violations_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "tenantvault_boundary_violations_total{tenant=%s,reason=%s} %d\n", labelValue(k[0]), labelValue(k[1]), counts[k])
	}
	for _, m := range []struct {
		name, help string
		v          uint64
	}{
		{"tenantvault_alerts_sent_total", "Alerts delivered to a sink.", d.sent.Load()},
		{"tenantvault_alerts_failed_total", "Alerts a sink failed to deliver after its retries.", d.failed.Load()},
		{"tenantvault_alerts_dropped_total", "Alerts dropped because a sink's queue was full.", d.dropped.Load()},
	} {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", m.name, m.help, m.name, m.name, m.v)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// labelValue quotes a Prometheus label value.
func labelValue(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// ErrPermanent marks a delivery error a retry cannot fix.
var ErrPermanent = errors.New("permanent failure")
