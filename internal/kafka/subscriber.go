package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Brokers are the bootstrap brokers. Required.
	Brokers []string

	// ConsumerGroup is required. Each Subscribe(topic) joins the group
	// ConsumerGroup+"."+topic: one group per topic, so tenants are
	// independent (adding one never rebalances the others) and several
	// vaultd nodes share a tenant's partitions by group assignment.
	ConsumerGroup string

	// MaxInFlight bounds the messages handed out per subscription from the
	// first un-acked one of each partition onwards (a window: a message
	// acked out of order still counts until every earlier one is acked).
	// Default 4096; 1 gives watermill's classic one-at-a-time delivery.
	MaxInFlight int

	// CommitInterval is how often acked offsets are committed. They are also
	// committed when a group generation ends and on Unsubscribe and Close.
	// Default 200ms.
	CommitInterval time.Duration

	// NackResendSleep is how long a partition pauses after a Nack before it
	// is read again from its first un-acked offset. Default 500ms.
	NackResendSleep time.Duration

	// MaxWait is how long a fetch waits for MinBytes of new records. It
	// also bounds how long stopping a partition reader takes (Nack,
	// rebalance, Unsubscribe, Close), and is the delivery latency of a lone
	// record under MinBytes. Default 100ms.
	MaxWait time.Duration

	// MinBytes is how much a fetch waits for (up to MaxWait) before it
	// returns. Fetching in large batches is what keeps a broker serving many
	// tenant topics from spending itself on tiny fetches: with 100 busy
	// topics, MinBytes 1 cut publish throughput on the embedded broker to a
	// fifth. Default 64 KiB.
	MinBytes int

	// SessionTimeout is how long the group coordinator waits for a member's
	// heartbeat before it evicts it. Default 10s.
	SessionTimeout time.Duration

	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance. Default 10s.
	RebalanceTimeout time.Duration

	// HeartbeatInterval is how often a member heartbeats, and so how soon it
	// notices a rebalance. Default 1s.
	HeartbeatInterval time.Duration

	// Auth is the principal the subscriber consumes as (the vault's own).
	Auth Auth

	// Logger receives the subscriber's warnings and kafka-go's errors.
	// Default slog.Default().
	Logger *slog.Logger
}

func (c *SubscriberConfig) setDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4096
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = 500 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if c.MinBytes == 0 {
		c.MinBytes = 64 << 10
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 10 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c (after defaults).
func (c *SubscriberConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("negative max in flight %d", c.MaxInFlight))
	}
	if c.MinBytes < 0 {
		errs = append(errs, fmt.Errorf("negative min bytes %d", c.MinBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"commit interval", c.CommitInterval},
		{"nack resend sleep", c.NackResendSleep},
		{"max wait", c.MaxWait},
		{"session timeout", c.SessionTimeout},
		{"rebalance timeout", c.RebalanceTimeout},
		{"heartbeat interval", c.HeartbeatInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %s", d.name, d.v))
		}
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is not below session timeout %s", c.HeartbeatInterval, c.SessionTimeout))
	}
	return errors.Join(errs...)
}

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
	if s.admin == nil {
		a, err := NewAdmin(s.cfg.Brokers, s.cfg.Auth)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("subscribe initialize: %w", err)
		}
		s.admin = a
	}
	a := s.admin
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.CreateTopic(ctx, topic, 0)
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
	if s.admin == nil {
		a, err := NewAdmin(s.cfg.Brokers, s.cfg.Auth)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("reset offsets: %w", err)
		}
		s.admin = a
	}
	a := s.admin
	s.mu.Unlock()
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

// subscription is one Subscribe call: one member of the topic's group.
type subscription struct {
	s     *Subscriber
	topic string
	group string
	log   *slog.Logger

	// ctx is the subscription's lifetime (Subscribe's ctx with our cancel),
	// kept because it outlives Subscribe: run stops when it ends, and it is
	// the parent of the messages' contexts.
	ctx    context.Context
	cancel context.CancelFunc
	out    chan *message.Message
	sem    chan struct{} // MaxInFlight tokens: a send takes one, an ack returns it
	done   chan struct{} // closed after out
	gens   sync.WaitGroup
	member *memberWatch
}

