package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Brokers are the bootstrap brokers. Required.
	Brokers []string

	// ConsumerGroup is required. Each Subscribe(topic) joins the group
	// ConsumerGroup+"."+topic: one group per topic, so tenants are
	// independent (adding one never rebalances the others) and several
	// vaultd nodes share a tenant's partitions by group assignment.
	ConsumerGroup string

	// MaxInFlight bounds the messages handed out per subscription from the
	// first un-acked one of each partition onwards (a window: a message
	// acked out of order still counts until every earlier one is acked).
	// Default 4096; 1 gives watermill's classic one-at-a-time delivery.
	MaxInFlight int

	// CommitInterval is how often acked offsets are committed. They are also
	// committed when a group generation ends and on Unsubscribe and Close.
	// Default 200ms.
	CommitInterval time.Duration

	// NackResendSleep is how long a partition pauses after a Nack before it
	// is read again from its first un-acked offset. Default 500ms.
	NackResendSleep time.Duration

	// MaxWait is how long a fetch waits for MinBytes of new records. It
	// also bounds how long stopping a partition reader takes (Nack,
	// rebalance, Unsubscribe, Close), and is the delivery latency of a lone
	// record under MinBytes. Default 100ms.
	MaxWait time.Duration

	// MinBytes is how much a fetch waits for (up to MaxWait) before it
	// returns. Fetching in large batches is what keeps a broker serving many
	// tenant topics from spending itself on tiny fetches: with 100 busy
	// topics, MinBytes 1 cut publish throughput on the embedded broker to a
	// fifth. Default 64 KiB.
	MinBytes int

	// SessionTimeout is how long the group coordinator waits for a member's
	// heartbeat before it evicts it. Default 10s.
	SessionTimeout time.Duration

	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance. Default 10s.
	RebalanceTimeout time.Duration

	// HeartbeatInterval is how often a member heartbeats, and so how soon it
	// notices a rebalance. Default 1s.
	HeartbeatInterval time.Duration

	// Auth is the principal the subscriber consumes as (the vault's own).
	Auth Auth

	// Logger receives the subscriber's warnings and kafka-go's errors.
	// Default slog.Default().
	Logger *slog.Logger
}

func (c *SubscriberConfig) setDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4096
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = 500 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if c.MinBytes == 0 {
		c.MinBytes = 64 << 10
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 10 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c (after defaults).
func (c *SubscriberConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("negative max in flight %d", c.MaxInFlight))
	}
	if c.MinBytes < 0 {
		errs = append(errs, fmt.Errorf("negative min bytes %d", c.MinBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"commit interval", c.CommitInterval},
		{"nack resend sleep", c.NackResendSleep},
		{"max wait", c.MaxWait},
		{"session timeout", c.SessionTimeout},
		{"rebalance timeout", c.RebalanceTimeout},
		{"heartbeat interval", c.HeartbeatInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %s", d.name, d.v))
		}
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is not below session timeout %s", c.HeartbeatInterval, c.SessionTimeout))
	}
	return errors.Join(errs...)
}
