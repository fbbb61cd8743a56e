package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

var _ ingest.RoundConsumer = (*kafka.Consumer)(nil)

// newConsumer returns a consumer of every tenant topic in group.
func (k *kafkaEnv) newConsumer(tb testing.TB, group string) *kafka.Consumer {
	tb.Helper()
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: []string{k.broker.Addr()}, Group: group, Topics: events.TenantTopicPattern,
		FetchMaxWait: 50 * time.Millisecond, MetadataMaxAge: 200 * time.Millisecond,
		SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second, HeartbeatInterval: 200 * time.Millisecond,
		Logger: testLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// startRounds runs a RoundRunner on c with v until the test ends (or the
// returned stop is called).
func startRounds(tb testing.TB, k *kafkaEnv, c *kafka.Consumer, v ingest.Ingester, edit func(*ingest.RoundsConfig)) (*ingest.RoundRunner, func()) {
	tb.Helper()
	cfg := ingest.RoundsConfig{Consumer: c, Vault: v, Deleter: k.admin, PauseFor: 300 * time.Millisecond, Logger: testLogger()}
	if edit != nil {
		edit(&cfg)
	}
	r, err := ingest.NewRoundRunner(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		c.Close()
	}
	tb.Cleanup(stop)
	return r, stop
}

// values are the payloads of msgs.
func values(msgs []vault.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Value)
	}
	return out
}

func seq(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(from + i)
	}
	return out
}

