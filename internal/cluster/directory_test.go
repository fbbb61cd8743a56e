package cluster

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

type seen struct {
	mu      sync.Mutex
	tenants []Tenant
}

func (s *seen) on(t Tenant) { s.mu.Lock(); s.tenants = append(s.tenants, t); s.mu.Unlock() }
func (s *seen) all() []Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Tenant(nil), s.tenants...)
}

func startBroker(t *testing.T) string {
	t.Helper()
	e, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e.Addr()
}

func TestValidNodeIDAndAddr(t *testing.T) {
	for _, id := range []string{"vault-0", "a", "n1"} {
		if err := ValidNodeID(id); err != nil {
			t.Errorf("ValidNodeID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", "A", "a/b", "a.b", "../x", string(make([]byte, 64))} {
		if ValidNodeID(id) == nil {
			t.Errorf("ValidNodeID(%q) = nil", id)
		}
	}
	for _, a := range []string{"http://10.0.0.1:8200", "https://vault-0.tv.svc:8200/"} {
		if err := ValidAddr(a); err != nil {
			t.Errorf("ValidAddr(%q) = %v", a, err)
		}
	}
	for _, a := range []string{"", "10.0.0.1:8200", "ftp://x", "http://u:p@x", "http://x/v1", "http://x?a=1", "http://"} {
		if ValidAddr(a) == nil {
			t.Errorf("ValidAddr(%q) = nil", a)
		}
	}
}

// TestDirectory: two nodes see each other and each other's tenant records,
// in one order; a malformed record is skipped and logged without its value;
// a tenant's owner is the node the group assigned its topic to.
func TestDirectory(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) }), nil))
	open := func(id string, s *seen) *Directory {
		d, err := Open(ctx, Config{Brokers: []string{addr}, Self: Node{ID: id, Addr: "http://127.0.0.1:1/" + ""}, Group: "g", OnTenant: s.on, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
	var sa, sb seen
	a := open("node-a", &sa)
	b := open("node-b", &sb)
	if err := a.CaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := a.Nodes(); len(n) != 2 || n["node-b"].ID != "node-b" {
		t.Fatalf("node-a knows %v", n)
	}

	// A malformed record, written by something else on the topic.
	raw, err := kafka.OpenTopicLog(ctx, kafka.TopicLogConfig{Brokers: []string{addr}, Topic: Topic, Apply: func([]byte, []byte, int64) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, r := range [][2]string{{"tenant/acme", `{"id":"globex","keyset":"eA==","entry":{},"by":"x"}`}, {"tenant/../x", `{}`}, {"node/evil", `{"id":"evil","addr":"file:///etc"}`}, {"other", "PLAINTEXT-MARKER"}} {
		if _, err := raw.Put(ctx, []byte(r[0]), []byte(r[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PublishTenant(ctx, Tenant{ID: "acme", Keyset: []byte("wrapped"), Entry: []byte(`{"id":"acme"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishTenant(ctx, Tenant{ID: "acme", Shredded: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.CaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*seen{"a": &sa, "b": &sb} {
		got := s.all()
		if len(got) != 2 || got[0].By != "node-a" || string(got[0].Keyset) != "wrapped" || !got[1].Shredded || got[1].By != "node-b" {
			t.Errorf("node %s saw %+v, want node-a's acme then node-b's shred", name, got)
		}
	}
	if _, ok := a.Nodes()["evil"]; ok {
		t.Error("a node record with a file:// address was taken")
	}
	logMu.Lock()
	if bytes.Contains(logs.Bytes(), []byte("PLAINTEXT-MARKER")) || bytes.Count(logs.Bytes(), []byte("record skipped")) < 4 {
		t.Errorf("skipped records logged as %s", logs.String())
	}
	logMu.Unlock()
	if err := a.PublishTenant(ctx, Tenant{ID: "../etc"}); err == nil {
		t.Error("a hostile tenant id was published")
	}

	// Owners: no member yet, then node-b's consumer holds acme's topic.
	if _, _, err := a.Owner(ctx, "acme"); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("owner with no group member = %v, want ErrNoOwner", err)
	}
	adm, err := kafka.NewAdmin([]string{addr}, kafka.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := adm.CreateTopic(ctx, events.TopicFor("acme"), 1); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("g"), kgo.InstanceID("node-b"), kgo.ConsumeTopics(events.TopicFor("acme")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	go func() {
		for ctx.Err() == nil && !cl.PollFetches(ctx).IsClientClosed() {
		}
	}()
	for {
		n, local, err := a.Owner(ctx, "acme")
		if err == nil {
			if n.ID != "node-b" || local {
				t.Fatalf("a: owner of acme = %+v local %v", n, local)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no owner of acme: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, local, err := b.Owner(ctx, "acme"); err != nil || !local || n.ID != "node-b" {
		t.Fatalf("b: owner of acme = %+v, %v, %v; want itself", n, local, err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
