package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LastRecord returns the value of the newest record of topic whose key is
// key (of the record with the latest timestamp among the last such records
// of its partitions), or nil, nil if the topic has none. Each partition is
// read backwards from its end, in windows that double, until a record with
// the key is found or the partition's start is reached: several writers
// (vaults, each keying its records by its log's verifier key) may share
// the topic. It reads as auth, which needs Describe and Read on the topic.
// A topic that does not exist is an error wrapping ErrTopicNotFound.
//
// The vault uses it at start to read the newest audit checkpoint it
// published (vault.checkpoints) and vaultctl audit verify
// --checkpoint-topic to fetch it.
func LastRecord(ctx context.Context, brokers []string, auth Auth, topic string, key []byte) ([]byte, error) {
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
	var best *kgo.Record
	for p, end := range ends[topic] {
		var start int64
		if so, ok := starts.Lookup(topic, p); ok {
			start = so.Offset
		}
		r, err := lastWithKey(ctx, topic, p, start, end.Offset, key, brokers, auth)
		if err != nil {
			return nil, fmt.Errorf("last record of %s: %w", topic, err)
		}
		if r != nil && (best == nil || r.Timestamp.After(best.Timestamp)) {
			best = r
		}
	}
	if best == nil {
		return nil, nil
	}
	return best.Value, nil
}

// lastWithKey reads partition p of topic backwards from end, in windows
// that double from one record, and returns its last record keyed key, or
// nil when none lies in [start, end).
func lastWithKey(ctx context.Context, topic string, p int32, start, end int64, key []byte, brokers []string, auth Auth) (*kgo.Record, error) {
	for hi, n := end, int64(1); hi > start; hi, n = max(start, hi-n), n*2 {
		lo := max(start, hi-n)
		recs, err := readRange(ctx, topic, p, lo, hi, brokers, auth)
		if err != nil {
			return nil, err
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if bytes.Equal(recs[i].Key, key) {
				return recs[i], nil
			}
		}
	}
	return nil, nil
}

// readRange reads the records of partition p of topic at offsets [lo, hi),
// with a client of its own.
func readRange(ctx context.Context, topic string, p int32, lo, hi int64, brokers []string, auth Auth) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(lo)}})}, auth.kgoOpts()...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return nil, ferr
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= lo && r.Offset < hi {
				out = append(out, r)
			}
			if r.Offset >= hi-1 {
				done = true
			}
		})
		if done {
			return out, nil
		}
	}
}
