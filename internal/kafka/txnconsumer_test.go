package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const txnTopics = `tenant\..*\.events`

// mustNewTxnConsumer returns a TxnConsumer of addr in group with
// transactional id txnID, closed when tb ends; edit may change its config.
func mustNewTxnConsumer(tb testing.TB, addr, group, txnID string, edit func(*TxnConsumerConfig)) *TxnConsumer {
	tb.Helper()
	cfg := TxnConsumerConfig{
		ConsumerConfig: ConsumerConfig{
			Brokers:           []string{addr},
			Group:             group,
			Topics:            txnTopics,
			FetchMaxWait:      50 * time.Millisecond,
			MetadataMaxAge:    200 * time.Millisecond,
			SessionTimeout:    6 * time.Second,
			RebalanceTimeout:  time.Second,
			HeartbeatInterval: 200 * time.Millisecond,
			Logger:            testLogger(),
		},
		TransactionalID: txnID,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := NewTxnConsumer(cfg)
	if err != nil {
		tb.Fatalf("NewTxnConsumer: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// mustProduceN produces n records "<topic>-<i>" (keyed "k<i%4>") to
// topic's partition 0, creating topic (one partition) first.
func mustProduceN(tb testing.TB, addr, topic string, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := MustNewAdmin(tb, addr).CreateTopic(ctx, topic, 1); err != nil {
		tb.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(i%4)), Value: fmt.Appendf(nil, "%s-%d", topic, i)}
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		tb.Fatalf("produce to %s: %v", topic, err)
	}
}

// pollN polls c until it returned n records in all (failing tb after 10s)
// and returns them by topic. It does not allow a rebalance.
func pollN(tb testing.TB, c *TxnConsumer, n int) map[string][]Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string][]Record{}
	total := 0
	for total < n {
		bs, err := c.Poll(ctx)
		if err != nil {
			tb.Fatalf("Poll after %d of %d records: %v", total, n, err)
		}
		for _, b := range bs {
			got[b.Topic] = append(got[b.Topic], b.Records...)
			total += len(b.Records)
		}
	}
	if total != n {
		tb.Fatalf("polled %d records, want %d", total, n)
	}
	return got
}

// sealAll produces every record of recs to its topic's ".sealed" twin
// (value prefixed "sealed:"), in a transaction begun here.
func sealAll(tb testing.TB, c *TxnConsumer, recs map[string][]Record) []*Produced {
	tb.Helper()
	if err := c.Begin(); err != nil {
		tb.Fatal(err)
	}
	var ps []*Produced
	for _, topic := range slices.Sorted(maps.Keys(recs)) {
		for _, r := range recs[topic] {
			ps = append(ps, c.Produce(context.Background(), sealedOf(topic), r.Key, append([]byte("sealed:"), r.Value...)))
		}
	}
	return ps
}

func sealedOf(ingress string) string { return ingress[:len(ingress)-len("events")] + "sealed" }

// readTopic returns the values of topic's records that a fresh consumer
// sees within wait (read_committed unless uncommitted), stopping early once
// it saw want of them.
func readTopic(tb testing.TB, addr, topic string, uncommitted bool, want int, wait time.Duration) []string {
	tb.Helper()
	iso := kgo.ReadCommitted()
	if uncommitted {
		iso = kgo.ReadUncommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []string
	for len(out) < want || want < 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}

func mustEnsureChangelog(tb testing.TB, addr string, topics ...string) {
	tb.Helper()
	a := MustNewAdmin(tb, addr)
	for _, t := range topics {
		if err := EnsureChangelogTopic(context.Background(), a, t); err != nil {
			tb.Fatalf("EnsureChangelogTopic(%s): %v", t, err)
		}
	}
}

func endCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// TestTxnRoundCommit: a round's changelog records and its ingress offsets
// are committed together.
func TestTxnRoundCommit(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 10)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed")
	c := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", nil)

	recs := pollN(t, c, 10)
	ps := sealAll(t, c, recs)
	ok, err := c.End(endCtx(t), true)
	if err != nil || !ok {
		t.Fatalf("End(commit) = %v, %v; want true, nil", ok, err)
	}
	c.AllowRebalance()
	for i, p := range ps {
		if p.Err != nil || p.Topic != "tenant.a.sealed" || p.Partition != 0 || p.Offset != int64(i) {
			t.Errorf("Produced[%d] = %+v, want tenant.a.sealed/0 at offset %d", i, *p, i)
		}
	}
	if got := committed(t, e.Addr(), "vault", "tenant.a.events"); got != 10 {
		t.Errorf("committed offset = %d, want 10", got)
	}
	got := readTopic(t, e.Addr(), "tenant.a.sealed", false, 10, 5*time.Second)
	if len(got) != 10 || got[0] != "sealed:tenant.a.events-0" || got[9] != "sealed:tenant.a.events-9" {
		t.Errorf("read_committed sealed records = %q, want the 10 sealed ingress records", got)
	}
}

