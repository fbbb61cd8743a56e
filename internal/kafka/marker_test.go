package kafka

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsumerMarkers: the Consumer hands out a log-end marker flagged
// (Record.Marker), and a marker that is its partition's last record is kept
// when the records before it are deleted: retention that catches up with
// the marker appends no other.
func TestConsumerMarkers(t *testing.T) {
	t.Parallel()
	const topic = "tenant.marked.events"
	e := MustStartEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := mustNewMarkingAdmin(t, e.Addr())
	if err := adm.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, 3)
	c, err := NewConsumer(ConsumerConfig{Brokers: []string{e.Addr()}, Group: "vault", Topics: `tenant\..*\.events`,
		FetchMaxWait: 50 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// poll returns the next n records of topic, committing them.
	poll := func(n int) []Record {
		t.Helper()
		var got []Record
		for len(got) < n {
			bs, err := c.Poll(ctx)
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			ps := Positions{}
			for _, b := range bs {
				got = append(got, b.Records...)
				ps.Set(b.Topic, b.Partition, b.Next())
			}
			if err := c.Commit(ctx, ps); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			c.AllowRebalance()
		}
		return got
	}
	for _, r := range poll(3) {
		if r.Marker {
			t.Errorf("record %d flagged as a marker", r.Offset)
		}
	}
	if err := adm.DeleteRecords(ctx, topic, map[int]int64{0: 3}); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if got := [2]int64{startOffset(t, adm, topic, 0), endOffset(t, adm, topic, 0)}; got != [2]int64{3, 4} {
		t.Fatalf("after deleting every record: log start and end offsets %v, want [3 4] (a marker at 3)", got)
	}
	if got := poll(1); len(got) != 1 || !got[0].Marker || got[0].Offset != 3 {
		t.Fatalf("polled %+v, want the marker at 3, flagged", got)
	}
	if got := committed(t, e.Addr(), "vault", topic); got != 4 {
		t.Errorf("committed offset %d, want 4 (past the marker)", got)
	}
	// Retention catches up with the marker: it stays, alone.
	if err := adm.DeleteRecords(ctx, topic, map[int]int64{0: 4}); err != nil {
		t.Fatalf("DeleteRecords: %v", err)
	}
	if got := [2]int64{startOffset(t, adm, topic, 0), endOffset(t, adm, topic, 0)}; got != [2]int64{3, 4} {
		t.Errorf("after deleting up to the marker's end: log start and end offsets %v, want [3 4]", got)
	}
}

// TestIsMarker: only a record without key and value whose one header is
// MarkerHeader, without value, is a marker.
func TestIsMarker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    kgo.Record
		want bool
	}{
		{"marker", kgo.Record{Headers: []kgo.RecordHeader{{Key: MarkerHeader}}}, true},
		{"no header", kgo.Record{}, false},
		{"a value", kgo.Record{Value: []byte("x"), Headers: []kgo.RecordHeader{{Key: MarkerHeader}}}, false},
		{"a key", kgo.Record{Key: []byte("k"), Headers: []kgo.RecordHeader{{Key: MarkerHeader}}}, false},
		{"a header value", kgo.Record{Headers: []kgo.RecordHeader{{Key: MarkerHeader, Value: []byte("1")}}}, false},
		{"another header too", kgo.Record{Headers: []kgo.RecordHeader{{Key: MarkerHeader}, {Key: "ce_type"}}}, false},
		{"another header", kgo.Record{Headers: []kgo.RecordHeader{{Key: "ce_type"}}}, false},
	} {
		if got := isMarker(&tc.r); got != tc.want {
			t.Errorf("isMarker(%s) = %v, want %v", tc.name, got, tc.want)
		}
		m := kafkago.Message{Key: tc.r.Key, Value: tc.r.Value}
		for _, h := range tc.r.Headers {
			m.Headers = append(m.Headers, kafkago.Header{Key: h.Key, Value: h.Value})
		}
		if got := isMarkerMessage(&m); got != tc.want {
			t.Errorf("isMarkerMessage(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
