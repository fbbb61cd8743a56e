package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/vaulttest"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

var (
	_ ingest.TxnRoundConsumer = (*kafka.TxnConsumer)(nil)
	_ ingest.Preparer         = (*vault.Vault)(nil)
	_ vault.Changelog         = testChangelog{}
)

// testChangelog is vault.Changelog on the tenant.<id>.sealed topics.
type testChangelog struct{ c *kafka.Changelogs }

func (c testChangelog) Read(ctx context.Context, t events.TenantID, from int64, fn func(int64, []byte) error) error {
	return c.c.Read(ctx, events.ChangelogTopicFor(t), from, fn)
}

func (c testChangelog) Delete(ctx context.Context, t events.TenantID) error {
	return c.c.Delete(ctx, events.ChangelogTopicFor(t))
}

// openNode opens a vault of a cluster node on k (its store a cache of the
// changelogs) in dir; a non-empty copyFrom is the data directory of a
// vault whose master key, keysets and tenants it starts with (as a node
// that took them from the cluster directory).
func openNode(tb testing.TB, k *kafkaEnv, dir, copyFrom string) *vaulttest.Harness {
	tb.Helper()
	if copyFrom != "" {
		if err := os.CopyFS(dir, os.DirFS(copyFrom)); err != nil {
			tb.Fatal(err)
		}
		// Its own stores and audit log.
		for _, sub := range []string{"tenants", "audit"} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	cls, err := kafka.NewChangelogs([]string{k.broker.Addr()}, kafka.Auth{}, k.admin)
	if err != nil {
		tb.Fatal(err)
	}
	return vaulttest.MustOpen(tb, vaulttest.Dir(dir), vaulttest.Config(func(c *vault.Config) {
		c.Changelog = testChangelog{cls}
	}))
}

// publishEvents publishes n valid events (ids e<from+i>) to topic, over
// streams s0..s4, keyed by stream.
func publishEvents(tb testing.TB, k *kafkaEnv, topic string, from, n int) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.broker.Addr()), kgo.ProducerLinger(0))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		id := from + i
		stream := fmt.Sprintf("s%d", id%5)
		v, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": "e" + strconv.Itoa(id), "source": "test", "type": "test.event",
			"subject": stream, "data": map[string]int{"n": id}})
		rs[i] = &kgo.Record{Topic: topic, Key: []byte(stream), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
}

// newTxnConsumer is a transactional member of group as node id.
func (k *kafkaEnv) newTxnConsumer(tb testing.TB, group, id string, edit func(*kafka.TxnConsumerConfig)) *kafka.TxnConsumer {
	tb.Helper()
	cfg := kafka.TxnConsumerConfig{
		ConsumerConfig: kafka.ConsumerConfig{
			Brokers: []string{k.broker.Addr()}, Group: group, Topics: events.TenantTopicPattern,
			FetchMaxWait: 50 * time.Millisecond, MetadataMaxAge: 200 * time.Millisecond,
			SessionTimeout: 6 * time.Second, RebalanceTimeout: time.Second, HeartbeatInterval: 200 * time.Millisecond,
			Logger: testLogger(), InstanceID: id,
		},
		TransactionalID: "tenantvault-" + id,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := kafka.NewTxnConsumer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// startTxnRounds runs a transactional RoundRunner on c with v until the
// test ends or stop is called; before, if set, is its SetBeforeEnd hook.
func startTxnRounds(tb testing.TB, k *kafkaEnv, c *kafka.TxnConsumer, v *vault.Vault, before func()) (*ingest.RoundRunner, func()) {
	tb.Helper()
	r, err := ingest.NewRoundRunner(ingest.RoundsConfig{Txn: c, Vault: v, KeepIngress: true, PauseFor: 300 * time.Millisecond, Logger: testLogger(),
		EnsureChangelog: func(ctx context.Context, topic string) error { return kafka.EnsureChangelogTopic(ctx, k.admin, topic) }})
	if err != nil {
		tb.Fatal(err)
	}
	if before != nil {
		ingest.SetBeforeEnd(r, before)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run: %v", err)
			}
			_ = c.Close()
		})
	}
	tb.Cleanup(stop)
	return r, stop
}

// storeOffset is the last offset of topic/0 that h's store of t applied
// (-1: none).
func storeOffset(tb testing.TB, h *vaulttest.Harness, t events.TenantID, topic string) int64 {
	tb.Helper()
	st, release, err := h.Stores.Acquire(t)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	offs, err := st.Offsets()
	if err != nil {
		tb.Fatal(err)
	}
	if o, ok := offs[topic][0]; ok {
		return o
	}
	return -1
}