// TestTxnRoundAbort: an aborted round leaves no visible changelog record,
// commits no offset, and its records are polled again.
func TestTxnRoundAbort(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 10)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed")
	c := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", nil)

	recs := pollN(t, c, 10)
	sealAll(t, c, recs)
	if err := c.cl.Flush(context.Background()); err != nil { // on the broker, in the open transaction
		t.Fatal(err)
	}
	ok, err := c.End(endCtx(t), false)
	if err != nil || ok {
		t.Fatalf("End(abort) = %v, %v; want false, nil", ok, err)
	}
	c.AllowRebalance()
	if got := readTopic(t, e.Addr(), "tenant.a.sealed", true, 10, 5*time.Second); len(got) != 10 {
		t.Fatalf("read_uncommitted sealed records = %d, want the 10 aborted ones (else the test proves nothing)", len(got))
	}
	if got := readTopic(t, e.Addr(), "tenant.a.sealed", false, -1, time.Second); len(got) != 0 {
		t.Errorf("read_committed sealed records after abort = %q, want none", got)
	}
	if got := committed(t, e.Addr(), "vault", "tenant.a.events"); got != -1 {
		t.Errorf("committed offset after abort = %d, want none (-1)", got)
	}
	again := pollN(t, c, 10)
	if r := again["tenant.a.events"]; r[0].Offset != 0 || r[9].Offset != 9 {
		t.Errorf("polled again offsets %d..%d, want 0..9", r[0].Offset, r[9].Offset)
	}
	sealAll(t, c, again)
	if ok, err := c.End(endCtx(t), true); err != nil || !ok {
		t.Fatalf("End(commit) of the round again = %v, %v", ok, err)
	}
	if got := readTopic(t, e.Addr(), "tenant.a.sealed", false, 10, 5*time.Second); len(got) != 10 || got[0] != "sealed:tenant.a.events-0" {
		t.Errorf("read_committed sealed records = %q, want the 10 of the second round", got)
	}
}

// TestTxnRewindBeforeEnd: End commits the position Rewind set, not the one
// after what was polled (kgo's SetOffsets moves the position End commits).
func TestTxnRewindBeforeEnd(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 10)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed")
	c := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", nil)

	recs := pollN(t, c, 10)
	recs["tenant.a.events"] = recs["tenant.a.events"][:4] // applied 0..3; 4.. failed
	sealAll(t, c, recs)
	c.Rewind(Positions{"tenant.a.events": {0: {Offset: 4, LeaderEpoch: -1}}})
	if ok, err := c.End(endCtx(t), true); err != nil || !ok {
		t.Fatalf("End(commit) = %v, %v", ok, err)
	}
	c.AllowRebalance()
	if got := committed(t, e.Addr(), "vault", "tenant.a.events"); got != 4 {
		t.Errorf("committed offset = %d, want 4 (the rewound position)", got)
	}
	again := pollN(t, c, 6)
	if r := again["tenant.a.events"]; r[0].Offset != 4 {
		t.Errorf("polled again from offset %d, want 4", r[0].Offset)
	}
}

