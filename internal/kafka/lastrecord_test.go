package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// LastRecord finds the newest record of its key however many records of
// other keys (other vaults' checkpoints) follow it, and nil when the key
// has none.
func TestLastRecordOfKey(t *testing.T) {
	e := MustStartEmbedded(t)
	brokers := []string{e.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm, err := NewAdmin(brokers, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	const topic = "vault.checkpoints"
	if err := adm.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := LastRecord(ctx, brokers, Auth{}, topic, []byte("a")); err != nil {
		t.Fatalf("LastRecord of an empty topic: %v", err)
	}
	p := MustNewPublisher(t, e.Addr())
	// a-1, then b-1 ... b-9 (more than the first windows of 1, 2 and 4), then c-1.
	seq := []struct{ key, value string }{{"a", "a-1"}}
	for i := 1; i <= 9; i++ {
		seq = append(seq, struct{ key, value string }{"b", "b-" + string(rune('0'+i))})
	}
	seq = append(seq, struct{ key, value string }{"c", "c-1"})
	for _, r := range seq {
		m := message.NewMessage(watermill.NewUUID(), []byte(r.value))
		m.Metadata.Set(MetadataKey, r.key)
		if err := p.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ key, want string }{{"a", "a-1"}, {"b", "b-9"}, {"c", "c-1"}, {"d", ""}} {
		got, err := LastRecord(ctx, brokers, Auth{}, topic, []byte(tt.key))
		if err != nil || string(got) != tt.want {
			t.Errorf("LastRecord(key %q) = %q, %v, want %q", tt.key, got, err, tt.want)
		}
	}
	if _, err := LastRecord(ctx, brokers, Auth{}, "no.such.topic", []byte("a")); !errors.Is(err, ErrTopicNotFound) {
		t.Errorf("LastRecord of a missing topic: %v, want ErrTopicNotFound", err)
	}
}
