package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type applied struct {
	mu   sync.Mutex
	recs []string
}

func (a *applied) apply(key, value []byte, offset int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := "<tombstone>"
	if value != nil {
		v = string(value)
	}
	a.recs = append(a.recs, fmt.Sprintf("%d %s=%s", offset, key, v))
}

func (a *applied) get() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.recs...)
}

// TestTopicLog: every process that opens the log sees every Put, its own
// and the others', in one order, tombstones included; one opened later
// reads it all from the start; CaughtUp waits for what the topic had.
func TestTopicLog(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(a *applied) *TopicLog {
		l, err := OpenTopicLog(ctx, TopicLogConfig{Brokers: []string{e.Addr()}, Topic: "tenantvault.cluster", Apply: a.apply, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	var a1, a2 applied
	l1, l2 := open(&a1), open(&a2)
	var last int64
	for i, put := range []struct {
		l          *TopicLog
		key, value string
	}{{l1, "node/a", "addr-a"}, {l2, "node/b", "addr-b"}, {l1, "tenant/acme", "v1"}, {l2, "tenant/acme", "v2"}, {l1, "node/a", ""}} {
		var v []byte
		if put.value != "" {
			v = []byte(put.value)
		}
		off, err := put.l.Put(ctx, []byte(put.key), v)
		if err != nil {
			t.Fatal(err)
		}
		if off != int64(i) {
			t.Fatalf("put %d at offset %d", i, off)
		}
		last = off
	}
	for _, l := range []*TopicLog{l1, l2} {
		if err := l.WaitApplied(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"0 node/a=addr-a", "1 node/b=addr-b", "2 tenant/acme=v1", "3 tenant/acme=v2", "4 node/a=<tombstone>"}
	for i, a := range []*applied{&a1, &a2} {
		if got := a.get(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("log %d applied %q, want %q", i+1, got, want)
		}
	}
	var a3 applied
	l3 := open(&a3)
	if err := l3.CaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got := a3.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("a log opened later applied %q, want %q", got, want)
	}
	if _, err := OpenTopicLog(ctx, TopicLogConfig{Brokers: []string{e.Addr()}, Topic: "../etc", Apply: a3.apply}); err == nil {
		t.Error("an invalid topic name was accepted")
	}
}

// TestGroupOwners: the owners of a group's partitions are named by the
// members' instance ids.
func TestGroupOwners(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, topic := range []string{"tenant.a.events", "tenant.b.events"} {
		if err := a.CreateTopic(ctx, topic, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := a.GroupOwners(ctx, "g"); err == nil && len(got) != 0 {
		t.Fatalf("owners of a group with no members = %v", got)
	}
	for _, id := range []string{"node-1", "node-2"} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.ConsumerGroup("g"), kgo.InstanceID(id),
			kgo.ConsumeTopics("tenant.a.events", "tenant.b.events"), kgo.Balancers(kgo.CooperativeStickyBalancer()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		go func() {
			for ctx.Err() == nil {
				if cl.PollFetches(ctx).IsClientClosed() {
					return
				}
			}
		}()
	}
	for {
		got, err := a.GroupOwners(ctx, "g")
		if err == nil && len(got["tenant.a.events"]) == 1 && len(got["tenant.b.events"]) == 1 {
			oa, ob := got["tenant.a.events"][0], got["tenant.b.events"][0]
			if oa != ob && (oa == "node-1" || oa == "node-2") && (ob == "node-1" || ob == "node-2") {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("owners = %v, %v; want one topic on each of node-1 and node-2", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
