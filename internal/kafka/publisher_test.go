package kafka

import (
	"context"
	"slices"
	"strconv"
	"testing"
)

// TestPublishToDeletedTopic: a topic deleted after a Publisher wrote to it
// is created again by the next Publish, whether from that Publisher or a
// new one (kafka-go's shared metadata cache used to keep the deleted topic
// and fail the write).
func TestPublishToDeletedTopic(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	ctx := context.Background()
	const topic = "tenant.gone.events"
	pub := MustNewPublisher(t, e.Addr())
	mustPublish(t, pub, topic, 0, 3)
	for _, tc := range []struct {
		name string
		pub  *Publisher
		from int
	}{
		{"new publisher", MustNewPublisher(t, e.Addr()), 10},
		{"same publisher", pub, 20},
	} {
		if err := a.DeleteTopic(ctx, topic); err != nil {
			t.Fatalf("DeleteTopic: %v", err)
		}
		mustPublish(t, tc.pub, topic, tc.from, 1)
		if got, want := readPayloads(t, e.Addr(), topic), []string{"0:" + strconv.Itoa(tc.from)}; !slices.Equal(got, want) {
			t.Errorf("%s: topic created again reads %v, want %v", tc.name, got, want)
		}
	}
}
