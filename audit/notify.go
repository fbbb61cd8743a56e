package audit

import (
	"fmt"
	"log/slog"
	"sync"
)

// The notifier delivers flagged records to Options.OnFlagged: the writer
// pushes the flagged records of each committed batch (after their fsync),
// and the notifier's goroutine calls OnFlagged for each, in index order,
// never on the writer's goroutine nor under a lock of the Log's.

// notifier calls OnFlagged from its own goroutine, in order, exactly once per
// flagged record pushed to it.
type notifier struct {
	fn     func(Record)
	logger *slog.Logger
	mu     sync.Mutex
	q      []Record
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

func newNotifier(fn func(Record), logger *slog.Logger) *notifier {
	return &notifier{fn: fn, logger: logger, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (n *notifier) push(recs []Record) {
	if len(recs) == 0 {
		return
	}
	n.mu.Lock()
	n.q = append(n.q, recs...)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	for {
		n.mu.Lock()
		recs := n.q
		n.q = nil
		n.mu.Unlock()
		for _, r := range recs {
			n.call(r)
		}
		if len(recs) > 0 {
			continue
		}
		select {
		case <-n.wake:
		case <-n.stop:
			// The writer has stopped: nothing more is pushed. Drain and go.
			n.mu.Lock()
			recs := n.q
			n.q = nil
			n.mu.Unlock()
			for _, r := range recs {
				n.call(r)
			}
			return
		}
	}
}

func (n *notifier) call(r Record) {
	defer func() {
		if p := recover(); p != nil {
			n.logger.Error("audit: OnFlagged panicked", "index", r.Index, "panic", fmt.Sprint(p))
		}
	}()
	n.fn(r)
}

func (n *notifier) stopAndWait() {
	close(n.stop)
	<-n.done
}