// waitAssigned waits until assigned (guarded by mu) reports want for topic.
func waitAssigned(tb testing.TB, mu *sync.Mutex, assigned map[string][]int32, want map[string][]int32) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		ok := maps.EqualFunc(assigned, want, slices.Equal[[]int32])
		got := maps.Clone(assigned)
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("assigned %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tracker keeps a member's assignment from its callbacks.
type tracker struct {
	mu       sync.Mutex
	assigned map[string][]int32
	revoked  int // rebalances that took partitions away
	lost     int
}

func (tr *tracker) edit(c *TxnConsumerConfig) {
	tr.assigned = map[string][]int32{}
	c.OnAssigned = func(m map[string][]int32) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for t, ps := range m {
			tr.assigned[t] = slices.Sorted(slices.Values(append(tr.assigned[t], ps...)))
		}
	}
	drop := func(m map[string][]int32) {
		for t, ps := range m {
			tr.assigned[t] = slices.DeleteFunc(tr.assigned[t], func(p int32) bool { return slices.Contains(ps, p) })
			if len(tr.assigned[t]) == 0 {
				delete(tr.assigned, t)
			}
		}
	}
	c.OnRevoked = func(m map[string][]int32) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if len(m) > 0 {
			tr.revoked++
		}
		drop(m)
	}
	c.OnLost = func(m map[string][]int32) { tr.mu.Lock(); defer tr.mu.Unlock(); tr.lost++; drop(m) }
}

func (tr *tracker) wait(tb testing.TB, want map[string][]int32) {
	tb.Helper()
	waitAssigned(tb, &tr.mu, tr.assigned, want)
}

// TestTxnFencedAfterRebalance: a member that held a round past the
// rebalance timeout is thrown out; once another member owns its
// partitions, its End does not commit.
//
// kfake fences it as Kafka does (KIP-447): TxnOffsetCommit v3+ carries
// the member id and generation, and kfake's doTxnOffsetCommit
// (txns.go, called by 28_txn_offset_commit.go) refuses an unknown member
// (UNKNOWN_MEMBER_ID), a stale generation (ILLEGAL_GENERATION) and a
// static member replaced by a newer one (FENCED_INSTANCE_ID), as well as a
// producer epoch bumped by a newer producer with the same transactional id
// (PRODUCER_FENCED). What kfake does not check that Kafka does: with
// v3+ it validates only when the request names a member or a generation
// (Kafka also rejects a request with a group instance id but no member
// id), it accepts a member id with generation -1 (Kafka: ILLEGAL_GENERATION),
// and it has no Dead group state (Kafka: COORDINATOR_NOT_AVAILABLE).
// Neither checks partition ownership: the generation is the fence. kgo
// always sends v3+ with its member id and generation, so none of these
// gaps is reached here.
func TestTxnFencedAfterRebalance(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 5)
	mustProduceN(t, e.Addr(), "tenant.b.events", 5)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed", "tenant.b.sealed")
	var trA, trB tracker
	a := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-a", trA.edit)
	trA.wait(t, map[string][]int32{"tenant.a.events": {0}, "tenant.b.events": {0}})

	stale := pollN(t, a, 10) // rebalances are held from here
	sealAll(t, a, stale)

	b := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-b", trB.edit)
	// A does not rejoin (its round holds the rebalance): after the
	// rebalance timeout the coordinator throws it out and B gets both.
	trB.wait(t, map[string][]int32{"tenant.a.events": {0}, "tenant.b.events": {0}})
	took := pollN(t, b, 10)
	sealAll(t, b, took)
	if ok, err := b.End(endCtx(t), true); err != nil || !ok {
		t.Fatalf("B: End(commit) = %v, %v; want true, nil", ok, err)
	}
	b.AllowRebalance()

	ok, err := a.End(endCtx(t), true)
	t.Logf("stale A: End(commit) = %v, %v", ok, err)
	if ok {
		t.Fatalf("stale A: End(commit) committed after its partitions moved to B")
	}
	a.AllowRebalance()
	for _, topic := range []string{"tenant.a.sealed", "tenant.b.sealed"} {
		if got := readTopic(t, e.Addr(), topic, false, -1, time.Second); len(got) != 5 {
			t.Errorf("read_committed %s = %q, want B's 5 records only", topic, got)
		}
	}
	for _, topic := range []string{"tenant.a.events", "tenant.b.events"} {
		if got := committed(t, e.Addr(), "vault", topic); got != 5 {
			t.Errorf("committed offset of %s = %d, want 5", topic, got)
		}
	}
}