// The formats of the log lines kafka-go's ConsumerGroup writes when it joins
// and when it leaves: its only report of its member ID.
const (
	kafkaGoJoined  = "Joined group %s as member %s in generation %d"
	kafkaGoLeaving = "Leaving group %s, member %s"
)

// memberWatch learns from kafka-go's logger which member ID it joined with
// and whether it left, and passes the log on.
type memberWatch struct {
	debug kafkago.Logger // nil: debug logging off

	mu   sync.Mutex
	id   string
	left string
}

func (w *memberWatch) observe(format string, args ...any) {
	switch {
	case format == kafkaGoJoined && len(args) == 3:
		if id, ok := args[1].(string); ok {
			w.mu.Lock()
			w.id = id
			w.mu.Unlock()
		}
	case format == kafkaGoLeaving && len(args) == 2:
		if id, ok := args[1].(string); ok {
			w.mu.Lock()
			w.left = id
			w.mu.Unlock()
		}
	}
	if w.debug != nil {
		w.debug.Printf(format, args...)
	}
}

// stillJoined returns the member ID kafka-go joined with last if it has not
// left with it, "" otherwise.
func (w *memberWatch) stillJoined() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.id == w.left {
		return ""
	}
	return w.id
}

// run drives the group until the subscription's context is done, then leaves
// the group and closes the output channel.
func (sub *subscription) run(cg *kafkago.ConsumerGroup) {
	defer close(sub.done)
	defer close(sub.out) // after every generation's goroutines stopped
	joining := problem{log: sub.log, what: "join group"}
	for {
		gen, err := cg.Next(sub.ctx)
		if err != nil {
			if sub.ctx.Err() != nil || errors.Is(err, kafkago.ErrGroupClosed) {
				break
			}
			if errors.Is(err, kafkago.RebalanceInProgress) {
				// the next join waits for the rebalance
				sub.log.Debug("kafka subscriber: join group", "err", err)
			} else {
				joining.report(sub.ctx, err)
			}
			continue // the group backs off by itself
		}
		joining.resolved(sub.ctx)
		sub.gens.Add(1)
		gen.Start(func(ctx context.Context) {
			defer sub.gens.Done()
			sub.runGeneration(ctx, gen)
		})
	}
	// Close ends the current generation, waits for its functions (which
	// commit on the way out) and leaves the group.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = cg.Close()
	}()
	// Generation.Start runs fn untracked when the generation had already
	// ended, so wait for our own count too before closing out.
	sub.gens.Wait()
	// kafka-go does not leave the group when it is closed after a SyncGroup
	// failed (it keeps the member ID to rejoin), and a Close during a join
	// waits for that join, which waits for members like this one: several
	// members of a group closing during a rebalance each wait the
	// RebalanceTimeout, and the group stalls until their sessions expire.
	// Our generations are over and committed, so leave on kafka-go's
	// behalf unless it left by itself within a moment.
	t := time.NewTimer(200 * time.Millisecond)
	select {
	case <-closed:
	case <-t.C:
	}
	t.Stop()
	sub.leave(sub.member.stillJoined())
	<-closed
}

// leave sends a LeaveGroup for member. Leaving twice is harmless: the
// second gets UNKNOWN_MEMBER_ID.
func (sub *subscription) leave(member string) {
	if member == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := sub.s.cfg.Auth.transport()
	if err != nil {
		sub.log.Warn("kafka subscriber: leave group", "err", err)
		return
	}
	defer tr.CloseIdleConnections()
	cl := &kafkago.Client{Addr: kafkago.TCP(sub.s.cfg.Brokers...), Timeout: 5 * time.Second, Transport: tr}
	resp, err := cl.LeaveGroup(ctx, &kafkago.LeaveGroupRequest{
		GroupID: sub.group,
		Members: []kafkago.LeaveGroupRequestMember{{ID: member}},
	})
	if err == nil {
		err = resp.Error
	}
	sub.log.Debug("kafka subscriber: left group for kafka-go", "member", member, "err", err)
}

