package kafka

// Handing a partition's messages out and following their acks.

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
)

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
	if sub.handOut(ectx, r, st, pending) {
		outOfRange.Store(true)
		cancel()
	}
	<-watched
	sub.release(pending)
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

// handOut fetches messages from r and hands each out (after putting it in
// pending, for the watcher), until ctx is done; it reports whether it
// stopped because the reader's position is out of range (the reader has
// stopped). A log-end marker is put in pending acked, and not handed out.
func (sub *subscription) handOut(ctx context.Context, r *kafkago.Reader, st *partState, pending chan<- *inflight) (outOfRange bool) {
	partition := strconv.Itoa(st.id)
	fetching := problem{log: sub.log, what: "fetch"}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			if errors.Is(err, kafkago.OffsetOutOfRange) {
				return true
			}
			fetching.report(ctx, err, "partition", st.id)
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
			continue
		}
		fetching.resolved(ctx)
		if !sub.acquire(ctx) {
			return false
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
		// Each channel operation tries without blocking first: a select
		// on two channels costs several times a plain send.
		select {
		case sub.out <- msg:
		default:
			select {
			case sub.out <- msg:
			case <-ctx.Done():
				return false // the message is in pending: released by readPartition
			}
		}
	}
}

// acquire takes a MaxInFlight token for a message to hand out; false if ctx
// ended first (a nack stopped the partition while it waited), holding none.
func (sub *subscription) acquire(ctx context.Context) bool {
	select { // without blocking first, as in handOut
	case sub.sem <- struct{}{}:
	default:
		select {
		case sub.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	if ctx.Err() != nil {
		<-sub.sem
		return false
	}
	return true
}

// release ends the messages the watcher left in pending, returning their
// tokens.
func (sub *subscription) release(pending <-chan *inflight) {
	for {
		select {
		case in := <-pending:
			in.ctx.cancel()
			<-sub.sem
		default:
			return
		}
	}
}

// watch follows one partition's handed-out messages in order. When the
// oldest is acked, the partition's commit position moves past it; when it is
// nacked, watch reports its offset and stops the reader. A message acked
// after the messages before it are acked is seen when they are; acks and
// nacks that arrive after the reader stopped are ignored.
func (sub *subscription) watch(ctx context.Context, stop context.CancelFunc, st *partState, pending <-chan *inflight, nackCh chan<- int64) {
	for {
		var in *inflight
		select { // without blocking first, as in handOut
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