// TestTxnProducerFenced: a new producer with the same transactional id
// (the node started again) fences the old one: its End fails.
func TestTxnProducerFenced(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 5)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed")
	old := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", nil)
	recs := pollN(t, old, 5)
	sealAll(t, old, recs)
	if err := old.cl.Flush(context.Background()); err != nil { // the txn is open on the broker
		t.Fatal(err)
	}

	// The new incarnation's producer id initialization bumps the epoch.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.TransactionalID("tenantvault-n1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "tenant.a.sealed", Value: []byte("new")}).FirstErr(); err != nil {
		t.Fatalf("new incarnation: produce: %v", err)
	}
	if err := cl.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		t.Fatalf("new incarnation: commit: %v", err)
	}

	ok, err := old.End(endCtx(t), true)
	t.Logf("fenced: End(commit) = %v, %v", ok, err)
	if ok || err == nil {
		t.Fatalf("fenced producer: End(commit) = %v, %v; want false and an error", ok, err)
	}
	if got := readTopic(t, e.Addr(), "tenant.a.sealed", false, -1, time.Second); !slices.Equal(got, []string{"new"}) {
		t.Errorf("read_committed sealed = %q, want only the new incarnation's record", got)
	}
	if got := committed(t, e.Addr(), "vault", "tenant.a.events"); got != -1 {
		t.Errorf("committed offset = %d, want none", got)
	}
}

