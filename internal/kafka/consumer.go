package kafka

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tenantvault/tenantvault/events"
)

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Brokers are the bootstrap brokers. Required.
	Brokers []string
	// Group is the consumer group of every topic the Consumer reads: one
	// membership for all of them, so several processes in the group split
	// the topics' partitions between them. Required.
	Group string
	// Topics is a regular expression of the topics to consume, matched
	// against the whole name (a topic created later that matches is
	// consumed at the next metadata refresh). Required.
	Topics string
	// InstanceID makes the member static (KIP-345): a member that closes
	// does not leave the group, and one that joins again with the same
	// id within SessionTimeout gets its partitions back with no
	// rebalance: a restart moves nothing. "" is a dynamic member. Two
	// live members must not share one (the newer fences the older). A
	// cluster node's id.
	InstanceID string
	// OnAssigned, OnRevoked and OnLost are told the partitions the member
	// was given, gave up in a rebalance, or lost (it was thrown out of the
	// group: another member may have them already). They run in kgo's
	// group goroutine, never while a polled round is open (between a Poll
	// that returned records and AllowRebalance), and the rebalance waits
	// for them: they must not block long (a member that exceeds the
	// rebalance timeout is thrown out), and must not call Commit, End or
	// Close.
	OnAssigned, OnRevoked, OnLost func(map[string][]int32)
	// Auth is the principal the Consumer reads as.
	Auth Auth
	// MaxPollRecords bounds the records one Poll returns; default 8192.
	MaxPollRecords int
	// FetchMaxWait is how long the broker holds a fetch when it has no new
	// records (it answers as soon as one arrives, so this is not a
	// latency, but a partition newly assigned joins at the next fetch);
	// default 250ms. Each fetch names every assigned partition:
	// with many idle tenants a short wait costs CPU on both sides.
	FetchMaxWait time.Duration
	// MetadataMaxAge is how often the topic list is read again, so how
	// soon a topic created elsewhere is consumed; default 1s. Refresh reads
	// it at once.
	MetadataMaxAge time.Duration
	// SessionTimeout, RebalanceTimeout, HeartbeatInterval are the group's
	// timings; defaults 10s, 10s, 1s.
	SessionTimeout, RebalanceTimeout, HeartbeatInterval time.Duration
	// Logger receives the client's warnings and errors; default
	// slog.Default().
	Logger *slog.Logger
}

func (c *ConsumerConfig) setDefaults() {
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 8192
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = 250 * time.Millisecond
	}
	if c.MetadataMaxAge == 0 {
		c.MetadataMaxAge = time.Second
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
func (c *ConsumerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if c.Topics == "" {
		errs = append(errs, errors.New("no topic pattern"))
	} else if _, err := regexp.Compile(c.Topics); err != nil {
		errs = append(errs, fmt.Errorf("topic pattern: %w", err))
	}
	if c.MaxPollRecords < 0 || c.FetchMaxWait < 0 || c.MetadataMaxAge < 0 {
		errs = append(errs, errors.New("negative max poll records, fetch max wait or metadata max age"))
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is not below session timeout %s", c.HeartbeatInterval, c.SessionTimeout))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Consumer reads every topic matching a pattern as one member of one
// consumer group (franz-go's kgo: cooperative-sticky assignment, explicit
// commits). It hands out what one poll fetched as a Round of per-partition
// batches and holds rebalances until the round is done: a caller that
// commits a round's offsets before AllowRebalance never commits for a
// partition it lost, and never has a record in flight across a rebalance.
//
// A partition whose position is out of range (its records were deleted
// below it, or its topic was deleted and created again, shorter) resumes at
// its earliest offset. Offsets are committed only by Commit.
type Consumer struct {
	cl  *kgo.Client
	cfg ConsumerConfig
	log *slog.Logger

	mu     sync.Mutex
	warned map[string]time.Time // last fetch warning by topic
}

// warnOnce logs a fetch error of topic at Warn at most every 10s, at Debug
// in between: a broker that is down does not flood the log.
func (c *Consumer) warnOnce(topic string, err error) {
	c.mu.Lock()
	last, seen := c.warned[topic]
	now := time.Now()
	if !seen || now.Sub(last) > 10*time.Second {
		c.warned[topic] = now
		c.mu.Unlock()
		c.log.Warn("kafka consumer: fetch", "topic", topic, "err", err)
		return
	}
	c.mu.Unlock()
	c.log.Debug("kafka consumer: fetch", "topic", topic, "err", err)
}

// NewConsumer returns a Consumer; it joins the group in the background.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	log := cfg.Logger.With("group", cfg.Group)
	hook := func(what string, user func(map[string][]int32)) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			log.Debug("kafka consumer: partitions "+what, "topics", len(m))
			if user != nil {
				user(m)
			}
		}
	}
	opts := append(cfg.groupOpts(log, hook), kgo.DisableAutoCommit())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("new consumer: %w", err)
	}
	return &Consumer{cl: cl, cfg: cfg, log: log, warned: make(map[string]time.Time)}, nil
}

