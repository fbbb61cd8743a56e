package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrChangelogTopic is returned (wrapped) by EnsureChangelogTopic for a
// topic that exists but is no changelog: more than one partition, or not
// compacted (its records would be deleted at retention, and a store could
// not be restored from it).
var ErrChangelogTopic = errors.New("topic is not a changelog topic")

// ErrPastEnd is returned (wrapped) by ReadToEnd when asked to read from an
// offset past the partition's end: the reader has applied records the
// partition does not hold (it was deleted and created again?).
var ErrPastEnd = errors.New("offset past the end of the partition")

// EnsureChangelogTopic creates topic as a changelog: one partition,
// compacted (cleanup.policy=compact: the newest record of each key is
// kept forever), with the broker's default replication factor. It is
// idempotent: a topic that exists already is not an error if it is a
// changelog, and one wrapping ErrChangelogTopic if it is not.
func EnsureChangelogTopic(ctx context.Context, admin *Admin, topic string) error {
	configs := map[string]*string{"cleanup.policy": new("compact")}
	maps.Copy(configs, admin.configs)
	if err := admin.createTopic(ctx, topic, 1, configs); err != nil {
		return err
	}
	// Whoever created it, check what it is.
	td, err := admin.adm.ListTopics(ctx, topic)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return fmt.Errorf("ensure changelog topic %s: %w", topic, err)
	}
	if n := len(td[topic].Partitions); n != 1 {
		return fmt.Errorf("ensure changelog topic %s: %d partitions: %w", topic, n, ErrChangelogTopic)
	}
	rcs, err := admin.adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("ensure changelog topic %s: configs: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("ensure changelog topic %s: configs: %w", topic, err)
	}
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		return fmt.Errorf("ensure changelog topic %s: cleanup.policy %q, not compact: %w", topic, policy, ErrChangelogTopic)
	}
	return nil
}

// ReadToEnd reads partition of topic from offset from (a changelog, to
// restore a store from it) and calls fn with each record, in offset order,
// up to the partition's last stable offset as it was when ReadToEnd
// started: records of committed transactions only (read_committed; an
// aborted transaction's records are skipped, and so is everything from the
// first transaction still open). It returns the offset to read from next
// time: past the last record read, and past the transaction markers
// before the end. A from below the partition's start (compaction or
// DeleteRecords removed those records) reads from its start; a from past
// its end is an error wrapping ErrPastEnd. An error of fn stops the read;
// next is then the offset of the record fn failed. It reads as auth,
// which needs Describe and Read on the topic. A topic that does not exist
// is an error wrapping ErrTopicNotFound.
func ReadToEnd(ctx context.Context, brokers []string, auth Auth, topic string, partition int32, from int64, fn func(Record) error) (next int64, err error) {
	if len(brokers) == 0 {
		return from, errors.New("read to end: no brokers")
	}
	if err := auth.Validate(); err != nil {
		return from, fmt.Errorf("read to end: %w", err)
	}
	if from < 0 {
		from = 0
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come too, so that the position moves past
		// the marker a read_committed end (the LSO) may stop after.
		kgo.KeepControlRecords(),
		kgo.FetchMaxPartitionBytes(16 << 20),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, auth.kgoOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return from, fmt.Errorf("read to end: %w", err)
	}
	defer cl.Close()
	end, err := lastStable(ctx, kadm.NewClient(cl), topic, partition)
	if err != nil {
		return from, fmt.Errorf("read %s/%d to end: %w", topic, partition, err)
	}
	switch {
	case from > end:
		return from, fmt.Errorf("read %s/%d from %d: its end is %d: %w", topic, partition, from, end, ErrPastEnd)
	case from == end:
		return from, nil
	}
	next = from
	for next < end {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return next, fmt.Errorf("read %s/%d to end: %w", topic, partition, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			if isUnknownTopic(ferr) {
				ferr = ErrTopicNotFound
			}
			return next, fmt.Errorf("read %s/%d to end: %w", topic, partition, ferr)
		}
		for it := fs.RecordIter(); !it.Done() && next < end; {
			r := it.Next()
			if r.Offset >= end {
				next = end
				break
			}
			if !r.Attrs.IsControl() {
				if err := fn(recordOf(r)); err != nil {
					return r.Offset, err
				}
			}
			next = r.Offset + 1
		}
	}
	return next, nil
}

// lastStable returns the last stable offset of topic's partition: the
// end of what read_committed consumers see.
func lastStable(ctx context.Context, adm *kadm.Client, topic string, partition int32) (int64, error) {
	listed, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		if isUnknownTopic(err) {
			err = ErrTopicNotFound
		}
		return 0, fmt.Errorf("last stable offset: %w", err)
	}
	o, ok := listed.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("last stable offset: partition %d: %w", partition, ErrTopicNotFound)
	}
	return o.Offset, nil
}
