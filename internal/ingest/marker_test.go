package ingest_test

import (
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// TestLogEndMarkers: with a Deleter WithLogEndMarkers (vaultd's on the
// embedded broker), retention that catches up with a partition leaves the
// marker it appended as the partition's only record. Neither runner hands
// the marker to the vault (so it is never quarantined or audited), and
// after a restart of the broker the partition, fully consumed, keeps its
// offsets: the next record is applied at the next offset, not at one the
// vault applied already.
func TestLogEndMarkers(t *testing.T) {
	const topic = "tenant.acme.events"
	for _, rounds := range []bool{true, false} {
		t.Run(map[bool]string{true: "rounds", false: "kafka-go"}[rounds], func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			k := MustStartKafkaDir(t, dir)
			k.mustCreateTopic(t, topic, 1)
			k.mustPublish(t, topic, 0, 5, 1)
			f := &fakeIngester{}
			stop := runWithMarkers(t, k, rounds, f, func(r any) bool {
				// The marker is consumed and its round committed.
				rr, ok := r.(*ingest.RoundRunner)
				return !ok || rr.Stats().Commits >= 2
			})
			waitFor(t, "5 records applied", func() bool { return len(f.applied(topic)) == 5 })
			waitFor(t, "the sealed records deleted", func() bool { return k.logStart(t, topic)[0] == 5 })
			stop()
			_ = k.broker.Close()

			k2 := MustStartKafkaDir(t, dir)
			if got := k2.logStart(t, topic)[0]; got != 5 {
				t.Fatalf("log start offset after restart = %d, want 5 (the marker)", got)
			}
			f2 := &fakeIngester{}
			stop2 := runWithMarkers(t, k2, rounds, f2, nil)
			k2.mustPublish(t, topic, 5, 1, 1)
			waitFor(t, "the new record applied", func() bool { return len(f2.applied(topic)) == 1 })
			stop2()
			if got := f2.applied(topic)[0]; got.Offset != 6 || string(got.Value) != "5" {
				t.Errorf("after restart applied offset %d value %q, want offset 6 value \"5\" (after the marker at 5)", got.Offset, got.Value)
			}
			for _, b := range append(f.calls(), f2.calls()...) {
				for _, m := range b.msgs {
					if len(m.Value) == 0 || hasHeader(m, kafka.MarkerHeader) {
						t.Errorf("the vault was handed a marker: offset %d headers %v", m.Offset, m.Headers)
					}
				}
			}
			if got := f.applied(topic); len(got) != 5 || got[4].Offset != 4 {
				t.Errorf("before restart applied %d records, want offsets 0..4", len(got))
			}
		})
	}
}

// runWithMarkers runs a RoundRunner (rounds) or a Runner on k, deleting
// sealed records WithLogEndMarkers. The returned stop waits for settled
// (given the runner) and stops it.
func runWithMarkers(t *testing.T, k *kafkaEnv, rounds bool, v ingest.Ingester, settled func(r any) bool) (stop func()) {
	t.Helper()
	del, err := kafka.NewAdmin([]string{k.broker.Addr()}, kafka.Auth{}, kafka.WithLogEndMarkers())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = del.Close() })
	var r any
	var halt func()
	if rounds {
		rr, s := startRounds(t, k, k.newConsumer(t, "vault"), v, func(c *ingest.RoundsConfig) { c.Deleter = del })
		r, halt = rr, s
	} else {
		sub := k.newSubscriber(t, "vault")
		t.Cleanup(func() { _ = sub.Close() })
		run := startRunner(t, ingest.Config{Subscriber: sub, Topics: k.admin, Deleter: del, Vault: v,
			RetentionInterval: 20 * time.Millisecond, DiscoverInterval: 20 * time.Millisecond})
		r, halt = run.r, func() { run.stop(t); _ = sub.Close() }
	}
	return func() {
		if settled != nil {
			waitFor(t, "the runner settled", func() bool { return settled(r) })
		}
		halt()
	}
}

func hasHeader(m vault.Message, key string) bool {
	for _, h := range m.Headers {
		if h.Key == key {
			return true
		}
	}
	return false
}
