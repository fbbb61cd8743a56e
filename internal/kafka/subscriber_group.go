package kafka

// A subscription: one member of a topic's consumer group (kafka-go's
// ConsumerGroup), joining, running generations and leaving.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
)

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