// groupOpts are the kgo options of a member of cfg's group, for Consumer
// and TxnConsumer alike: every topic matching the pattern, rebalances held
// by the poll, cooperative-sticky, static when InstanceID is set, cfg's
// timings and principal, and cfg's callbacks wrapped by hook.
func (cfg *ConsumerConfig) groupOpts(log *slog.Logger, hook func(what string, user func(map[string][]int32)) func(context.Context, *kgo.Client, map[string][]int32)) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(anchored(cfg.Topics)),
		kgo.ConsumeRegex(),
		kgo.BlockRebalanceOnPoll(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		kgo.MetadataMaxAge(cfg.MetadataMaxAge),
		kgo.MetadataMinAge(min(cfg.MetadataMaxAge, 250*time.Millisecond)),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.HeartbeatInterval(cfg.HeartbeatInterval),
		kgo.WithLogger(kgoLogger{log}),
		kgo.OnPartitionsAssigned(hook("assigned", cfg.OnAssigned)),
		kgo.OnPartitionsRevoked(hook("revoked", cfg.OnRevoked)),
		kgo.OnPartitionsLost(hook("lost", cfg.OnLost)),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	return append(opts, cfg.Auth.kgoOpts()...)
}

// anchored makes pattern match whole topic names.
func anchored(pattern string) string {
	if len(pattern) > 0 && pattern[0] != '^' {
		pattern = "^" + pattern
	}
	if len(pattern) > 0 && pattern[len(pattern)-1] != '$' {
		pattern += "$"
	}
	return pattern
}

// Record is one fetched Kafka record.
type Record struct {
	Offset      int64
	LeaderEpoch int32
	Key, Value  []byte
	Headers     []events.Header
	// Marker is set on a log-end marker (see MarkerHeader): a record
	// without data that the vault's retention appended. Skip it, but
	// count it in the position committed (Batch.Next).
	Marker bool
}

// Batch is what one poll fetched of one partition, in offset order.
type Batch struct {
	Topic     string
	TopicID   string // hex; "" when the broker sent none
	Partition int32
	Records   []Record
}

// Next is the position after b: its last offset + 1.
func (b Batch) Next() Position {
	last := b.Records[len(b.Records)-1]
	return Position{Offset: last.Offset + 1, LeaderEpoch: last.LeaderEpoch}
}

// Position is a place in a partition: the offset of the next record to
// read, with the leader epoch of the record before it (-1: unknown).
type Position struct {
	Offset      int64
	LeaderEpoch int32
}

// Positions are positions by topic and partition.
type Positions map[string]map[int32]Position

// Set records p for topic's partition.
func (ps Positions) Set(topic string, partition int32, p Position) {
	if ps[topic] == nil {
		ps[topic] = make(map[int32]Position)
	}
	ps[topic][partition] = p
}

// ErrConsumerClosed is returned by Poll once the Consumer is closed.
var ErrConsumerClosed = errors.New("consumer closed")

// Poll waits for records and returns what was fetched, as batches, one per
// partition with records. Partition errors are logged, not returned: the
// client retries them. It returns ctx's error when ctx ends, and
// ErrConsumerClosed after Close. Rebalances wait until AllowRebalance.
func (c *Consumer) Poll(ctx context.Context) ([]Batch, error) {
	return pollBatches(ctx, c.cl, c.cfg.MaxPollRecords, c.log, c.warnOnce)
}

