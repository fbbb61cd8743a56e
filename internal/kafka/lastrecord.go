package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LastRecord returns the value of the newest record of topic (of the
// record with the latest timestamp among the last records of its
// partitions), or nil, nil if the topic has none. It reads as auth, which
// needs Describe and Read on the topic. A topic that does not exist is an
// error wrapping ErrTopicNotFound.
//
// The vault uses it at start to read the newest audit checkpoint it
// published (vault.checkpoints) and vaultctl audit verify
// --checkpoint-topic to fetch it.
func LastRecord(ctx context.Context, brokers []string, auth Auth, topic string) ([]byte, error) {
	if len(brokers) == 0 {
		return nil, errors.New("last record: no brokers")
	}
	if err := auth.Validate(); err != nil {
		return nil, fmt.Errorf("last record: %w", err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, auth.kgoOpts()...)...)
	if err != nil {
		return nil, fmt.Errorf("last record: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
	}
	if err == nil && len(ends[topic]) == 0 {
		err = fmt.Errorf("%w", ErrTopicNotFound)
	}
	if err != nil {
		if isUnknownTopic(err) {
			err = ErrTopicNotFound
		}
		return nil, fmt.Errorf("last record of %s: %w", topic, err)
	}
	want := map[int32]int64{} // partition → offset of its last record
	at := map[int32]kgo.Offset{}
	for p, end := range ends[topic] {
		start, ok := starts.Lookup(topic, p)
		if end.Offset <= 0 || (ok && start.Offset >= end.Offset) {
			continue
		}
		want[p] = end.Offset - 1
		at[p] = kgo.NewOffset().At(end.Offset - 1)
	}
	if len(want) == 0 {
		return nil, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: at})
	var best *kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("last record of %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return nil, fmt.Errorf("last record of %s: %w", topic, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if o, ok := want[r.Partition]; !ok || r.Offset < o {
				return
			}
			delete(want, r.Partition)
			if best == nil || r.Timestamp.After(best.Timestamp) {
				best = r
			}
		})
	}
	return best.Value, nil
}
