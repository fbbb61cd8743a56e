package kafka

import (
	"context"
	"errors"
)

// Changelogs reads and deletes per-tenant changelog topics (one
// partition, compacted; see EnsureChangelogTopic). It writes none: a
// node of a cluster writes its changelog records in the Kafka
// transaction of its ingest round (TxnConsumer.Produce), with the
// ingress offsets they follow from, so that a record a stale node wrote
// is never read (read_committed).
type Changelogs struct {
	brokers []string
	auth    Auth
	admin   *Admin
}

// NewChangelogs returns Changelogs on the cluster at brokers, as auth,
// deleting topics with admin.
func NewChangelogs(brokers []string, auth Auth, admin *Admin) (*Changelogs, error) {
	if len(brokers) == 0 || admin == nil {
		return nil, errors.New("changelogs: brokers and admin are required")
	}
	return &Changelogs{brokers: brokers, auth: auth, admin: admin}, nil
}

// Read calls fn with the records of topic's partition 0 from offset from
// to its end as of the call (ReadToEnd: committed transactions only),
// with the offset after each. A topic that does not exist holds nothing.
func (c *Changelogs) Read(ctx context.Context, topic string, from int64, fn func(next int64, value []byte) error) error {
	_, err := ReadToEnd(ctx, c.brokers, c.auth, topic, 0, from, func(r Record) error {
		return fn(r.Offset+1, r.Value)
	})
	if errors.Is(err, ErrTopicNotFound) {
		return nil
	}
	return err
}

// Delete deletes topic (a shred).
func (c *Changelogs) Delete(ctx context.Context, topic string) error {
	return c.admin.DeleteTopic(ctx, topic)
}