// waitGroupSettled waits until the broker holds group stable with members
// members, each assigned some of topics' partitions (one each) and every
// partition assigned once: no rebalance is under way, and every batch a
// member polled under an earlier assignment has been handed over (the
// consumer blocks a rebalance while a round holds a poll).
func waitGroupSettled(tb testing.TB, k *kafkaEnv, group string, members int, topics []string) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.broker.Addr()))
	if err != nil {
		tb.Fatalf("kgo.NewClient: %v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var last string
	settled := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, group)
		g, ok := gs[group]
		switch {
		case err != nil:
			last = err.Error()
			return false
		case !ok || g.Err != nil:
			last = fmt.Sprintf("group %s not described: %v", group, g.Err)
			return false
		case g.State != "Stable" || len(g.Members) != members:
			last = fmt.Sprintf("state %s with %d members", g.State, len(g.Members))
			return false
		}
		owners := map[string]int{}
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) == 0 {
				last = fmt.Sprintf("member %s has no assignment", m.MemberID)
				return false
			}
			for _, at := range a.Topics {
				for _, p := range at.Partitions {
					owners[fmt.Sprintf("%s/%d", at.Topic, p)]++
				}
			}
		}
		for _, t := range topics {
			if owners[t+"/0"] != 1 {
				last = fmt.Sprintf("%s/0 assigned %d times", t, owners[t+"/0"])
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(40 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			tb.Fatalf("group %s not settled after 40s: %s", group, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoundsDeliverEveryTopicOnce: one consumer reads every tenant topic;
// each record is handed over once, in partition order, stamped with its
// topic ID; offsets are committed and sealed records deleted.
func TestRoundsDeliverEveryTopicOnce(t *testing.T) {
	k := MustStartKafka(t)
	const topics, per = 12, 200
	for i := range topics {
		topic := fmt.Sprintf("tenant.t%02d.events", i)
		k.mustCreateTopic(t, topic, 1)
		mustPublishN(t, k, topic, 0, per)
	}
	k.mustCreateTopic(t, "not.a.tenant.topic", 1)
	mustPublishN(t, k, "not.a.tenant.topic", 0, 5)
	f := &fakeIngester{}
	r, stop := startRounds(t, k, k.newConsumer(t, "vault"), f, nil)
	for i := range topics {
		topic := fmt.Sprintf("tenant.t%02d.events", i)
		waitUntil(t, 20*time.Second, topic+" applied", func() bool { return len(f.applied(topic)) >= per })
	}
	for i := range topics {
		topic := fmt.Sprintf("tenant.t%02d.events", i)
		got := f.applied(topic)
		if !slices.Equal(values(got), seq(0, per)) {
			t.Fatalf("%s: applied %d records %v..., want 0..%d once, in order", topic, len(got), values(got)[:min(5, len(got))], per-1)
		}
		id, err := k.admin.TopicID(context.Background(), topic)
		if err != nil || got[0].TopicID != id {
			t.Errorf("%s: records stamped with topic id %q, want %q (%v)", topic, got[0].TopicID, id, err)
		}
	}
	for _, b := range f.calls() {
		if b.topic == "not.a.tenant.topic" {
			t.Fatal("a topic outside the pattern was consumed")
		}
	}
	// Sealed records are deleted.
	waitUntil(t, 10*time.Second, "sealed records deleted", func() bool {
		for i := range topics {
			starts, err := k.admin.LogStartOffsets(context.Background(), fmt.Sprintf("tenant.t%02d.events", i))
			if err != nil || starts[0] != per {
				return false
			}
		}
		return true
	})
	st := r.Stats()
	stop()
	t.Logf("rounds: %+v", st)
	if st.Deletes > st.Commits+1 {
		t.Errorf("%d DeleteRecords requests for %d committed rounds, want at most one a round", st.Deletes, st.Commits)
	}

	// A new consumer of the group resumes after what was committed:
	// nothing is handed over again. Every topic gets new records (t00 ten,
	// the others one); a record handed over again would come before them
	// in its partition, so once the new ones are in, each topic's batches
	// hold exactly the new records.
	f2 := &fakeIngester{}
	_, stop2 := startRounds(t, k, k.newConsumer(t, "vault"), f2, nil)
	newRecords := func(i int) int {
		if i == 0 {
			return 10
		}
		return 1
	}
	for i := range topics {
		mustPublishN(t, k, fmt.Sprintf("tenant.t%02d.events", i), per, newRecords(i))
	}
	for i := range topics {
		topic := fmt.Sprintf("tenant.t%02d.events", i)
		waitUntil(t, 20*time.Second, topic+"'s new records", func() bool { return len(f2.applied(topic)) >= newRecords(i) })
	}
	stop2()
	for i := range topics {
		topic := fmt.Sprintf("tenant.t%02d.events", i)
		if got := values(f2.applied(topic)); !slices.Equal(got, seq(per, newRecords(i))) {
			t.Errorf("after a restart: %s applied %v, want only its %d new records", topic, got, newRecords(i))
		}
	}
}

// mustPublishN publishes values from..from+n-1 to topic.
func mustPublishN(tb testing.TB, k *kafkaEnv, topic string, from, n int) {
	tb.Helper()
	if err := k.pub.Publish(topic, testMessagesKeyed(from, n, 1)...); err != nil {
		tb.Fatalf("Publish(%s): %v", topic, err)
	}
}

// TestRoundsNewTopicWithoutRestart: a topic created while the runner runs
// is consumed within a second, without a restart.
func TestRoundsNewTopicWithoutRestart(t *testing.T) {
	k := MustStartKafka(t)
	k.mustCreateTopic(t, "tenant.first.events", 1)
	f := &fakeIngester{}
	r, _ := startRounds(t, k, k.newConsumer(t, "vault"), f, nil)
	mustPublishN(t, k, "tenant.first.events", 0, 1)
	waitUntil(t, 20*time.Second, "the first topic", func() bool { return len(f.applied("tenant.first.events")) == 1 })
	for _, add := range []bool{true, false} {
		topic := "tenant.late-" + strconv.FormatBool(add) + ".events"
		k.mustCreateTopic(t, topic, 1)
		if add {
			r.Add(topic) // what vaultd does when it creates a tenant
		}
		mustPublishN(t, k, topic, 0, 3)
		start := time.Now()
		waitUntil(t, 10*time.Second, topic, func() bool { return len(f.applied(topic)) == 3 })
		t.Logf("%s consumed %v after its publish (Add: %v)", topic, time.Since(start).Round(time.Millisecond), add)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s consumed after %v, want within 1s", topic, d)
		}
	}
}

// TestRoundsFailingTenantDoesNotStall: a tenant whose batches fail does
// not hold up the others; once it recovers, its records are applied in
// order, once, and nothing of it was committed before.
func TestRoundsFailingTenantDoesNotStall(t *testing.T) {
	k := MustStartKafka(t)
	k.mustCreateTopic(t, "tenant.sick.events", 1)
	k.mustCreateTopic(t, "tenant.well.events", 1)
	var sick atomic.Bool
	sick.Store(true)
	f := &fakeIngester{fail: func(_ int, topic string, _ []vault.Message) error {
		if topic == "tenant.sick.events" && sick.Load() {
			return errors.New("store unavailable")
		}
		return nil
	}}
	r, _ := startRounds(t, k, k.newConsumer(t, "vault"), f, func(c *ingest.RoundsConfig) { c.Retries = 1; c.StuckAfter = 200 * time.Millisecond })
	if err := r.Health(); err != nil {
		t.Fatalf("Health() before any failure = %v, want nil", err)
	}
	mustPublishN(t, k, "tenant.sick.events", 0, 50)
	// The healthy tenant's records go on being applied, one publish after
	// the other, while the failing tenant's batches fail.
	for i := range 5 {
		mustPublishN(t, k, "tenant.well.events", i*20, 20)
		waitUntil(t, 20*time.Second, "the healthy tenant", func() bool { return len(f.applied("tenant.well.events")) == (i+1)*20 })
	}
	if n := len(f.applied("tenant.sick.events")); n != 0 {
		t.Fatalf("%d records of the failing tenant applied", n)
	}
	starts, err := k.admin.LogStartOffsets(context.Background(), "tenant.sick.events")
	if err != nil {
		t.Fatalf("LogStartOffsets: %v", err)
	}
	if starts[0] != 0 {
		t.Fatalf("records of the failing tenant deleted (log start %d) before they were applied", starts[0])
	}
	// Failing for longer than StuckAfter: unhealthy (vaultd is not ready),
	// naming the partition.
	waitUntil(t, 20*time.Second, "Health to report the failing partition", func() bool {
		err := r.Health()
		return err != nil && strings.Contains(err.Error(), "tenant.sick.events/0")
	})
	sick.Store(false)
	waitUntil(t, 20*time.Second, "the recovered tenant", func() bool { return len(f.applied("tenant.sick.events")) >= 50 })
	if err := r.Health(); err != nil {
		t.Errorf("Health() after recovery = %v, want nil", err)
	}
	if got := values(f.applied("tenant.sick.events")); !slices.Equal(got, seq(0, 50)) {
		t.Errorf("recovered tenant applied %v, want 0..49 once, in order", got)
	}
	if got := values(f.applied("tenant.well.events")); !slices.Equal(got, seq(0, 100)) {
		t.Errorf("healthy tenant applied %d records, want 0..99 once, in order", len(got))
	}
}

// TestRoundsRemove: once Remove returns, no batch of the topic is being
// applied and none follows; Add brings it back.
func TestRoundsRemove(t *testing.T) {
	k := MustStartKafka(t)
	k.mustCreateTopic(t, "tenant.gone.events", 1)
	k.mustCreateTopic(t, "tenant.stays.events", 1)
	var removed atomic.Bool
	var after atomic.Int64
	f := &fakeIngester{block: func(context.Context) { time.Sleep(5 * time.Millisecond) }}
	f.fail = func(_ int, topic string, _ []vault.Message) error {
		if topic == "tenant.gone.events" && removed.Load() {
			after.Add(1)
		}
		return nil
	}
	r, _ := startRounds(t, k, k.newConsumer(t, "vault"), f, nil)
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i += 10 {
			select {
			case <-stopPub:
				return
			default:
			}
			_ = k.pub.Publish("tenant.gone.events", testMessagesKeyed(i, 10, 1)...)
			_ = k.pub.Publish("tenant.stays.events", testMessagesKeyed(i, 10, 1)...)
		}
	}()
	waitUntil(t, 20*time.Second, "both topics flowing", func() bool {
		return len(f.applied("tenant.gone.events")) > 50 && len(f.applied("tenant.stays.events")) > 50
	})
	if err := r.Remove(context.Background(), "tenant.gone.events"); err != nil {
		t.Fatal(err)
	}
	removed.Store(true)
	n := len(f.applied("tenant.stays.events"))
	waitUntil(t, 20*time.Second, "the other topic still flowing", func() bool { return len(f.applied("tenant.stays.events")) > n+50 })
	close(stopPub)
	<-pubDone
	if a := after.Load(); a != 0 {
		t.Fatalf("%d batches of a removed topic handed over after Remove returned", a)
	}
	removed.Store(false)
	before := len(f.applied("tenant.gone.events"))
	r.Add("tenant.gone.events")
	mustPublishN(t, k, "tenant.gone.events", 1_000_000, 1)
	waitUntil(t, 20*time.Second, "the topic back after Add", func() bool { return len(f.applied("tenant.gone.events")) > before })
}

// TestRoundsTwoNodesSplitTopics: two consumers in one group (two vaultd
// nodes) receive disjoint sets of tenant topics that together cover all of
// them; when one leaves, the other is assigned its share.
func TestRoundsTwoNodesSplitTopics(t *testing.T) {
	k := MustStartKafka(t)
	const topics = 8
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("tenant.n%02d.events", i)
		k.mustCreateTopic(t, names[i], 1)
	}
	fa, fb := &fakeIngester{}, &fakeIngester{}
	_, stopA := startRounds(t, k, k.newConsumer(t, "vault"), fa, nil)
	_, stopB := startRounds(t, k, k.newConsumer(t, "vault"), fb, nil)
	seen := func(f *fakeIngester) map[string]bool {
		m := map[string]bool{}
		for _, b := range f.calls() {
			m[b.topic] = true
		}
		return m
	}
	// Publish until both members have received something and every topic
	// is covered (the group settles on two members first).
	round := 0
	waitUntil(t, 40*time.Second, "both members consuming, every topic covered", func() bool {
		for _, n := range names {
			_ = k.pub.Publish(n, testMessagesKeyed(round, 1, 1)...)
		}
		round++
		time.Sleep(100 * time.Millisecond)
		a, b := seen(fa), seen(fb)
		if len(a) == 0 || len(b) == 0 {
			return false
		}
		for _, n := range names {
			if !a[n] && !b[n] {
				return false
			}
		}
		return true
	})
	// Once settled, a fresh wave goes to disjoint members.
	waitGroupSettled(t, k, "vault", 2, names)
	ca, cb := len(fa.calls()), len(fb.calls())
	for _, n := range names {
		_ = k.pub.Publish(n, testMessagesKeyed(100000, 1, 1)...)
	}
	waitUntil(t, 20*time.Second, "the wave", func() bool {
		got := 0
		for _, f := range []*fakeIngester{fa, fb} {
			for _, b := range f.calls() {
				for _, m := range b.msgs {
					if string(m.Value) == "100000" {
						got++
					}
				}
			}
		}
		return got == topics
	})
	var onA, onB []string
	for _, b := range fa.calls()[ca:] {
		onA = append(onA, b.topic)
	}
	for _, b := range fb.calls()[cb:] {
		onB = append(onB, b.topic)
	}
	sort.Strings(onA)
	sort.Strings(onB)
	for _, n := range onA {
		if slices.Contains(onB, n) {
			t.Fatalf("topic %s went to both members: A %v, B %v", n, onA, onB)
		}
	}
	t.Logf("member A: %v; member B: %v", onA, onB)
	// B leaves: A gets every topic.
	stopB()
	cA := len(fa.calls())
	waitUntil(t, 40*time.Second, "A assigned B's share", func() bool {
		for _, n := range names {
			_ = k.pub.Publish(n, testMessagesKeyed(200000, 1, 1)...)
		}
		time.Sleep(200 * time.Millisecond)
		m := map[string]bool{}
		for _, b := range fa.calls()[cA:] {
			m[b.topic] = true
		}
		return len(m) == topics
	})
	stopA()
}

// TestRoundsObserveBatch: every batch the vault applied is observed once,
// with its duration.
func TestRoundsObserveBatch(t *testing.T) {
	k := MustStartKafka(t)
	const topic, per = "tenant.observed.events", 50
	k.mustCreateTopic(t, topic, 1)
	mustPublishN(t, k, topic, 0, per)
	f := &fakeIngester{}
	var mu sync.Mutex
	var observed []time.Duration
	_, stop := startRounds(t, k, k.newConsumer(t, "vault"), f, func(c *ingest.RoundsConfig) {
		c.ObserveBatch = func(d time.Duration) {
			mu.Lock()
			observed = append(observed, d)
			mu.Unlock()
		}
	})
	waitUntil(t, 20*time.Second, topic+" applied", func() bool { return len(f.applied(topic)) >= per })
	stop()
	mu.Lock()
	defer mu.Unlock()
	if calls := len(f.calls()); len(observed) != calls || calls == 0 {
		t.Fatalf("%d batches observed for %d applied", len(observed), calls)
	}
	for _, d := range observed {
		if d <= 0 {
			t.Fatalf("observed durations %v: want each > 0", observed)
		}
	}
}
