package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// marker is the plaintext the retention tests look for on the broker's
// disk.
const marker = "MARKER-7f3a9c21-plaintext"

// publishMarker publishes one record holding marker to topic's partition
// of stream-0, in a batch of its own.
func (k *kafkaEnv) publishMarker(tb testing.TB, topic string) {
	tb.Helper()
	m := message.NewMessage("marker", []byte(marker))
	m.Metadata.Set(kafka.MetadataKey, "stream-0")
	if err := k.pub.Publish(topic, m); err != nil {
		tb.Fatalf("Publish: %v", err)
	}
}

// onDisk reports whether any file under dir holds marker.
func onDisk(tb testing.TB, dir string) bool {
	tb.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) { // deleted meanwhile
			return nil
		}
		found = found || bytes.Contains(b, []byte(marker))
		return err
	})
	if err != nil {
		tb.Fatalf("scan %s: %v", dir, err)
	}
	return found
}

// logStart returns topic's log start offsets.
func (k *kafkaEnv) logStart(tb testing.TB, topic string) map[int]int64 {
	tb.Helper()
	offs, err := k.admin.LogStartOffsets(context.Background(), topic)
	if err != nil {
		tb.Fatalf("LogStartOffsets(%s): %v", topic, err)
	}
	return offs
}

// After a batch is acked, its records are deleted from the broker, on disk
// too, within a few RetentionIntervals; with KeepIngress nothing is
// deleted; records of a batch that keeps failing are never deleted; what
// was sealed since the last pass is deleted when Run returns.
func TestRetention(t *testing.T) {
	const (
		topic    = "tenant.acme.events"
		n        = 40
		interval = 50 * time.Millisecond
	)
	for _, tc := range []struct {
		name       string
		keep       bool
		fail       bool
		interval   time.Duration
		wantDelete bool
	}{
		{name: "sealed records are deleted", interval: interval, wantDelete: true},
		{name: "keep ingress", keep: true, interval: interval},
		{name: "failing batch", fail: true, interval: interval},
		{name: "at shutdown", interval: time.Hour, wantDelete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			k := MustStartKafkaDir(t, dir)
			k.mustCreateTopic(t, topic, 2)
			k.publishMarker(t, topic)
			k.mustPublish(t, topic, 0, n, 5)
			if !onDisk(t, dir) {
				t.Fatalf("marker in no file of the broker's DataDir after publishing")
			}
			sub := k.newSubscriber(t, "tv")
			t.Cleanup(func() { _ = sub.Close() })
			v := &fakeIngester{}
			if tc.fail {
				v.fail = func(int, string, []vault.Message) error { return errors.New("store unavailable") }
			}
			lister := &countingLister{TopicLister: k.admin}
			rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: lister, Deleter: k.admin, Vault: v, KeepIngress: tc.keep,
				RetentionInterval: tc.interval, DiscoverInterval: tc.interval})

			var sealed map[int]int64
			if tc.fail {
				waitFor(t, "3 failed Ingest calls", func() bool { return len(v.calls()) >= 3 })
				if sealed = rr.r.SealedOffsets(topic); sealed != nil {
					t.Errorf("SealedOffsets = %v with every batch failing, want none", sealed)
				}
			} else {
				// Acked (and so sealed) just after Ingest returns.
				waitFor(t, "all records ingested and acked", func() bool {
					sealed = rr.r.SealedOffsets(topic)
					return sum(sealed) == n+1
				})
				if got := len(v.applied(topic)); got != n+1 {
					t.Errorf("%d records applied, want %d", got, n+1)
				}
			}
			if tc.interval == time.Hour {
				rr.stop(t) // the last pass
			}
			if tc.wantDelete {
				waitFor(t, "log start offsets at the sealed offsets", func() bool { return maps.Equal(k.logStart(t, topic), sealed) })
				if onDisk(t, dir) {
					t.Errorf("log start offsets %v, but the marker is still in the broker's DataDir", k.logStart(t, topic))
				}
				return
			}
			// The runner goes on (five more discovery passes, each as long
			// as a retention interval; with a failing batch, more failed
			// calls too) and deletes nothing.
			passes, calls := lister.n.Load(), len(v.calls())
			waitFor(t, "five more discovery passes", func() bool { return lister.n.Load() >= passes+5 })
			if tc.fail {
				waitFor(t, "more failed Ingest calls", func() bool { return len(v.calls()) > calls })
			}
			if got := k.logStart(t, topic); got[0] != 0 || got[1] != 0 {
				t.Errorf("log start offsets = %v, want 0 (nothing deleted)", got)
			}
			if !onDisk(t, dir) {
				t.Errorf("marker gone from the broker's DataDir, want it kept")
			}
		})
	}
}

