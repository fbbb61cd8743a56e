package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTopicNotFound is returned (wrapped) for an operation on a topic the
// cluster does not have.
var ErrTopicNotFound = errors.New("topic not found")

// Admin does topic administration over the Kafka protocol (franz-go's kadm).
// It is safe for concurrent use.
type Admin struct {
	cl  *kgo.Client
	adm *kadm.Client
}

// NewAdmin returns an Admin for the cluster reachable at brokers. It does not
// connect until the first call.
func NewAdmin(brokers []string) (*Admin, error) {
	if len(brokers) == 0 {
		return nil, errors.New("new admin: no brokers")
	}
	// kadm answers from metadata cached for MetadataMinAge (kgo's default
	// 5s), so a topic just deleted would still be listed: keep it short.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("new admin: %w", err)
	}
	return &Admin{cl: cl, adm: kadm.NewClient(cl)}, nil
}

// CreateTopic creates topic with the given number of partitions (<= 0: the
// broker's default) and the broker's default replication factor. It is
// idempotent: a topic that already exists is not an error, whatever its
// partition count.
func (a *Admin) CreateTopic(ctx context.Context, topic string, partitions int) error {
	if !validTopicName(topic) { // kfake does not check
		return fmt.Errorf("create topic %.260q: invalid name: want 1 to 249 characters of [a-zA-Z0-9._-]", topic)
	}
	n := int32(partitions)
	if partitions <= 0 {
		n = -1
	}
	_, err := a.adm.CreateTopic(ctx, n, -1, nil, topic)
	a.cl.PurgeTopicsFromClient(topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// ListTopics returns the names of the cluster's topics, sorted, without
// internal topics.
func (a *Admin) ListTopics(ctx context.Context) ([]string, error) {
	td, err := a.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	return td.Names(), nil
}

// DeleteTopic deletes topic and its records (and its committed offsets in
// every group). A topic that does not exist is an error wrapping
// ErrTopicNotFound.
//
// Stop every subscription to the topic first: kafka-go's consumers look up
// their topics with auto-creation allowed, so a live subscription brings a
// deleted topic back (empty).
func (a *Admin) DeleteTopic(ctx context.Context, topic string) error {
	_, err := a.adm.DeleteTopic(ctx, topic)
	a.cl.PurgeTopicsFromClient(topic)
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID):
		return fmt.Errorf("delete topic %s: %w", topic, ErrTopicNotFound)
	case err != nil:
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	return nil
}

// Close releases the Admin's connections.
func (a *Admin) Close() error {
	a.cl.Close()
	return nil
}