// problem logs a recurring failure at Warn the first time and at Debug
// while it lasts, so an unreachable broker does not flood the log.
type problem struct {
	log  *slog.Logger
	what string
	on   bool
}

func (p *problem) report(ctx context.Context, err error, args ...any) {
	lvl := slog.LevelWarn
	if p.on {
		lvl = slog.LevelDebug
	}
	p.on = true
	p.log.Log(ctx, lvl, "kafka subscriber: "+p.what, append(args, "err", err)...)
}

func (p *problem) resolved(ctx context.Context) {
	if p.on {
		p.log.Log(ctx, slog.LevelInfo, "kafka subscriber: "+p.what+": recovered")
	}
	p.on = false
}

// partState is one assigned partition's commit position.
type partState struct {
	id            int
	next          atomic.Int64 // offset after the last contiguously acked message (or the position a reposition chose); -1 none yet
	lastCommitted int64        // owned by runGeneration
}

// runGeneration consumes the partitions assigned in gen until it ends,
// committing acked offsets every CommitInterval and once more at the end.
func (sub *subscription) runGeneration(ctx context.Context, gen *kafkago.Generation) {
	if ctx.Err() != nil {
		return
	}
	assigned := gen.Assignments[sub.topic]
	sub.log.Debug("kafka subscriber: generation", "generation", gen.ID, "member", gen.MemberID, "partitions", len(assigned))
	parts := make([]*partState, len(assigned))
	var wg sync.WaitGroup
	for i, a := range assigned {
		st := &partState{id: a.ID, lastCommitted: -1}
		st.next.Store(-1)
		if a.Offset >= 0 {
			st.lastCommitted = a.Offset
		}
		parts[i] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub.runPartition(ctx, st, a.Offset)
		}()
	}
	committing := problem{log: sub.log, what: "commit offsets"}
	t := time.NewTicker(sub.s.cfg.CommitInterval)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
			sub.commit(gen, parts, &committing)
		}
	}
	wg.Wait()
	sub.commit(gen, parts, &committing)
}

// commit commits every partition whose acked position moved. A failed commit
// is retried on the next tick; one that fails at the end of a generation
// leaves those messages to be delivered again.
func (sub *subscription) commit(gen *kafkago.Generation, parts []*partState, committing *problem) {
	var offsets map[int]int64
	for _, st := range parts {
		// n is below the committed offset only when the partition was
		// repositioned to its earliest offset (see runPartition).
		if n := st.next.Load(); n >= 0 && n != st.lastCommitted {
			if offsets == nil {
				offsets = make(map[int]int64, len(parts))
			}
			offsets[st.id] = n
		}
	}
	if offsets == nil {
		return
	}
	if err := gen.CommitOffsets(map[string]map[int]int64{sub.topic: offsets}); err != nil {
		committing.report(sub.ctx, err, "generation", gen.ID)
		return
	}
	committing.resolved(sub.ctx)
	for _, st := range parts {
		if n, ok := offsets[st.id]; ok {
			st.lastCommitted = n
		}
	}
}

