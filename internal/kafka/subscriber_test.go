package kafka

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
)

const recvTimeout = 15 * time.Second

// TestPublishConsumeResume: N published are consumed in order with their
// metadata; acks commit; a new subscriber in the group after Close resumes
// right after the last acked offset.
func TestPublishConsumeResume(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic, group, n, acked = "tenant.acme.events", "vault", 500, 300
	if err := MustNewAdmin(t, e.Addr()).CreateTopic(context.Background(), topic, 1); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, n)

	sub := MustNewSubscriber(t, e.Addr(), group, nil)
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := 0; i < n; i++ {
		m := recv(t, ch, recvTimeout)
		if got, want := string(m.Payload), strconv.Itoa(i); got != want {
			t.Fatalf("message %d: payload %q, want %q", i, got, want)
		}
		if got := offsetOf(t, m); got != int64(i) {
			t.Fatalf("message %d: offset %d, want %d", i, got, i)
		}
		if i == 0 {
			for k, want := range map[string]string{
				MetadataTopic: topic, MetadataPartition: "0", MetadataKey: "stream-0", "ce_type": "test.event",
			} {
				if got := m.Metadata.Get(k); got != want {
					t.Errorf("metadata %s = %q, want %q", k, got, want)
				}
			}
			if m.UUID != "uuid-0" {
				t.Errorf("UUID = %q, want %q", m.UUID, "uuid-0")
			}
		}
		if i < acked {
			m.Ack()
		}
	}
	waitCommitted(t, e.Addr(), group+"."+topic, topic, acked)
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, ok := <-ch; ok {
		t.Fatalf("channel still open after Close")
	}

	sub2 := MustNewSubscriber(t, e.Addr(), group, nil)
	ch2, err := sub2.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	for i := acked; i < n; i++ {
		m := recv(t, ch2, recvTimeout)
		if got := offsetOf(t, m); got != int64(i) {
			t.Fatalf("after resume: offset %d, want %d", got, i)
		}
		m.Ack()
	}
	waitCommitted(t, e.Addr(), group+"."+topic, topic, n)
}

// TestNackRedelivers: a Nack rewinds to the nacked (first un-acked) offset;
// acks of messages handed out before the Nack are ignored.
func TestNackRedelivers(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic, group, n = "tenant.nack.events", "vault", 20
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, n)

	sub := MustNewSubscriber(t, e.Addr(), group, nil)
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	var first []*message.Message
	for i := 0; i < 5; i++ {
		first = append(first, recv(t, ch, recvTimeout))
	}
	first[0].Ack()
	first[1].Ack()
	first[2].Nack()
	first[3].Ack() // handed out before the nack: ignored, redelivered
	first[4].Ack()

	// Messages already on their way before the nack took effect may still
	// arrive; then the partition starts over at offset 2, in order.
	var m *message.Message
	for {
		m = recv(t, ch, recvTimeout)
		if o := offsetOf(t, m); o == 2 {
			break
		} else if o < 5 {
			t.Fatalf("got offset %d before the redelivery from 2", o)
		}
	}
	for want := int64(2); ; want++ {
		if got := offsetOf(t, m); got != want {
			t.Fatalf("redelivery: offset %d, want %d", got, want)
		}
		m.Ack()
		if want == n-1 {
			break
		}
		m = recv(t, ch, recvTimeout)
	}
	waitCommitted(t, e.Addr(), group+"."+topic, topic, n)
}

// TestOutOfOrderAcksCommitPrefix: only the contiguously acked prefix of a
// partition is committed.
func TestOutOfOrderAcksCommitPrefix(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic, group, n = "tenant.ooo.events", "vault", 10
	g := group + "." + topic
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, n)

	sub := MustNewSubscriber(t, e.Addr(), group, nil)
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = recv(t, ch, recvTimeout)
	}
	for _, i := range []int{7, 6, 5, 2, 1, 0} {
		msgs[i].Ack()
	}
	waitCommitted(t, e.Addr(), g, topic, 3)
	// Unsubscribe commits the acked offsets once more, after every ack
	// above: the gap at 3 and 4 still holds the commit at 3.
	if err := sub.Unsubscribe(topic); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if got := committed(t, e.Addr(), g, topic); got != 3 {
		t.Fatalf("committed %d with 3 and 4 un-acked, want 3", got)
	}

	// The group resumes at 3; the redelivered 5..7 are acked before 4.
	ch, err = sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	for i := 3; i < n; i++ {
		msgs[i] = recv(t, ch, recvTimeout)
		if want := fmt.Sprint(i); string(msgs[i].Payload) != want {
			t.Fatalf("after the commit at 3: message %q, want %q", msgs[i].Payload, want)
		}
	}
	msgs[3].Ack()
	waitCommitted(t, e.Addr(), g, topic, 4)
	for _, i := range []int{7, 6, 5} {
		msgs[i].Ack()
	}
	msgs[4].Ack()
	waitCommitted(t, e.Addr(), g, topic, 8)
	msgs[9].Ack()
	msgs[8].Ack()
	waitCommitted(t, e.Addr(), g, topic, 10)
}

