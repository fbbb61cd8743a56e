package kafka

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestAdmin(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()

	for _, tc := range []struct {
		topic      string
		partitions int
	}{
		{"tenant.b.events", 3},
		{"tenant.a.events", 0}, // broker default
		{"tenant.a.events", 5}, // exists: nil, unchanged
	} {
		if err := a.CreateTopic(ctx, tc.topic, tc.partitions); err != nil {
			t.Fatalf("CreateTopic(%q, %d) = %v, want nil", tc.topic, tc.partitions, err)
		}
	}
	got, err := a.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if want := []string{"tenant.a.events", "tenant.b.events"}; !slices.Equal(got, want) {
		t.Fatalf("ListTopics = %q, want %q", got, want)
	}
	if n := partitionsOf(t, e.Addr(), "tenant.a.events"); n != 1 {
		t.Errorf("tenant.a.events has %d partitions, want the default 1", n)
	}
	if n := partitionsOf(t, e.Addr(), "tenant.b.events"); n != 3 {
		t.Errorf("tenant.b.events has %d partitions, want 3", n)
	}

	if err := a.DeleteTopic(ctx, "tenant.b.events"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	if err := a.DeleteTopic(ctx, "tenant.b.events"); !errors.Is(err, ErrTopicNotFound) {
		t.Fatalf("DeleteTopic(deleted) = %v, want ErrTopicNotFound", err)
	}
	got, err = a.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if want := []string{"tenant.a.events"}; !slices.Equal(got, want) {
		t.Fatalf("ListTopics after delete = %q, want %q", got, want)
	}
	if err := a.CreateTopic(ctx, "bad topic!", 1); err == nil {
		t.Errorf("CreateTopic(invalid name) = nil, want an error")
	}
}

// partitionsOf returns the number of partitions of topic.
func partitionsOf(t *testing.T, addr, topic string) int {
	t.Helper()
	a := MustNewAdmin(t, addr)
	td, err := a.adm.ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatalf("ListTopics(%s): %v", topic, err)
	}
	return len(td[topic].Partitions)
}

// TestDeleteRecords: records below the offset are gone for a new consumer;
// deleting is idempotent; an offset past the end, a negative one and a
// missing topic are errors.
func TestDeleteRecords(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()
	const topic = "tenant.del.events"
	if err := a.CreateTopic(ctx, topic, 2); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	pub := MustNewPublisher(t, e.Addr())
	for i := 0; i < 10; i++ { // one batch each: deletion is exact
		mustPublish(t, pub, topic, i, 1)
	}
	counts := map[int]int64{0: endOffset(t, a, topic, 0), 1: endOffset(t, a, topic, 1)}
	if counts[0] < 3 {
		t.Fatalf("partition 0 holds %d records, want at least 3 (keys spread over 5 streams)", counts[0])
	}

	if err := a.DeleteRecords(ctx, topic, map[int]int64{0: 2}); err != nil {
		t.Fatalf("DeleteRecords(%s, {0: 2}) = %v, want nil", topic, err)
	}
	if got := startOffset(t, a, topic, 0); got != 2 {
		t.Errorf("log start offset of partition 0 = %d, want 2", got)
	}
	if got := startOffset(t, a, topic, 1); got != 0 {
		t.Errorf("log start offset of partition 1 = %d, want 0 (not named)", got)
	}
	// A new consumer starts at the log start offset.
	sub := MustNewSubscriber(t, e.Addr(), "fresh", nil)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	seen := map[string]int64{} // partition → lowest offset delivered
	for i := int64(0); i < counts[0]-2+counts[1]; i++ {
		m := recv(t, ch, recvTimeout)
		p := m.Metadata.Get(MetadataPartition)
		if o, ok := seen[p]; !ok || offsetOf(t, m) < o {
			seen[p] = offsetOf(t, m)
		}
		m.Ack()
	}
	if seen["0"] != 2 || seen["1"] != 0 {
		t.Errorf("a new consumer read partitions from %v, want 0 from 2 and 1 from 0", seen)
	}

	for _, tc := range []struct {
		name   string
		before map[int]int64
		want   error // nil: no error
	}{
		{"again", map[int]int64{0: 2}, nil},
		{"below the log start", map[int]int64{0: 1}, nil},
		{"nothing", nil, nil},
		{"up to the end", map[int]int64{0: counts[0], 1: 1}, nil},
		{"past the end", map[int]int64{1: counts[1] + 5}, kerr.OffsetOutOfRange},
		{"negative", map[int]int64{1: -1}, kerr.OffsetOutOfRange},
	} {
		err := a.DeleteRecords(ctx, topic, tc.before)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: DeleteRecords(%s, %v) = %v, want %v", tc.name, topic, tc.before, err, tc.want)
		}
	}
	if got := startOffset(t, a, topic, 0); got != counts[0] {
		t.Errorf("log start offset of partition 0 = %d, want %d (all deleted)", got, counts[0])
	}
	if got := startOffset(t, a, topic, 1); got != 1 {
		t.Errorf("log start offset of partition 1 = %d, want 1 (past the end and negative delete nothing)", got)
	}
	if err := a.DeleteRecords(ctx, "tenant.missing.events", map[int]int64{0: 1}); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("DeleteRecords(missing topic) = %v, want ErrTopicNotFound", err)
	}
	if offs, err := a.LogStartOffsets(ctx, "tenant.missing.events"); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("LogStartOffsets(missing topic) = %v, %v, want ErrTopicNotFound", offs, err)
	}
}

