package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnsureChangelogTopic(t *testing.T) {
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()
	for i := range 2 { // idempotent
		if err := EnsureChangelogTopic(ctx, a, "tenant.a.sealed"); err != nil {
			t.Fatalf("EnsureChangelogTopic #%d: %v", i+1, err)
		}
	}
	rcs, err := a.adm.DescribeTopicConfigs(ctx, "tenant.a.sealed")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("tenant.a.sealed", nil)
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		t.Errorf("cleanup.policy = %q, want compact", policy)
	}
	if got := changelogPartitions(t, a, "tenant.a.sealed"); got != 1 {
		t.Errorf("partitions = %d, want 1", got)
	}
	// A topic that exists but is no changelog.
	if err := a.CreateTopic(ctx, "tenant.b.sealed", 1); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTopic(ctx, "tenant.c.sealed", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := a.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: new("compact")}}, "tenant.c.sealed"); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"tenant.b.sealed", "tenant.c.sealed"} {
		if err := EnsureChangelogTopic(ctx, a, topic); !errors.Is(err, ErrChangelogTopic) {
			t.Errorf("EnsureChangelogTopic(%s) = %v, want ErrChangelogTopic", topic, err)
		}
	}
}

// changelogPartitions returns the number of topic's partitions.
func changelogPartitions(tb testing.TB, a *Admin, topic string) int {
	tb.Helper()
	td, err := a.adm.ListTopics(context.Background(), topic)
	if err != nil {
		tb.Fatal(err)
	}
	return len(td[topic].Partitions)
}

// produceTxn produces values to topic's partition 0 in one transaction of
// a producer with transactional id txnID, committed or aborted.
func produceTxn(tb testing.TB, addr, txnID, topic string, commit bool, values ...string) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID(txnID), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		tb.Fatal(err)
	}
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k" + v), Value: []byte(v)}).FirstErr(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		tb.Fatal(err)
	}
}

func readValues(tb testing.TB, addr, topic string, from int64) ([]string, int64, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	next, err := ReadToEnd(ctx, []string{addr}, Auth{}, topic, 0, from, func(r Record) error {
		got = append(got, fmt.Sprintf("%d:%s", r.Offset, r.Value))
		return nil
	})
	return got, next, err
}

// TestReadToEnd: committed records only, up to the end as it was at the
// start, from the offset asked, and the next offset past the markers.
func TestReadToEnd(t *testing.T) {
	e := MustStartEmbedded(t)
	mustEnsureChangelog(t, e.Addr(), "tenant.a.sealed")
	produceTxn(t, e.Addr(), "w", "tenant.a.sealed", true, "a", "b", "c") // 0-2, marker 3
	produceTxn(t, e.Addr(), "w", "tenant.a.sealed", false, "x", "y")     // 4-5 aborted, marker 6
	produceTxn(t, e.Addr(), "w", "tenant.a.sealed", true, "d")           // 7, marker 8

	got, next, err := readValues(t, e.Addr(), "tenant.a.sealed", 0)
	if want := "[0:a 1:b 2:c 7:d]"; err != nil || fmt.Sprint(got) != want || next != 9 {
		t.Errorf("ReadToEnd(from 0) = %v, next %d, %v; want %s, next 9", got, next, err, want)
	}
	got, next, err = readValues(t, e.Addr(), "tenant.a.sealed", 2)
	if want := "[2:c 7:d]"; err != nil || fmt.Sprint(got) != want || next != 9 {
		t.Errorf("ReadToEnd(from 2) = %v, next %d, %v; want %s, next 9", got, next, err, want)
	}
	got, next, err = readValues(t, e.Addr(), "tenant.a.sealed", 9)
	if err != nil || len(got) != 0 || next != 9 {
		t.Errorf("ReadToEnd(from the end) = %v, next %d, %v; want nothing, next 9", got, next, err)
	}
	if _, _, err := readValues(t, e.Addr(), "tenant.a.sealed", 10); !errors.Is(err, ErrPastEnd) {
		t.Errorf("ReadToEnd(past the end) = %v, want ErrPastEnd", err)
	}
	if _, _, err := readValues(t, e.Addr(), "tenant.nope.sealed", 0); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("ReadToEnd(no such topic) = %v, want ErrTopicNotFound", err)
	}

	// An open transaction: the read stops before it (the last stable
	// offset), and does not wait for it.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addr()), kgo.TransactionalID("open"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "tenant.a.sealed", Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produceTxn(t, e.Addr(), "w", "tenant.a.sealed", true, "later") // 10, after the open one at 9
	got, next, err = readValues(t, e.Addr(), "tenant.a.sealed", 0)
	if want := "[0:a 1:b 2:c 7:d]"; err != nil || fmt.Sprint(got) != want || next != 9 {
		t.Errorf("ReadToEnd with a transaction open = %v, next %d, %v; want %s, next 9", got, next, err, want)
	}

	// fn's error stops the read at the record it failed.
	boom := errors.New("boom")
	next, err = ReadToEnd(context.Background(), []string{e.Addr()}, Auth{}, "tenant.a.sealed", 0, 0, func(r Record) error {
		if string(r.Value) == "c" {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || next != 2 {
		t.Errorf("ReadToEnd with fn failing at offset 2 = %d, %v; want 2, boom", next, err)
	}
}
