package alerts_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
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
	var b strings.Builder
	d.WritePrometheus(&b)
	out := b.String()
	if !strings.Contains(out, `tenantvault_boundary_violations_total{tenant="acme",reason="token_tenant_mismatch"} 10`) {
		t.Fatalf("metrics:\n%s", out)
	}
	if strings.Contains(out, "tenantvault_alerts_dropped_total 0\n") {
		t.Fatalf("a full queue dropped nothing:\n%s", out)
	}
	close(slow.release)
	cancel()
	<-done
}

func TestPrometheusEscaping(t *testing.T) {
	d := alerts.New(alerts.Config{})
	r := audit.Record{Principal: "tenant:a", Tenant: `"x"\` + "\n", Action: audit.ActionStreamRead}
	audit.Flag(&r)
	d.Notify(r)
	var b strings.Builder
	d.WritePrometheus(&b)
	if !strings.Contains(b.String(), `tenant="\"x\"\\\n"`) {
		t.Fatalf("label not escaped:\n%s", b.String())
	}
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