// storeDump is every record of h's store of t (keyspace|key → value) and
// its changelog position.
func storeDump(tb testing.TB, h *vaulttest.Harness, t events.TenantID) (map[string]string, int64) {
	tb.Helper()
	st, release, err := h.Stores.Acquire(t)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	out := map[string]string{}
	if err := st.Export(context.Background(), func(ks string, key, value []byte) error {
		out[ks+"|"+string(key)] = string(value)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	next, err := st.ChangelogNext()
	if err != nil {
		tb.Fatal(err)
	}
	return out, next
}

// changelogDump reads t's changelog read_committed and returns what it
// leaves a store with (the last write of each key) and the offset after
// its last record.
func changelogDump(tb testing.TB, k *kafkaEnv, t events.TenantID) (map[string]string, int64) {
	tb.Helper()
	out := map[string]string{}
	last := int64(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := kafka.ReadToEnd(ctx, []string{k.broker.Addr()}, kafka.Auth{}, events.ChangelogTopicFor(t), 0, 0, func(r kafka.Record) error {
		ch, err := projections.DecodeChange(r.Value)
		if err != nil {
			return err
		}
		if ch.Keyspace == projections.KeyspaceVector || ch.Keyspace == projections.KeyspaceVectorDim {
			return nil
		}
		if ch.Delete {
			delete(out, ch.Keyspace+"|"+string(ch.Key))
		} else {
			out[ch.Keyspace+"|"+string(ch.Key)] = string(ch.Value)
		}
		last = r.Offset + 1
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out, last
}

// groupCommitted is group's committed offset of topic/0 (-1: none).
func groupCommitted(tb testing.TB, k *kafkaEnv, group, topic string) int64 {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.broker.Addr()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	os, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		tb.Fatal(err)
	}
	if o, ok := os.Lookup(topic, 0); ok {
		return o.At
	}
	return -1
}

// eventsOnce checks that h's store of t holds each of the n events e0..
// exactly once.
func eventsOnce(tb testing.TB, h *vaulttest.Harness, t events.TenantID, n int) {
	tb.Helper()
	st, release, err := h.Stores.Acquire(t)
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	c := h.Cipher(tb, string(t))
	seen := map[string]int{}
	for s := range 5 {
		hist, err := st.History(c, fmt.Sprintf("s%d", s), 0, 10*n)
		if err != nil {
			tb.Fatalf("History(s%d): %v", s, err)
		}
		for i, e := range hist {
			seen[e.Event.ID]++
			if e.Version != uint64(i+1) {
				tb.Errorf("s%d: event %d has version %d", s, i, e.Version)
			}
		}
	}
	for i := range n {
		if id := "e" + strconv.Itoa(i); seen[id] != 1 {
			tb.Errorf("event %s stored %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != n {
		tb.Errorf("store holds %d events, want %d", len(seen), n)
	}
}

// sameDump checks that the store's records are those of the changelog.
func sameDump(tb testing.TB, store, clog map[string]string) {
	tb.Helper()
	if len(store) == 0 {
		tb.Fatal("store is empty")
	}
	for k, v := range store {
		if cv, ok := clog[k]; !ok || !bytes.Equal([]byte(cv), []byte(v)) {
			tb.Errorf("store record %q: changelog has it %v, same value %v", k, ok, cv == v)
		}
	}
	for k := range clog {
		if _, ok := store[k]; !ok {
			tb.Errorf("changelog record %q not in the store", k)
		}
	}
}

// TestTxnRoundsCommitChangelogWithOffsets: after transactional rounds,
// the committed changelog is exactly the store's writes, the store's
// changelog position is its end, and the group's committed offset is the
// store's offset + 1.
func TestTxnRoundsCommitChangelogWithOffsets(t *testing.T) {
	k := MustStartKafka(t)
	h := openNode(t, k, t.TempDir(), "")
	const tenant, n = events.TenantID("acme"), 300
	h.MustCreateTenant(t, string(tenant))
	topic := events.TopicFor(tenant)
	k.mustCreateTopic(t, topic, 1)
	publishEvents(t, k, topic, 0, n)

	c := k.newTxnConsumer(t, "vault", "a", func(cfg *kafka.TxnConsumerConfig) { cfg.MaxPollRecords = 64 })
	r, stop := startTxnRounds(t, k, c, h.Vault, nil)
	waitUntil(t, 30*time.Second, "all events applied", func() bool { return storeOffset(t, h, tenant, topic) == n-1 })
	waitUntil(t, 10*time.Second, "offsets committed", func() bool { return groupCommitted(t, k, "vault", topic) == n })
	stop()
	if st := r.Stats(); st.Commits < 2 {
		t.Errorf("Stats = %+v, want several committed rounds (MaxPollRecords 64)", st)
	}

	store, next := storeDump(t, h, tenant)
	clog, end := changelogDump(t, k, tenant)
	sameDump(t, store, clog)
	if next != end {
		t.Errorf("store's changelog position = %d, want the changelog's end %d", next, end)
	}
	if got := groupCommitted(t, k, "vault", topic); got != storeOffset(t, h, tenant, topic)+1 {
		t.Errorf("committed offset = %d, want the store's offset + 1 = %d", got, storeOffset(t, h, tenant, topic)+1)
	}
	eventsOnce(t, h, tenant, n)
}

// TestTxnRoundsStaleNodeFenced: node A's round is prepared and its
// changelog records produced when its partition moves to node B (A holds
// the rebalance past its timeout). A's End does not commit, A's store
// transaction is discarded, B applies the records, and B's store holds
// each event once, the committed changelog being exactly B's writes.
func TestTxnRoundsStaleNodeFenced(t *testing.T) {
	k := MustStartKafka(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	a := openNode(t, k, dirA, "")
	const tenant, n = events.TenantID("acme"), 100
	a.MustCreateTenant(t, string(tenant))
	b := openNode(t, k, dirB, dirA)
	if err := b.Stores.Create(tenant); err != nil { // as AdoptTenant does
		t.Fatal(err)
	}
	topic := events.TopicFor(tenant)
	k.mustCreateTopic(t, topic, 1)
	publishEvents(t, k, topic, 0, n)

	assignedB := make(chan struct{})
	var assignOnce sync.Once
	prepared := make(chan struct{})
	var hookOnce sync.Once
	cA := k.newTxnConsumer(t, "vault", "a", func(cfg *kafka.TxnConsumerConfig) {
		cfg.OnRevoked = func(m map[string][]int32) { released(a.Vault, m) }
		cfg.OnLost = cfg.OnRevoked
	})
	rA, stopA := startTxnRounds(t, k, cA, a.Vault, func() {
		hookOnce.Do(func() {
			close(prepared)
			select { // A holds its round until B owns the partition
			case <-assignedB:
			case <-time.After(30 * time.Second):
				t.Error("B was not assigned the partition within 30s")
			}
		})
	})
	select {
	case <-prepared:
	case <-time.After(30 * time.Second):
		t.Fatal("A prepared no round within 30s")
	}
	cB := k.newTxnConsumer(t, "vault", "b", func(cfg *kafka.TxnConsumerConfig) {
		cfg.OnAssigned = func(m map[string][]int32) {
			if len(m[topic]) > 0 {
				assignOnce.Do(func() { close(assignedB) })
			}
		}
	})
	rB, stopB := startTxnRounds(t, k, cB, b.Vault, nil)
	waitUntil(t, 40*time.Second, "B applied every event", func() bool { return storeOffset(t, b, tenant, topic) == n-1 })
	waitUntil(t, 10*time.Second, "offsets committed", func() bool { return groupCommitted(t, k, "vault", topic) == n })
	stopA()
	stopB()

	if st := rA.Stats(); st.Commits != 0 || st.Batches == 0 {
		t.Errorf("A: Stats = %+v, want a prepared batch and no committed round", st)
	}
	if st := rB.Stats(); st.Commits == 0 {
		t.Errorf("B: Stats = %+v, want committed rounds", st)
	}
	if o := storeOffset(t, a, tenant, topic); o != -1 {
		t.Errorf("A's store applied up to offset %d: its store transaction was not discarded", o)
	}
	if got, next := storeDump(t, a, tenant); next != 0 || len(got) > 0 {
		for key := range got {
			t.Logf("A's store: %q", key)
		}
		t.Errorf("A's store holds %d records at changelog position %d, want none", len(got), next)
	}
	eventsOnce(t, b, tenant, n)
	store, next := storeDump(t, b, tenant)
	clog, end := changelogDump(t, k, tenant)
	sameDump(t, store, clog)
	// A's records reached the changelog, in a transaction aborted.
	if all := uncommittedCount(t, k, events.ChangelogTopicFor(tenant)); all <= int(end)/2 {
		t.Errorf("changelog holds %d data records read_uncommitted, want A's aborted ones besides B's (end %d)", all, end)
	}
	if next != end {
		t.Errorf("B's changelog position = %d, want the changelog's end %d", next, end)
	}
}

// released is what vaultd's OnRevoked does.
func released(v *vault.Vault, m map[string][]int32) {
	for topic := range m {
		if t, err := events.TenantFromTopic(topic); err == nil {
			v.Released(t)
		}
	}
}

// uncommittedCount is how many data records of topic/0 a read_uncommitted
// consumer sees.
func uncommittedCount(tb testing.TB, k *kafkaEnv, topic string) int {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.broker.Addr()), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n := 0
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(*kgo.Record) { n++ })
	}
	return n
}

// TestTxnRoundsRefuseSeek: a transactional runner refuses Hold and Seek
// (tenant import), which would commit offsets outside a round.
func TestTxnRoundsRefuseSeek(t *testing.T) {
	k := MustStartKafka(t)
	h := openNode(t, k, t.TempDir(), "")
	r, _ := startTxnRounds(t, k, k.newTxnConsumer(t, "vault", "a", nil), h.Vault, nil)
	ctx := context.Background()
	if err := r.Hold(ctx, "tenant.acme.events"); !errors.Is(err, ingest.ErrSeekTxn) || events.ErrorCode(err) != events.EINVALID {
		t.Errorf("Hold = %v, want ErrSeekTxn (invalid)", err)
	}
	if err := r.Seek(ctx, "tenant.acme.events", map[int]int64{0: 5}, 1); !errors.Is(err, ingest.ErrSeekTxn) {
		t.Errorf("Seek = %v, want ErrSeekTxn", err)
	}
}