// pollBatches is Poll of a group client cl: one PollRecords of up to maxRecords
// records, as batches. warn logs a partition's fetch error.
func pollBatches(ctx context.Context, cl *kgo.Client, maxRecords int, log *slog.Logger, warn func(topic string, err error)) ([]Batch, error) {
	fs := cl.PollRecords(ctx, maxRecords)
	if fs.IsClientClosed() {
		return nil, ErrConsumerClosed
	}
	if err := ctx.Err(); err != nil && fs.NumRecords() == 0 {
		cl.AllowRebalance()
		return nil, err
	}
	var recreated []string
	fs.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kerr.UnknownTopicID):
			// The topic was deleted and created again: kgo keeps the
			// old id until the topic is purged; the pattern then picks
			// the new topic up at the next metadata refresh.
			if !slices.Contains(recreated, topic) {
				recreated = append(recreated, topic)
			}
		default:
			warn(topic, err)
		}
	})
	if len(recreated) > 0 {
		log.Warn("kafka consumer: topics deleted and created again; consuming them again as new topics", "topics", recreated)
		cl.PurgeTopicsFromConsuming(recreated...)
		cl.ForceMetadataRefresh()
	}
	var out []Batch
	fs.EachTopic(func(t kgo.FetchTopic) {
		id := ""
		if t.TopicID != ([16]byte{}) {
			id = hex.EncodeToString(t.TopicID[:])
		}
		t.EachPartition(func(p kgo.FetchPartition) {
			if len(p.Records) == 0 {
				return
			}
			b := Batch{Topic: t.Topic, TopicID: id, Partition: p.Partition, Records: make([]Record, len(p.Records))}
			for i, r := range p.Records {
				b.Records[i] = recordOf(r)
			}
			out = append(out, b)
		})
	})
	return out, nil
}

// recordOf converts a fetched kgo record.
func recordOf(r *kgo.Record) Record {
	rec := Record{Offset: r.Offset, LeaderEpoch: r.LeaderEpoch, Key: r.Key, Value: r.Value, Marker: isMarker(r)}
	if len(r.Headers) > 0 {
		rec.Headers = make([]events.Header, len(r.Headers))
		for j, h := range r.Headers {
			rec.Headers[j] = events.Header{Key: h.Key, Value: h.Value}
		}
	}
	return rec
}

// Commit commits the group's positions ps and returns once the coordinator
// answered (ctx bounds the wait).
func (c *Consumer) Commit(ctx context.Context, ps Positions) error {
	if len(ps) == 0 {
		return nil
	}
	offs := ps.epochOffsets()
	var cerr error
	c.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("commit: %w", cerr)
	}
	return nil
}

// AllowRebalance lets a rebalance held since the last Poll go on. Call it
// once a polled round is committed (or given up).
func (c *Consumer) AllowRebalance() { c.cl.AllowRebalance() }

// Rewind makes the next fetches of each partition in ps start at its
// position (to read again a batch that was not applied).
func (c *Consumer) Rewind(ps Positions) { c.cl.SetOffsets(ps.epochOffsets()) }

// epochOffsets is ps as kgo takes offsets.
func (ps Positions) epochOffsets() map[string]map[int32]kgo.EpochOffset {
	offs := make(map[string]map[int32]kgo.EpochOffset, len(ps))
	for t, parts := range ps {
		m := make(map[int32]kgo.EpochOffset, len(parts))
		for p, pos := range parts {
			m[p] = kgo.EpochOffset{Epoch: pos.LeaderEpoch, Offset: pos.Offset}
		}
		offs[t] = m
	}
	return offs
}

// Pause stops fetching the partitions named; Resume fetches them again.
func (c *Consumer) Pause(tps map[string][]int32) { c.cl.PauseFetchPartitions(tps) }

// Resume undoes Pause.
func (c *Consumer) Resume(tps map[string][]int32) { c.cl.ResumeFetchPartitions(tps) }

// Forget stops consuming topics and drops what was buffered of them (a
// topic still matching the pattern may be consumed again at a later
// metadata refresh: a caller that must not see its records again skips
// them).
func (c *Consumer) Forget(topics ...string) { c.cl.PurgeTopicsFromConsuming(topics...) }

// Refresh reads the topic list now, so that a topic just created is
// consumed without waiting for MetadataMaxAge.
func (c *Consumer) Refresh() { c.cl.ForceMetadataRefresh() }

// Close leaves the group (committing nothing) and closes the connections.
func (c *Consumer) Close() error {
	c.cl.Close()
	return nil
}

// kgoLogger adapts slog to kgo's Logger: errors and warnings at Warn, the
// rest at Debug.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	if level <= kgo.LogLevelWarn {
		lvl = slog.LevelWarn
	}
	k.l.Log(context.Background(), lvl, "kafka consumer: "+msg, keyvals...)
}