// runPartition reads one partition from start until ctx is done, starting
// over from the first un-acked offset after each Nack.
//
// A position out of the partition's range (records deleted below it, or the
// topic deleted and created again with fewer records) would stall kafka-go's
// reader, or skip records silently: each read starts with a check, and a
// position out of range moves to the partition's earliest offset, logged at
// Info (auto.offset.reset=earliest). So does a reader that finds itself past
// the end while reading.
func (sub *subscription) runPartition(ctx context.Context, st *partState, start int64) {
	cfg := &sub.s.cfg
	events := &readerWatch{log: sub.log, debug: kafkaGoLogger(sub.log, slog.LevelDebug), partition: st.id}
	rcfg := kafkago.ReaderConfig{
		Brokers:        cfg.Brokers,
		Topic:          sub.topic,
		Partition:      st.id,
		MinBytes:       cfg.MinBytes,
		MaxBytes:       16 << 20,
		MaxWait:        cfg.MaxWait,
		QueueCapacity:  1024,
		ReadBackoffMin: 50 * time.Millisecond,
		ReadBackoffMax: time.Second,
		// Report a start past the end instead of waiting there for
		// records that may never come (the reader stops).
		OffsetOutOfRangeError: true,
		Logger:                kafkaGoLogger(sub.log, slog.LevelDebug),
		ErrorLogger:           kafkago.LoggerFunc(events.observe),
		Dialer:                sub.s.dialer,
	}
	r := kafkago.NewReader(rcfg)
	defer func() { _ = r.Close() }()
	pos := start
	for {
		pos = sub.inRange(ctx, st, pos)
		// SetOffset only fails for group readers and closed readers.
		if err := r.SetOffset(pos); err != nil {
			sub.log.Error("kafka subscriber: set offset", "partition", st.id, "offset", pos, "err", err)
			return
		}
		next, why := sub.readPartition(ctx, r, st, events)
		if ctx.Err() != nil {
			return
		}
		switch why {
		case stopNacked:
			sub.log.Debug("kafka subscriber: nack, redelivering", "partition", st.id, "offset", next)
			pos = next
			t := time.NewTimer(cfg.NackResendSleep)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		case stopOutOfRange:
			// Resume at the first un-acked offset, which inRange
			// moves to the earliest one if it is out of range, with
			// a new reader: the old one may have stopped.
			if n := st.next.Load(); n >= 0 {
				pos = n
			}
			sub.log.Debug("kafka subscriber: read position out of range", "partition", st.id, "offset", pos)
			_ = r.Close()
			r = kafkago.NewReader(rcfg)
			t := time.NewTimer(cfg.MaxWait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		default:
			return
		}
	}
}

// inRange returns pos if it is within the partition's offsets (from its log
// start offset to its end offset), or else the log start offset, recorded
// as the partition's commit position and logged. Negative positions (the
// group's "first offset" for a partition it never committed) and positions
// whose range cannot be looked up are returned as they are: the reader
// starts there, and reports an out-of-range position again.
func (sub *subscription) inRange(ctx context.Context, st *partState, pos int64) int64 {
	if pos < 0 {
		return pos
	}
	first, last, err := sub.bounds(ctx, st.id)
	if err != nil {
		if ctx.Err() == nil {
			sub.log.Debug("kafka subscriber: look up offsets", "partition", st.id, "err", err)
		}
		return pos
	}
	if pos >= first && pos <= last {
		return pos
	}
	why := "the records before it were deleted"
	if pos > last {
		why = "it is past the end of the partition (the topic was deleted and created again?)"
	}
	sub.log.Info("kafka subscriber: read position out of range; resuming at the earliest offset",
		"partition", st.id, "offset", pos, "earliest", first, "end", last, "reason", why)
	st.next.Store(first)
	return first
}

// bounds returns a partition's log start offset and end offset.
func (sub *subscription) bounds(ctx context.Context, partition int) (first, last int64, err error) {
	resp, err := sub.s.offsets.ListOffsets(ctx, &kafkago.ListOffsetsRequest{
		Topics: map[string][]kafkago.OffsetRequest{
			sub.topic: {kafkago.FirstOffsetOf(partition), kafkago.LastOffsetOf(partition)},
		},
	})
	if err != nil {
		return 0, 0, err
	}
	for _, po := range resp.Topics[sub.topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return 0, 0, po.Error
		}
		if po.FirstOffset < 0 || po.LastOffset < po.FirstOffset {
			return 0, 0, fmt.Errorf("offsets [%d, %d] of partition %d", po.FirstOffset, po.LastOffset, partition)
		}
		return po.FirstOffset, po.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("no offsets of partition %d in the answer", partition)
}

// The error log lines of kafka-go's partition reader that report what it
// reports nowhere else.
const (
	kafkaGoSkipDeleted = "the kafka reader is reading before the first offset for partition %d of %s, skipping from offset %d to %d (%d messages)"
	kafkaGoPastEnd     = "the kafka reader is reading passed the last offset for partition %d of %s at offset %d"
)

// readerWatch learns from a partition reader's error log that it skipped
// deleted records (logged at Info: kafka-go moves on by itself) or that it
// is reading past the partition's end, where it would wait for records
// that may never come (pastEnd is called), and passes the log on.
type readerWatch struct {
	log       *slog.Logger
	debug     kafkago.Logger // nil: debug logging off
	partition int

	mu      sync.Mutex
	pastEnd func() // set while a read runs
}

func (w *readerWatch) observe(format string, args ...any) {
	switch {
	case format == kafkaGoSkipDeleted && len(args) == 5:
		w.log.Info("kafka subscriber: read position out of range; resuming at the earliest offset",
			"partition", w.partition, "offset", fmt.Sprint(args[2]), "earliest", args[3], "reason", "the records before it were deleted")
	case format == kafkaGoPastEnd:
		w.mu.Lock()
		f := w.pastEnd
		w.mu.Unlock()
		if f != nil {
			f()
		}
	}
	if w.debug != nil {
		w.debug.Printf(format, args...)
	}
}

func (w *readerWatch) onPastEnd(f func()) {
	w.mu.Lock()
	w.pastEnd = f
	w.mu.Unlock()
}

// stopReason is why readPartition returned.
type stopReason int

const (
	stopDone       stopReason = iota // ctx is done
	stopNacked                       // a message was nacked
	stopOutOfRange                   // the reader's position is out of range
)

// inflight is a message handed out and not yet seen acked by the watcher.
type inflight struct {
	msg    *message.Message
	offset int64
	ctx    *ackContext
}

// ackContext is a handed-out message's context: done once the watcher has
// seen the message acked or nacked, or once its reading stopped (which
// every subscription end causes), as watermill's contract wants. Unlike
// context.WithCancel it does not register each message with its parent,
// which cost more than the rest of handing a message out.
type ackContext struct {
	context.Context // the subscription's: Deadline and Value
	done            chan struct{}
	closed          atomic.Bool
}

func newAckContext(parent context.Context) *ackContext {
	return &ackContext{Context: parent, done: make(chan struct{})}
}

func (c *ackContext) Done() <-chan struct{} { return c.done }

func (c *ackContext) Err() error {
	select {
	case <-c.done:
		if err := c.Context.Err(); err != nil {
			return err
		}
		return context.Canceled
	default:
		return nil
	}
}

func (c *ackContext) cancel() {
	if c.closed.CompareAndSwap(false, true) {
		close(c.done)
	}
}

// readPartition hands out one partition's messages from r until ctx is done,
// a message is nacked (then it reports the nacked offset, which is the
// partition's first un-acked one) or the reader's position is out of range.
func (sub *subscription) readPartition(ctx context.Context, r *kafkago.Reader, st *partState, events *readerWatch) (nackedAt int64, why stopReason) {
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	var outOfRange atomic.Bool
	events.onPastEnd(func() {
		outOfRange.Store(true)
		cancel()
	})
	defer events.onPastEnd(nil)

	pending := make(chan *inflight, cap(sub.sem))
	nackCh := make(chan int64, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		sub.watch(ectx, cancel, st, pending, nackCh)
	}()

	partition := strconv.Itoa(st.id)
	fetching := problem{log: sub.log, what: "fetch"}
fetch:
	for {
		m, err := r.FetchMessage(ectx)
		if err != nil {
			if ectx.Err() != nil {
				break
			}
			if errors.Is(err, kafkago.OffsetOutOfRange) { // the reader has stopped
				outOfRange.Store(true)
				cancel()
				break
			}
			fetching.report(ectx, err, "partition", st.id)
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ectx.Done():
				t.Stop()
				break fetch
			case <-t.C:
			}
			continue
		}
		fetching.resolved(ectx)
		// Each channel operation tries without blocking first: a select
		// on two channels costs several times a plain send.
		select {
		case sub.sem <- struct{}{}:
		default:
			select {
			case sub.sem <- struct{}{}:
			case <-ectx.Done():
				break fetch
			}
		}
		if ectx.Err() != nil { // a nack stopped us while we waited
			<-sub.sem
			break
		}
		if isMarkerMessage(&m) {
			// Never handed out, acked at once: the commit position
			// moves past it in order.
			msg := message.NewMessage("", nil)
			msg.Ack()
			mctx := newAckContext(sub.ctx)
			msg.SetContext(mctx)
			pending <- &inflight{msg: msg, offset: m.Offset, ctx: mctx}
			continue
		}
		msg := toMessage(sub.topic, partition, &m)
		mctx := newAckContext(sub.ctx)
		msg.SetContext(mctx)
		pending <- &inflight{msg: msg, offset: m.Offset, ctx: mctx} // never waits: each pending message holds a token
		select {
		case sub.out <- msg:
		default:
			select {
			case sub.out <- msg:
			case <-ectx.Done():
				break fetch // the message is in pending: released below
			}
		}
	}
	<-watched
	for drained := false; !drained; {
		select {
		case in := <-pending:
			in.ctx.cancel()
			<-sub.sem
		default:
			drained = true
		}
	}
	select {
	case off := <-nackCh:
		return off, stopNacked
	default:
	}
	if outOfRange.Load() {
		return 0, stopOutOfRange
	}
	return 0, stopDone
}