func sum(m map[int]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// consumers counts the goroutines consuming a topic.
func consumers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "ingest.(*Runner).consume(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Remove stops a topic's consumer after its batch in flight: no Ingest
// follows, its goroutine is gone, its sealed offsets forgotten. When the
// topic is deleted and created again, discovery consumes it from its start
// and retention deletes what is sealed.
func TestRemove(t *testing.T) {
	const (
		topic = "tenant.acme.events"
		other = "tenant.globex.events"
	)
	k := MustStartKafka(t)
	k.mustCreateTopic(t, topic, 1)
	k.mustCreateTopic(t, other, 1)
	k.mustPublish(t, topic, 0, 3, 1)
	k.mustPublish(t, other, 0, 3, 1)
	sub := k.newSubscriber(t, "tv")
	t.Cleanup(func() { _ = sub.Close() })

	var blocking atomic.Bool
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	v := &fakeIngester{block: func(ctx context.Context) {
		if blocking.Load() {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
	}}
	lister := &countingLister{TopicLister: k.admin}
	rr := startRunner(t, ingest.Config{Subscriber: sub, Topics: lister, Deleter: k.admin, Vault: v,
		DiscoverInterval: 50 * time.Millisecond, RetentionInterval: 50 * time.Millisecond})
	waitFor(t, "3 records of each topic ingested", func() bool { return len(v.applied(topic)) == 3 && len(v.applied(other)) == 3 })
	waitFor(t, "sealed records deleted", func() bool { return k.logStart(t, topic)[0] == 3 })

	// A batch in flight when Remove is called is finished first.
	blocking.Store(true)
	k.mustPublish(t, topic, 3, 2, 1)
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatalf("no Ingest call within %s", waitTimeout)
	}
	removed := make(chan error, 1)
	go func() { removed <- rr.r.Remove(context.Background(), topic) }()
	select {
	case err := <-removed:
		t.Fatalf("Remove returned %v while a batch of the topic was being applied", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-removed:
		if err != nil {
			t.Fatalf("Remove = %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Remove did not return within %s", waitTimeout)
	}
	if got := values(v.applied(topic)); !slices.Contains(got, "3") {
		t.Fatalf("Remove returned before the batch in flight was applied: applied %v", got)
	}
	calls, applied := len(v.calls()), len(v.applied(topic))
	if active(rr.r, topic) {
		t.Errorf("Active() = %v after Remove, want no %s", rr.r.Active(), topic)
	}
	if got := rr.r.SealedOffsets(topic); got != nil {
		t.Errorf("SealedOffsets(%s) = %v after Remove, want none", topic, got)
	}
	if n := consumers(); n != 1 {
		t.Errorf("%d consumer goroutines after Remove, want 1 (%s)", n, other)
	}

	// More records: not consumed while discovery leaves the topic alone.
	k.mustPublish(t, topic, 5, 2, 1)
	passes := lister.n.Load()
	waitFor(t, "six discovery passes", func() bool { return lister.n.Load() >= passes+6 })
	if got := len(v.calls()); got != calls {
		t.Fatalf("%d Ingest calls after Remove returned, want none", got-calls)
	}

	// Deleted and created again: consumed from its start (the group's
	// committed offset is gone with the topic, or out of range).
	ctx := context.Background()
	if err := k.admin.DeleteTopic(ctx, topic); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	k.mustCreateTopic(t, topic, 1)
	k.mustPublish(t, topic, 100, 3, 1)
	waitFor(t, "the new records ingested", func() bool {
		var got []string
		for _, m := range v.applied(topic)[applied:] {
			got = append(got, strconv.FormatInt(m.Offset, 10)+":"+string(m.Value))
		}
		return strings.Join(got, " ") == "0:100 1:101 2:102"
	})
	waitFor(t, "the new records deleted once sealed", func() bool { return k.logStart(t, topic)[0] == 3 })
	if got := rr.r.SealedOffsets(topic); !maps.Equal(got, map[int]int64{0: 3}) {
		t.Errorf("SealedOffsets(%s) = %v, want [0:3]", topic, got)
	}
	if got := len(v.applied(other)); got != 3 {
		t.Errorf("%s: %d records applied, want 3 (untouched)", other, got)
	}
}
