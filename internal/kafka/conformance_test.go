package kafka

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// conformanceFeatures describes the adapter honestly to watermill's suite.
//
// NewSubscriberReceivesOldMessages is false: every subscriber built for one
// topic joins the same consumer group, which shares its committed offsets,
// so a new member does not re-read what the group consumed (a new group
// would). RestartServiceCommand is empty: TestReconnect is skipped (the
// broker-restart cases are TestEmbeddedPersistence).
var conformanceFeatures = tests.Features{
	ConsumerGroups:                   true,
	ExactlyOnceDelivery:              false,
	GuaranteedOrder:                  true,
	Persistent:                       true,
	NewSubscriberReceivesOldMessages: false,
}

func conformanceConstructors(t *testing.T, addr string, maxInFlight int) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	cg := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := NewPublisher(PublisherConfig{Brokers: []string{addr}, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := NewSubscriber(SubscriberConfig{
			Brokers:         []string{addr},
			ConsumerGroup:   group,
			MaxInFlight:     maxInFlight,
			NackResendSleep: 10 * time.Millisecond,
			MaxWait:         100 * time.Millisecond,
			Logger:          testLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return pub, sub
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) { return cg(t, "conformance") }, cg
}

// TestConformance runs watermill's Pub/Sub suite against the embedded broker.
//
// "classic" runs the whole suite with MaxInFlight 1, watermill's
// one-message-at-a-time contract. "windowed" runs it with the default
// MaxInFlight minus TestNoAck, which asserts that no second message arrives
// before the first is acked: the opposite of what the window is for.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite is long")
	}
	e := MustStartEmbedded(t)

	t.Run("classic", func(t *testing.T) {
		pubSub, cgPubSub := conformanceConstructors(t, e.Addr(), 1)
		tests.TestPubSub(t, conformanceFeatures, pubSub, cgPubSub)
	})

	t.Run("windowed", func(t *testing.T) {
		pubSub, cgPubSub := conformanceConstructors(t, e.Addr(), 0)
		for _, tc := range []struct {
			name string
			fn   func(*testing.T, tests.TestContext, tests.PubSubConstructor)
		}{
			{"TestPublishSubscribe", tests.TestPublishSubscribe},
			{"TestConcurrentSubscribe", tests.TestConcurrentSubscribe},
			{"TestConcurrentSubscribeMultipleTopics", tests.TestConcurrentSubscribeMultipleTopics},
			{"TestResendOnError", tests.TestResendOnError},
			{"TestContinueAfterSubscribeClose", tests.TestContinueAfterSubscribeClose},
			{"TestConcurrentClose", tests.TestConcurrentClose},
			{"TestContinueAfterErrors", tests.TestContinueAfterErrors},
			{"TestPublishSubscribeInOrder", tests.TestPublishSubscribeInOrder},
			{"TestPublisherClose", tests.TestPublisherClose},
			{"TestTopic", tests.TestTopic},
			{"TestMessageCtx", tests.TestMessageCtx},
			{"TestSubscribeCtx", tests.TestSubscribeCtx},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, tests.TestContext{TestID: tests.NewTestID(), Features: conformanceFeatures}, pubSub)
			})
		}
		t.Run("TestConsumerGroups", func(t *testing.T) {
			t.Parallel()
			tests.TestConsumerGroups(t, tests.TestContext{TestID: tests.NewTestID(), Features: conformanceFeatures}, cgPubSub)
		})
	})
}