// watch follows one partition's handed-out messages in order. When the
// oldest is acked, the partition's commit position moves past it; when it is
// nacked, watch reports its offset and stops the reader. A message acked
// after the messages before it are acked is seen when they are; acks and
// nacks that arrive after the reader stopped are ignored.
func (sub *subscription) watch(ctx context.Context, stop context.CancelFunc, st *partState, pending <-chan *inflight, nackCh chan<- int64) {
	for {
		var in *inflight
		select { // without blocking first, as in readPartition
		case in = <-pending:
		default:
			select {
			case in = <-pending:
			case <-ctx.Done():
				return
			}
		}
		select { // acks come in batches: most are in already
		case <-in.msg.Acked():
			st.next.Store(in.offset + 1)
			in.ctx.cancel()
			<-sub.sem
			continue
		default:
		}
		select {
		case <-in.msg.Acked():
			st.next.Store(in.offset + 1)
			in.ctx.cancel()
			<-sub.sem
		case <-in.msg.Nacked():
			// Stop before returning the token, so the fetch loop that
			// takes it sees the stop and hands out nothing more.
			nackCh <- in.offset
			stop()
			in.ctx.cancel()
			<-sub.sem
			return
		case <-ctx.Done():
			select {
			case <-in.msg.Acked(): // acked as we stopped: still counts
				st.next.Store(in.offset + 1)
			default:
			}
			in.ctx.cancel()
			<-sub.sem
			return
		}
	}
}

// toMessage converts a consumed record to a watermill message: the UUID from
// HeaderUUID (or topic/partition/offset), one metadata entry per header, and
// the kafka.* entries, which headers cannot override.
func toMessage(topic, partition string, m *kafkago.Message) *message.Message {
	md := make(message.Metadata, len(m.Headers)+4)
	var uuid string
	for _, h := range m.Headers {
		if h.Key == HeaderUUID {
			uuid = string(h.Value)
			continue
		}
		md[h.Key] = string(h.Value)
	}
	offset := strconv.FormatInt(m.Offset, 10)
	if uuid == "" {
		uuid = topic + "/" + partition + "/" + offset
	}
	md[MetadataTopic] = topic
	md[MetadataPartition] = partition
	md[MetadataOffset] = offset
	if m.Key != nil {
		md[MetadataKey] = string(m.Key)
	} else {
		delete(md, MetadataKey)
	}
	msg := message.NewMessage(uuid, m.Value)
	msg.Metadata = md
	return msg
}
