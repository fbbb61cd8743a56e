package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
)

// PartitionLag is how far a consumer group is behind one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	// Committed is the group's committed offset; -1: none (then the lag
	// counts from the partition's start).
	Committed int64
	End       int64 // the partition's end offset
	Lag       int64 // records between the committed offset (or the start) and the end
}

// GroupLag returns how far group is behind each partition of every topic
// match accepts, whether or not a member of the group is assigned it (a
// group that never settles shows as lag, not as nothing): three requests
// (end offsets, start offsets, the group's commits) whatever the number of
// topics. Partitions are sorted by topic and partition.
func (a *Admin) GroupLag(ctx context.Context, group string, match func(topic string) bool) ([]PartitionLag, error) {
	ends, err := a.adm.ListEndOffsets(ctx)
	if err != nil {
		return nil, fmt.Errorf("group lag: end offsets: %w", err)
	}
	var topics []string
	for t := range ends {
		if match(t) {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	starts, err := a.adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("group lag: start offsets: %w", err)
	}
	commits, err := a.adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		commits, err = nil, nil // no commits yet: every record is behind
	}
	if err != nil {
		return nil, fmt.Errorf("group lag: committed offsets of group %s: %w", group, err)
	}
	var out []PartitionLag
	for _, t := range topics {
		for p, e := range ends[t] {
			if e.Err != nil {
				continue // the partition's leader is not known yet: next time
			}
			l := PartitionLag{Topic: t, Partition: p, Committed: -1, End: e.Offset}
			from := int64(0)
			if s, ok := starts.Lookup(t, p); ok && s.Err == nil {
				from = s.Offset
			}
			if c, ok := commits.Lookup(t, p); ok && c.Err == nil && c.At >= 0 {
				l.Committed = c.At
				from = max(from, c.At)
			}
			l.Lag = max(l.End-from, 0)
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}