// TestManyInFlight: messages are handed out without waiting for acks, up to
// MaxInFlight.
func TestManyInFlight(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	pub := MustNewPublisher(t, e.Addr())

	t.Run("default", func(t *testing.T) {
		const topic = "tenant.window.events"
		mustPublish(t, pub, topic, 0, 300)
		sub := MustNewSubscriber(t, e.Addr(), "vault", nil)
		ch, err := sub.Subscribe(context.Background(), topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		var held []*message.Message
		for i := 0; i <= 100; i++ {
			held = append(held, recv(t, ch, recvTimeout))
		}
		if got := offsetOf(t, held[100]); got != 100 {
			t.Fatalf("101st message has offset %d, want 100", got)
		}
		if got := committed(t, e.Addr(), "vault."+topic, topic); got != -1 {
			t.Fatalf("committed %d before any ack, want none", got)
		}
		for _, m := range held {
			m.Ack()
		}
		waitCommitted(t, e.Addr(), "vault."+topic, topic, 101)
	})

	t.Run("bounded", func(t *testing.T) {
		const topic, window = "tenant.bounded.events", 50
		mustPublish(t, pub, topic, 0, 100)
		sub := MustNewSubscriber(t, e.Addr(), "vault", func(c *SubscriberConfig) { c.MaxInFlight = window })
		ch, err := sub.Subscribe(context.Background(), topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		var held []*message.Message
		for i := 0; i < window; i++ {
			held = append(held, recv(t, ch, recvTimeout))
		}
		select {
		case m := <-ch:
			t.Fatalf("got offset %d with %d un-acked, want none", offsetOf(t, m), window)
		case <-time.After(300 * time.Millisecond):
		}
		held[1].Ack() // out of order: the window still starts at 0
		select {
		case m := <-ch:
			t.Fatalf("got offset %d with message 0 un-acked, want none", offsetOf(t, m))
		case <-time.After(200 * time.Millisecond):
		}
		held[0].Ack()
		for i := 0; i < 2; i++ {
			if got := offsetOf(t, recv(t, ch, recvTimeout)); got != int64(window+i) {
				t.Fatalf("after acks: offset %d, want %d", got, window+i)
			}
		}
	})
}

// TestUnsubscribeAndContext: the channel closes on Unsubscribe and when the
// Subscribe context is done; messages' contexts end with them.
func TestUnsubscribeAndContext(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	pub := MustNewPublisher(t, e.Addr())
	mustPublish(t, pub, "tenant.a.events", 0, 3)
	mustPublish(t, pub, "tenant.b.events", 0, 3)
	sub := MustNewSubscriber(t, e.Addr(), "vault", nil)

	chA, err := sub.Subscribe(context.Background(), "tenant.a.events")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	chB, err := sub.Subscribe(ctx, "tenant.b.events")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	a := recv(t, chA, recvTimeout)
	b := recv(t, chB, recvTimeout)

	if err := sub.Unsubscribe("tenant.a.events"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	drainClosed(t, chA)
	select {
	case <-a.Context().Done():
	default:
		t.Errorf("message context alive after Unsubscribe")
	}
	a.Ack() // late ack: ignored, no panic

	cancel()
	drainClosed(t, chB)
	select {
	case <-b.Context().Done():
	default:
		t.Errorf("message context alive after the subscription's context ended")
	}
	if err := sub.Unsubscribe("tenant.nothing.events"); err != nil {
		t.Errorf("Unsubscribe(unknown) = %v, want nil", err)
	}
}

// drainClosed reads ch until it is closed, failing if that takes too long.
func drainClosed(t *testing.T, ch <-chan *message.Message) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("channel not closed")
		}
	}
}