// TestDeleteRecordsLeavesDisk: on the embedded broker with a DataDir, the
// bytes of deleted records are in no file under the DataDir once
// DeleteRecords returns, and stay gone across a restart, while the records
// after them are kept. With large segments (kfake's default) they are
// not: DeleteRecords only moves the log start offset, and a segment file is
// removed only when all of its records are deleted. That is why
// EmbeddedConfig.SegmentBytes defaults to 1.
func TestDeleteRecordsLeavesDisk(t *testing.T) {
	t.Parallel()
	const topic, marker = "tenant.shred.events", "MARKER-5b1e0c9d-plaintext"
	for _, tc := range []struct {
		name        string
		segment     int64
		wantOnDisk  bool
		wantRestart bool
	}{
		{name: "default segments", segment: 0},
		{name: "100MiB segments", segment: 100 << 20, wantOnDisk: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, SegmentBytes: tc.segment, Logger: testLogger()}
			e, err := StartEmbedded(cfg)
			if err != nil {
				t.Fatalf("StartEmbedded: %v", err)
			}
			defer e.Close()
			a := MustNewAdmin(t, e.Addr())
			ctx := context.Background()
			if err := a.CreateTopic(ctx, topic, 1); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			pub := MustNewPublisher(t, e.Addr())
			m := message.NewMessage("marker", []byte(marker))
			m.Metadata.Set(MetadataKey, "stream-0")
			if err := pub.Publish(topic, m); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			mustPublish(t, pub, topic, 1, 4) // kept: offsets 1..4
			if got := filesHolding(t, dir, marker); len(got) == 0 {
				t.Fatalf("marker in no file of the DataDir before the delete")
			}
			if err := a.DeleteRecords(ctx, topic, map[int]int64{0: 1}); err != nil {
				t.Fatalf("DeleteRecords: %v", err)
			}
			got := filesHolding(t, dir, marker)
			if (len(got) > 0) != tc.wantOnDisk {
				t.Fatalf("after DeleteRecords the marker is in %q, want it on disk: %v", got, tc.wantOnDisk)
			}
			if tc.wantOnDisk {
				return
			}
			want := []string{"1:1", "2:2", "3:3", "4:4"}
			if got := readPayloads(t, e.Addr(), topic); !slices.Equal(got, want) {
				t.Errorf("after DeleteRecords the topic reads %v, want %v", got, want)
			}
			_ = e.Close()
			if got := filesHolding(t, dir, marker); len(got) > 0 {
				t.Fatalf("after Close the marker is in %q", got)
			}
			e2, err := StartEmbedded(cfg)
			if err != nil {
				t.Fatalf("StartEmbedded again: %v", err)
			}
			defer e2.Close()
			if got := readPayloads(t, e2.Addr(), topic); !slices.Equal(got, want) {
				t.Errorf("after a restart the topic reads %v, want %v", got, want)
			}
		})
	}
}

