package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
)

// GroupOwners returns which member of consumer group holds each partition
// it consumes: by topic and partition, the member's instance id (static
// membership, KIP-345), or its client id when it has none. A group with
// no members, or rebalancing, has no owners.
func (a *Admin) GroupOwners(ctx context.Context, group string) (map[string]map[int32]string, error) {
	described, err := a.adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	g, ok := described[group]
	if !ok {
		return nil, fmt.Errorf("describe group %s: not in the answer", group)
	}
	if errors.Is(g.Err, kerr.GroupIDNotFound) {
		return map[string]map[int32]string{}, nil
	}
	if g.Err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, g.Err)
	}
	out := make(map[string]map[int32]string)
	if g.State != "Stable" {
		return out, nil
	}
	for _, m := range g.Members {
		who := m.ClientID
		if m.InstanceID != nil && *m.InstanceID != "" {
			who = *m.InstanceID
		}
		ca, ok := m.Assigned.AsConsumer()
		if !ok {
			continue
		}
		for _, t := range ca.Topics {
			if out[t.Topic] == nil {
				out[t.Topic] = make(map[int32]string)
			}
			for _, p := range t.Partitions {
				out[t.Topic][p] = who
			}
		}
	}
	return out, nil
}
