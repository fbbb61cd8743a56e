package kafka

import (
	"context"
	"errors"
	"slices"
	"testing"
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