// TestTxnStaticMembership: a static member closed and opened again with
// the same InstanceID within the session timeout gets its partitions back,
// and the other member keeps its own throughout.
func TestTxnStaticMembership(t *testing.T) {
	e := MustStartEmbedded(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		mustProduceN(t, e.Addr(), "tenant."+id+".events", 3)
	}
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed", "tenant.b.sealed", "tenant.c.sealed", "tenant.d.sealed")
	long := func(id string, tr *tracker) func(*TxnConsumerConfig) {
		return func(c *TxnConsumerConfig) {
			c.InstanceID = id
			c.SessionTimeout = 8 * time.Second
			c.RebalanceTimeout = 3 * time.Second
			tr.edit(c)
		}
	}
	var t1, t2 tracker
	n1 := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", long("n1", &t1))
	t1.wait(t, map[string][]int32{"tenant.a.events": {0}, "tenant.b.events": {0}, "tenant.c.events": {0}, "tenant.d.events": {0}})
	n2 := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n2", long("n2", &t2))
	// Cooperative-sticky: n1 gives up two topics, n2 takes them.
	deadline := time.Now().Add(15 * time.Second)
	for {
		t1.mu.Lock()
		t2.mu.Lock()
		n, m := len(t1.assigned), len(t2.assigned)
		t2.mu.Unlock()
		t1.mu.Unlock()
		if n == 2 && m == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("assignments %v and %v, want two topics each", t1.assigned, t2.assigned)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t1.mu.Lock()
	before1 := maps.Clone(t1.assigned)
	t1.mu.Unlock()
	t2.mu.Lock()
	before2, revoked2 := maps.Clone(t2.assigned), t2.revoked
	t2.mu.Unlock()

	// n2 keeps consuming; every round commits.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var roundsErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			bs, err := n2.Poll(ctx)
			cancel()
			if err != nil {
				continue
			}
			recs := map[string][]Record{}
			for _, b := range bs {
				recs[b.Topic] = append(recs[b.Topic], b.Records...)
			}
			if err := n2.Begin(); err != nil {
				roundsErr = errors.Join(roundsErr, err)
				return
			}
			for topic, rs := range recs {
				for _, r := range rs {
					n2.Produce(context.Background(), sealedOf(topic), r.Key, r.Value)
				}
			}
			if ok, err := n2.End(context.Background(), true); !ok || err != nil {
				roundsErr = errors.Join(roundsErr, fmt.Errorf("n2: End(commit) = %v, %v", ok, err))
			}
			n2.AllowRebalance()
		}
	}()

	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	var t1b tracker
	mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-n1", long("n1", &t1b))
	t1b.wait(t, before1)
	// Longer than a rebalance would take: nothing moves.
	time.Sleep(4 * time.Second)
	t1b.mu.Lock()
	after1 := maps.Clone(t1b.assigned)
	t1b.mu.Unlock()
	close(stop)
	wg.Wait()
	t2.mu.Lock()
	after2, lost2, revoked2 := maps.Clone(t2.assigned), t2.lost, t2.revoked-revoked2
	t2.mu.Unlock()
	if !maps.EqualFunc(after1, before1, slices.Equal[[]int32]) {
		t.Errorf("n1 reopened: assigned %v, want its old %v", after1, before1)
	}
	if !maps.EqualFunc(after2, before2, slices.Equal[[]int32]) || lost2 != 0 || revoked2 != 0 {
		t.Errorf("n2 across n1's restart: assigned %v (lost %d times, revoked %d times), want %v throughout", after2, lost2, revoked2, before2)
	}
	if roundsErr != nil {
		t.Error(roundsErr)
	}
	// n2's records were all sealed, once.
	for topic := range before2 {
		if got := committed(t, e.Addr(), "vault", topic); got != 3 {
			t.Errorf("committed offset of %s = %d, want 3", topic, got)
		}
	}
}

// TestTxnRoundAfterRevoke: the first round after a rebalance that revoked
// partitions commits (kgo's session would abort it: it remembers the
// revoke until the next End).
func TestTxnRoundAfterRevoke(t *testing.T) {
	e := MustStartEmbedded(t)
	mustProduceN(t, e.Addr(), "tenant.a.events", 3)
	mustProduceN(t, e.Addr(), "tenant.b.events", 3)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed", "tenant.b.sealed")
	var trA, trB tracker
	a := mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-a", trA.edit)
	trA.wait(t, map[string][]int32{"tenant.a.events": {0}, "tenant.b.events": {0}})
	mustNewTxnConsumer(t, e.Addr(), "vault", "tenantvault-b", trB.edit)
	// a revokes one topic (cooperative), b gets it.
	deadline := time.Now().Add(15 * time.Second)
	for {
		trA.mu.Lock()
		n := len(trA.assigned)
		trA.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a still assigned %v", trA.assigned)
		}
		time.Sleep(20 * time.Millisecond)
	}
	trA.mu.Lock()
	var mine string
	for topic := range trA.assigned {
		mine = topic
	}
	trA.mu.Unlock()
	other := "tenant.a.events"
	if mine == other {
		other = "tenant.b.events"
	}
	// The rebalance is over once b has the other topic.
	trB.wait(t, map[string][]int32{other: {0}})
	recs := pollN(t, a, 3)
	if len(recs[mine]) != 3 {
		t.Fatalf("a polled %v, want the 3 records of %s", recs, mine)
	}
	sealAll(t, a, recs)
	if ok, err := a.End(endCtx(t), true); err != nil || !ok {
		t.Fatalf("a: first round after the revoke: End(commit) = %v, %v; want true, nil", ok, err)
	}
	a.AllowRebalance()
	if got := committed(t, e.Addr(), "vault", mine); got != 3 {
		t.Errorf("committed offset of %s = %d, want 3", mine, got)
	}
}
