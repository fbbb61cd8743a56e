package kafka

// A generation's partitions and the commit of their acked positions.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

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
