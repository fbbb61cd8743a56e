package alerts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/alerts"
)

func crossing(tenant string) audit.Record {
	r := audit.Record{Index: 7, Principal: "tenant:other", Tenant: tenant, Action: audit.ActionStreamRead, Outcome: audit.OutcomeDenied}
	audit.Flag(&r)
	return r
}

func TestFromRecord(t *testing.T) {
	if _, ok := alerts.FromRecord(audit.Record{Principal: "tenant:a", Tenant: "a", Action: audit.ActionStreamRead}); ok {
		t.Fatal("FromRecord(own-tenant read) = alert, want none")
	}
	a, ok := alerts.FromRecord(crossing("acme"))
	if !ok || a.Violation != audit.ViolationTokenTenant || a.Tenant != "acme" || a.Index != 7 || a.Reason == "" {
		t.Fatalf("FromRecord(crossing) = %+v, %v", a, ok)
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int // answers, in order; the last repeats
		wantErr  bool
		wantHits int32
	}{
		{"ok at once", []int{200}, false, 1},
		{"5xx then ok", []int{500, 503, 200}, false, 3},
		{"429 then ok", []int{429, 204}, false, 2},
		{"4xx is permanent", []int{400}, true, 1},
		{"always down", []int{502}, true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(hits.Add(1)) - 1
				w.WriteHeader(tt.statuses[min(n, len(tt.statuses)-1)])
			}))
			defer srv.Close()
			s := alerts.WebhookSink{URL: srv.URL, MaxAttempts: 4, Backoff: time.Millisecond}
			a, _ := alerts.FromRecord(crossing("acme"))
			err := s.Send(context.Background(), a)
			if (err != nil) != tt.wantErr || hits.Load() != tt.wantHits {
				t.Fatalf("Send = %v after %d requests, want error %v after %d", err, hits.Load(), tt.wantErr, tt.wantHits)
			}
			if tt.name == "4xx is permanent" && !errors.Is(err, alerts.ErrPermanent) {
				t.Fatalf("Send = %v, want ErrPermanent", err)
			}
		})
	}
}

// blockingSink blocks until released: a slow sink.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     []alerts.Alert
}

func (*blockingSink) Name() string { return "blocking" }
func (s *blockingSink) Send(ctx context.Context, a alerts.Alert) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.got = append(s.got, a)
	s.mu.Unlock()
	return nil
}

// TestNotifyNeverBlocks: a stuck sink neither blocks Notify (the request
// path) nor other sinks; overflow is counted as dropped.
func TestNotifyNeverBlocks(t *testing.T) {
	slow := &blockingSink{release: make(chan struct{})}
	fast := &blockingSink{release: make(chan struct{})}
	close(fast.release)
	d := alerts.New(alerts.Config{Sinks: []alerts.Sink{slow, fast}, QueueSize: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	// The slow sink stays stuck until the end of the test: Notify returns
	// while it is, or never (the deadline only bounds the failure).
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		for i := 0; i < 10; i++ {
			d.Notify(crossing("acme"))
		}
		d.Notify(audit.Record{Principal: "tenant:acme", Tenant: "acme", Action: audit.ActionStreamRead}) // not a crossing
	}()
	select {
	case <-notified:
	case <-time.After(10 * time.Second):
		t.Fatal("Notify blocked behind a stuck sink")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fast.mu.Lock()
		n := len(fast.got)
		fast.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fast sink got %d alerts while the slow one was stuck", n)
		}
		time.Sleep(time.Millisecond)
	}
	if got := d.Count("acme", audit.ViolationTokenTenant); got != 10 {
		t.Fatalf("Count = %d, want 10", got)
	}
	if got := d.Violations(); len(got) != 1 || got[0] != (alerts.ViolationCount{Tenant: "acme", Violation: audit.ViolationTokenTenant, Count: 10}) {
		t.Fatalf("Violations = %+v, want acme/token_tenant_mismatch 10", got)
	}
	if st := d.Sinks(); st[0].Sink != "blocking" || st[0].Dropped == 0 {
		t.Fatalf("Sinks = %+v: the slow sink's full queue dropped nothing", st)
	}
	close(slow.release)
	cancel()
	<-done
}

func TestKafkaSink(t *testing.T) {
	var topic string
	var key, val []byte
	s := alerts.KafkaSink{Publish: func(_ context.Context, tp string, k, v []byte) error {
		topic, key, val = tp, k, v
		return nil
	}}
	a, _ := alerts.FromRecord(crossing("acme"))
	if err := s.Send(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if topic != alerts.DefaultAlertTopic || string(key) != "acme" || !strings.Contains(string(val), `"violation":"token_tenant_mismatch"`) {
		t.Fatalf("published %s %s %s", topic, key, val)
	}
}

// gatedSink delivers one alert each time it is let through, and hands
// each alert it delivered to got.
type gatedSink struct {
	gate chan struct{}
	got  chan alerts.Alert
}

func (*gatedSink) Name() string { return "gated" }
func (s *gatedSink) Send(ctx context.Context, a alerts.Alert) error {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.got <- a
	return nil
}

// TestDroppedAlertsAreNoticed: alerts a full queue dropped are counted,
// logged, and the sink is told how many and of which audit records.
func TestDroppedAlertsAreNoticed(t *testing.T) {
	const total = 20
	s := &gatedSink{gate: make(chan struct{}), got: make(chan alerts.Alert, total+2)}
	var logs syncBuffer
	d := alerts.New(alerts.Config{Sinks: []alerts.Sink{s}, QueueSize: 4, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := 1; i <= total; i++ {
		r := crossing("acme")
		r.Index = uint64(i)
		d.Notify(r) // nothing takes from the queue yet: 4 queued, 16 dropped
	}
	if st := d.Sinks()[0]; st.Dropped != total-4 {
		t.Fatalf("Sinks()[0].Dropped = %d, want %d", st.Dropped, total-4)
	}
	if !strings.Contains(logs.String(), "alert queue full") {
		t.Fatalf("no error logged for the drops:\n%s", logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	var delivered []uint64
	var notice alerts.Alert
	for notice.Violation == "" {
		s.gate <- struct{}{}
		a := <-s.got
		if a.Violation == alerts.ViolationAlertsDropped {
			notice = a
			continue
		}
		delivered = append(delivered, a.Index)
	}
	cancel()
	<-done
	if notice.Dropped != total-4 || notice.FirstIndex != 5 || notice.Index != total {
		t.Fatalf("notice = %+v, want %d dropped, records 5 to %d", notice, total-4, total)
	}
	if uint64(len(delivered))+notice.Dropped > total || !strings.Contains(notice.Reason, "audit log") {
		t.Fatalf("delivered %v and notice %+v", delivered, notice)
	}
	if !strings.Contains(logs.String(), "dropped=16") {
		t.Fatalf("the gap was not logged with its count:\n%s", logs.String())
	}
}

// TestKnownBoundsTenants: violations against tenants that do not exist
// are counted under one label, however many are made up.
func TestKnownBoundsTenants(t *testing.T) {
	d := alerts.New(alerts.Config{Known: func(t string) bool { return t == "acme" }})
	d.Notify(crossing("acme"))
	for i := 0; i < 2000; i++ {
		d.Notify(crossing(fmt.Sprintf("made-up-%d", i)))
	}
	got := d.Violations()
	want := []alerts.ViolationCount{
		{Tenant: "acme", Violation: audit.ViolationTokenTenant, Count: 1},
		{Tenant: alerts.Other, Violation: audit.ViolationTokenTenant, Count: 2000},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Violations = %+v, want %+v", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