// TestRebalanceNoDoubleAck: two members share a 4-partition topic; when one
// leaves, the other takes over from the committed offsets, and late acks
// for the departed member's messages are harmless.
func TestRebalanceNoDoubleAck(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic, n = "tenant.shared.events", 400
	if err := MustNewAdmin(t, e.Addr()).CreateTopic(context.Background(), topic, 4); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, n)

	s1 := MustNewSubscriber(t, e.Addr(), "vault", nil)
	s2 := MustNewSubscriber(t, e.Addr(), "vault", nil)
	ch1, err := s1.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	ch2, err := s2.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	seen := map[string]bool{}
	var late []*message.Message
	deadline := time.After(60 * time.Second)
	for len(seen) < n/2 {
		select {
		case m := <-ch1:
			seen[m.UUID] = true
			if len(late) < 10 {
				late = append(late, m) // held, not acked
			} else {
				m.Ack()
			}
		case m := <-ch2:
			seen[m.UUID] = true
			m.Ack()
		case <-deadline:
			t.Fatalf("received %d of %d before rebalance", len(seen), n/2)
		}
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, m := range late {
		m.Ack() // after the member left: must be ignored
	}
	for len(seen) < n {
		select {
		case m, ok := <-ch2:
			if !ok {
				t.Fatalf("channel closed")
			}
			seen[m.UUID] = true
			m.Ack()
		case <-deadline:
			t.Fatalf("received %d of %d", len(seen), n)
		}
	}
}

// TestNoGoroutineLeak: Close stops every goroutine the Subscriber and
// Publisher started.
func TestNoGoroutineLeak(t *testing.T) {
	e := MustStartEmbedded(t)
	mustPublish(t, MustNewPublisher(t, e.Addr()), "tenant.leak.events", 0, 10)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()

	for round := 0; round < 3; round++ {
		pub, err := NewPublisher(PublisherConfig{Brokers: []string{e.Addr()}, Logger: testLogger()})
		if err != nil {
			t.Fatalf("NewPublisher: %v", err)
		}
		topic := fmt.Sprintf("tenant.leak%d.events", round)
		if err := pub.Publish(topic, testMessages(0, 10)...); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		sub, err := NewSubscriber(SubscriberConfig{Brokers: []string{e.Addr()}, ConsumerGroup: "leak", MaxWait: 100 * time.Millisecond, Logger: testLogger()})
		if err != nil {
			t.Fatalf("NewSubscriber: %v", err)
		}
		for _, tp := range []string{topic, "tenant.leak.events"} {
			ch, err := sub.Subscribe(context.Background(), tp)
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			recv(t, ch, recvTimeout).Ack()
			recv(t, ch, recvTimeout) // held
		}
		if err := sub.SubscribeInitialize("tenant.leak-init.events"); err != nil {
			t.Fatalf("SubscribeInitialize: %v", err)
		}
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := pub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}

	// Connections the broker serves end when their clients close; give
	// both sides a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after Close\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConcurrentCloseNoStall: members of one group closed together during a
// rebalance leave promptly, so neither their Close nor the next member waits
// out the rebalance or session timeout (kafka-go alone leaves a member that
// failed SyncGroup in the group until its session expires).
func TestConcurrentCloseNoStall(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic = "tenant.closing.events"
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, 10)
	slow := func(c *SubscriberConfig) {
		c.SessionTimeout = 30 * time.Second
		c.RebalanceTimeout = 30 * time.Second
	}
	start := time.Now()
	errs := make(chan error)
	for i := 0; i < 10; i++ {
		go func() {
			s, err := NewSubscriber(SubscriberConfig{Brokers: []string{e.Addr()}, ConsumerGroup: "vault", MaxWait: 100 * time.Millisecond, Logger: testLogger()})
			if err == nil {
				slow(&s.cfg)
				_, err = s.Subscribe(context.Background(), topic)
				if cerr := s.Close(); err == nil {
					err = cerr
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < 10; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("subscribe and close: %v", err)
		}
	}
	s := MustNewSubscriber(t, e.Addr(), "vault", slow)
	ch, err := s.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	recv(t, ch, 60*time.Second)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("10 concurrent closes and a new member's first message took %s, want well under the 30s rebalance timeout", d)
	}
}

// TestNackOneInFlight: with MaxInFlight 1 nothing but the nacked message
// comes next.
func TestNackOneInFlight(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	const topic = "tenant.nack1.events"
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 0, 5)
	sub := MustNewSubscriber(t, e.Addr(), "vault", func(c *SubscriberConfig) { c.MaxInFlight = 1 })
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	recv(t, ch, recvTimeout).Ack()
	for i := 0; i < 20; i++ {
		m := recv(t, ch, recvTimeout)
		if got := offsetOf(t, m); got != 1 {
			t.Fatalf("nack %d: got offset %d, want 1 again", i, got)
		}
		m.Nack()
	}
	for want := int64(1); want < 5; want++ {
		m := recv(t, ch, recvTimeout)
		if got := offsetOf(t, m); got != want {
			t.Fatalf("after nacks: offset %d, want %d", got, want)
		}
		m.Ack()
	}
}