// TestDeleteGroup: a group's committed offsets go with it; deleting a
// missing group is not an error, deleting one with a member is.
func TestDeleteGroup(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()
	const topic = "tenant.grp.events"
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, 3)
	if err := a.DeleteGroup(ctx, "vault."+topic); err != nil {
		t.Fatalf("DeleteGroup(never existed) = %v, want nil", err)
	}
	sub := MustNewSubscriber(t, e.Addr(), "vault", nil)
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := 0; i < 3; i++ {
		recv(t, ch, recvTimeout).Ack()
	}
	waitCommitted(t, e.Addr(), "vault."+topic, topic, 3)
	if err := a.DeleteGroup(ctx, "vault."+topic); !errors.Is(err, kerr.NonEmptyGroup) {
		t.Errorf("DeleteGroup(with a member) = %v, want NonEmptyGroup", err)
	}
	if err := sub.Unsubscribe(topic); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := a.DeleteGroup(ctx, "vault."+topic); err != nil {
		t.Fatalf("DeleteGroup = %v, want nil", err)
	}
	if offs, err := a.adm.FetchOffsets(ctx, "vault."+topic); !errors.Is(err, kerr.GroupIDNotFound) && len(offs) > 0 {
		t.Errorf("FetchOffsets after DeleteGroup = %v, %v, want no group", offs, err)
	}
	if err := a.DeleteGroup(ctx, "vault."+topic); err != nil {
		t.Errorf("DeleteGroup(deleted) = %v, want nil", err)
	}
}

// endOffset returns the end offset (high watermark) of topic's partition.
func endOffset(tb testing.TB, a *Admin, topic string, partition int) int64 {
	tb.Helper()
	offs, err := a.adm.ListEndOffsets(context.Background(), topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		tb.Fatalf("ListEndOffsets(%s): %v", topic, err)
	}
	o, _ := offs.Lookup(topic, int32(partition))
	return o.Offset
}

func TestCreateTopicCollision(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()
	if err := a.CreateTopic(ctx, "tenant_echo_events", 1); err != nil {
		t.Fatalf("CreateTopic(tenant_echo_events) = %v, want nil", err)
	}
	for _, topic := range []string{"tenant.echo.events", "tenant.echo_events", "tenant_echo.events"} {
		if err := a.CreateTopic(ctx, topic, 1); !errors.Is(err, ErrTopicCollision) {
			t.Errorf("CreateTopic(%q) = %v, want ErrTopicCollision", topic, err)
		}
	}
	// The same name again is not a collision; other names are not either.
	for _, topic := range []string{"tenant_echo_events", "tenant.echo2.events"} {
		if err := a.CreateTopic(ctx, topic, 1); err != nil {
			t.Errorf("CreateTopic(%q) = %v, want nil", topic, err)
		}
	}
	got, err := a.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	if want := []string{"tenant.echo2.events", "tenant_echo_events"}; !slices.Equal(got, want) {
		t.Fatalf("ListTopics = %q, want %q", got, want)
	}
}

func TestCollidingTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		names []string
		want  string
	}{
		{"tenant.a.events", nil, ""},
		{"tenant.a.events", []string{"tenant.a.events"}, ""},
		{"tenant.a.events", []string{"tenant.b.events", "tenant_a_events"}, "tenant_a_events"},
		{"tenant.a.events", []string{"tenant.a-events"}, ""},
		{"a_b", []string{"a.b"}, "a.b"},
	} {
		got, ok := collidingTopic(tc.topic, tc.names)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("collidingTopic(%q, %q) = %q, %v, want %q", tc.topic, tc.names, got, ok, tc.want)
		}
	}
}

func TestCollisionCandidates(t *testing.T) {
	for _, tc := range []struct {
		topic string
		want  []string
	}{
		{"abc", []string{}},
		{"a.b", []string{"a_b"}},
		{"tenant.acme.events", []string{"tenant_acme.events", "tenant.acme_events", "tenant_acme_events"}},
		{"a.b.c.d.e.f.g.h.i.j", nil}, // 9 separators: every topic is listed
	} {
		got := collisionCandidates(tc.topic)
		slices.Sort(got)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(got, want) || (got == nil) != (tc.want == nil) {
			t.Errorf("collisionCandidates(%q) = %q, want %q", tc.topic, got, tc.want)
		}
	}
}
