package kafka

// A partition's reader and its read position: where it starts, and where
// it resumes when the position is out of the partition's range.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

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