// TestOutOfRangeResumesAtEarliest: a partition whose position is out of
// range does not stall: it resumes at the partition's earliest offset, says
// so at Info, and commits from there. Its committed offset may be below the
// log start (records deleted after the last commit), past the end (the
// group's offset outlived the topic's records), or the topic may be deleted
// and created again under a live subscription.
func TestOutOfRangeResumesAtEarliest(t *testing.T) {
	t.Parallel()
	e := MustStartEmbedded(t)
	a := MustNewAdmin(t, e.Addr())
	pub := MustNewPublisher(t, e.Addr())
	ctx := context.Background()

	// consume reads n messages of topic in group and checks their offsets
	// start at from; then it waits for the commit of from+n.
	consume := func(t *testing.T, sub *Subscriber, ch <-chan *message.Message, group, topic string, from, n int64) {
		t.Helper()
		for i := from; i < from+n; i++ {
			m := recv(t, ch, recvTimeout)
			if got := offsetOf(t, m); got != i {
				t.Fatalf("offset %d, want %d", got, i)
			}
			m.Ack()
		}
		waitCommitted(t, e.Addr(), group, topic, from+n)
	}

	t.Run("below the log start", func(t *testing.T) {
		t.Parallel()
		const topic = "tenant.below.events"
		for i := 0; i < 10; i++ {
			mustPublish(t, pub, topic, i, 1)
		}
		sub := MustNewSubscriber(t, e.Addr(), "vault", nil)
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		consume(t, sub, ch, "vault."+topic, topic, 0, 3)
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := a.DeleteRecords(ctx, topic, map[int]int64{0: 6}); err != nil {
			t.Fatalf("DeleteRecords: %v", err)
		}
		var logs logBuffer
		sub2 := MustNewSubscriber(t, e.Addr(), "vault", func(c *SubscriberConfig) { c.Logger = logs.logger() })
		ch2, err := sub2.Subscribe(ctx, topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		consume(t, sub2, ch2, "vault."+topic, topic, 6, 4)
		if l := logs.String(); !strings.Contains(l, "level=INFO") || !strings.Contains(l, "read position out of range") || !strings.Contains(l, "offset=3 earliest=6") {
			t.Errorf("log = %q, want an Info line on the move from 3 to 6", l)
		}
	})

	t.Run("past the end", func(t *testing.T) {
		t.Parallel()
		const topic, group = "tenant.past.events", "vault.tenant.past.events"
		mustPublish(t, pub, topic, 0, 5)
		offs := make(kadm.Offsets)
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 50, LeaderEpoch: -1})
		if _, err := a.adm.CommitOffsets(ctx, group, offs); err != nil {
			t.Fatalf("CommitOffsets: %v", err)
		}
		var logs logBuffer
		sub := MustNewSubscriber(t, e.Addr(), "vault", func(c *SubscriberConfig) { c.Logger = logs.logger() })
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		consume(t, sub, ch, group, topic, 0, 5)
		if l := logs.String(); !strings.Contains(l, "read position out of range") || !strings.Contains(l, "offset=50 earliest=0") {
			t.Errorf("log = %q, want an Info line on the move from 50 to 0", l)
		}
	})

	t.Run("topic created again", func(t *testing.T) {
		t.Parallel()
		const topic, group = "tenant.again.events", "vault.tenant.again.events"
		if err := a.CreateTopic(ctx, topic, 1); err != nil {
			t.Fatalf("CreateTopic: %v", err)
		}
		mustPublish(t, pub, topic, 0, 10)
		var logs logBuffer
		sub := MustNewSubscriber(t, e.Addr(), "vault", func(c *SubscriberConfig) { c.Logger = logs.logger() })
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		consume(t, sub, ch, group, topic, 0, 10)
		if err := a.DeleteTopic(ctx, topic); err != nil {
			t.Fatalf("DeleteTopic: %v", err)
		}
		// The live subscription may have created it again already.
		if err := a.CreateTopic(ctx, topic, 1); err != nil {
			t.Fatalf("CreateTopic: %v", err)
		}
		mustPublish(t, pub, topic, 100, 3)
		for i := int64(0); i < 3; i++ {
			m := recv(t, ch, recvTimeout)
			if got, want := fmt.Sprintf("%d:%s", offsetOf(t, m), m.Payload), fmt.Sprintf("%d:%d", i, 100+i); got != want {
				t.Fatalf("after the topic was created again: %s, want %s", got, want)
			}
			m.Ack()
		}
		waitCommitted(t, e.Addr(), group, topic, 3)
		if l := logs.String(); !strings.Contains(l, "read position out of range") || !strings.Contains(l, "offset=10 earliest=0") {
			t.Errorf("log = %q, want an Info line on the move from 10 to 0", l)
		}
	})
}
