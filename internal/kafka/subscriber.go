package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Subscriber is a watermill message.Subscriber on kafka-go: a consumer group
// per topic (kafka-go's ConsumerGroup) and a partition Reader per assigned
// partition. See the package documentation for its delivery semantics.
type Subscriber struct {
	cfg SubscriberConfig
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	subs   map[string]map[*subscription]struct{} // by topic
	admin  *Admin                                // for SubscribeInitialize, made on first use
	wg     sync.WaitGroup                        // one per subscription's run

	// offsets looks up partitions' log start and end offsets when a
	// read position may be out of range; its connections are closed on
	// Close.
	offsets   *kafkago.Client
	transport *kafkago.Transport
	dialer    *kafkago.Dialer // authenticates as cfg.Auth
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a Subscriber. It does not connect until Subscribe.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("subscriber config: %w", err)
	}
	tr, err := cfg.Auth.transport()
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	dialer, err := cfg.Auth.dialer()
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	return &Subscriber{
		dialer:    dialer,
		cfg:       cfg,
		log:       cfg.Logger,
		subs:      make(map[string]map[*subscription]struct{}),
		transport: tr,
		offsets:   &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Timeout: 10 * time.Second, Transport: tr},
	}, nil
}

// Subscribe joins the group ConsumerGroup+"."+topic and returns the channel
// of its messages. A new group starts at each partition's earliest offset.
// The channel is closed when ctx is done, on Unsubscribe(topic) and on Close,
// after the acked offsets were committed.
//
// Subscribing twice to one topic makes two members of the same group, which
// share the topic's partitions.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, errors.New("subscribe: empty topic")
	}
	group := s.cfg.ConsumerGroup + "." + topic
	members := &memberWatch{debug: kafkaGoLogger(s.log, slog.LevelDebug)}
	cg, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                    group,
		Brokers:               s.cfg.Brokers,
		Topics:                []string{topic},
		StartOffset:           kafkago.FirstOffset,
		WatchPartitionChanges: true,
		HeartbeatInterval:     s.cfg.HeartbeatInterval,
		SessionTimeout:        s.cfg.SessionTimeout,
		RebalanceTimeout:      s.cfg.RebalanceTimeout,
		JoinGroupBackoff:      time.Second,
		Logger:                kafkago.LoggerFunc(members.observe),
		ErrorLogger:           kafkaGoLogger(s.log, slog.LevelDebug),
		Dialer:                s.dialer,
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", topic, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = cg.Close()
		return nil, fmt.Errorf("subscribe to %s: subscriber is closed", topic)
	}
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{
		s:      s,
		topic:  topic,
		group:  group,
		log:    s.log.With("topic", topic, "group", group),
		ctx:    ctx,
		cancel: cancel,
		out:    make(chan *message.Message),
		sem:    make(chan struct{}, s.cfg.MaxInFlight),
		done:   make(chan struct{}),
		member: members,
	}
	if s.subs[topic] == nil {
		s.subs[topic] = make(map[*subscription]struct{})
	}
	s.subs[topic][sub] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sub.run(cg)
		s.mu.Lock()
		delete(s.subs[topic], sub)
		if len(s.subs[topic]) == 0 {
			delete(s.subs, topic)
		}
		s.mu.Unlock()
	}()
	return sub.out, nil
}

// SubscribeInitialize creates topic (with the broker's default partition
// count) if it does not exist. It implements message.SubscribeInitializer.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("subscribe initialize: subscriber is closed")
	}
	a, err := s.adminLocked()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("subscribe initialize: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.CreateTopic(ctx, topic, 0)
}

// adminLocked returns the Admin, made on first use; s.mu is held.
func (s *Subscriber) adminLocked() (*Admin, error) {
	if s.admin == nil {
		a, err := NewAdmin(s.cfg.Brokers, s.cfg.Auth)
		if err != nil {
			return nil, err
		}
		s.admin = a
	}
	return s.admin, nil
}

// ResetOffsets forgets the offsets committed in topic's group (it deletes
// the group), so that the next Subscribe(topic) starts at each partition's
// earliest offset. Unsubscribe first: a group with members is retried for a
// few seconds (a member that just left may still be listed), then refused.
func (s *Subscriber) ResetOffsets(ctx context.Context, topic string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("reset offsets: subscriber is closed")
	}
	a, err := s.adminLocked()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("reset offsets: %w", err)
	}
	group := s.cfg.ConsumerGroup + "." + topic
	for i := 0; ; i++ {
		err := a.DeleteGroup(ctx, group)
		if err == nil || i == 50 || !errors.Is(err, kerr.NonEmptyGroup) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Unsubscribe stops every subscription to topic: it commits their acked
// offsets, leaves the group and closes their channels, and returns once they
// have stopped. Unsubscribing from a topic without subscriptions is a no-op.
func (s *Subscriber) Unsubscribe(topic string) error {
	s.mu.Lock()
	subs := make([]*subscription, 0, len(s.subs[topic]))
	for sub := range s.subs[topic] {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.cancel()
	}
	for _, sub := range subs {
		<-sub.done
	}
	return nil
}

// Close stops every subscription as Unsubscribe does and returns once all of
// the Subscriber's goroutines have stopped. Safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for _, subs := range s.subs {
		for sub := range subs {
			sub.cancel()
		}
	}
	a := s.admin
	s.mu.Unlock()
	s.wg.Wait()
	s.transport.CloseIdleConnections()
	if a != nil {
		return a.Close()
	}
	return nil
}
