package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Metadata keys the adapter reads and sets. Publish takes the record key from
// MetadataKey; a consumed message carries all four, plus one entry per record
// header.
const (
	MetadataKey       = "kafka.key"
	MetadataTopic     = "kafka.topic"
	MetadataPartition = "kafka.partition"
	MetadataOffset    = "kafka.offset"
)

// metadataPrefix marks the adapter's own metadata, never sent as headers.
const metadataPrefix = "kafka."

// HeaderUUID carries a watermill message's UUID across Kafka (the header name
// watermill's own Kafka marshaler uses). A consumed record without it gets
// the UUID "<topic>/<partition>/<offset>".
const HeaderUUID = "_watermill_message_uuid"

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Brokers are the bootstrap brokers. Required.
	Brokers []string

	// BatchTimeout is how long the writer waits to fill a batch before
	// sending it. Default 2ms.
	BatchTimeout time.Duration

	// WriteTimeout bounds one Publish, retries included. Default 30s.
	WriteTimeout time.Duration

	// Auth is the principal the publisher produces as.
	Auth Auth

	// Logger receives kafka-go's errors (Warn) and, when Debug is enabled,
	// its chatter. Default slog.Default().
	Logger *slog.Logger
}

func (c *PublisherConfig) setDefaults() {
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 2 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem with c (after defaults).
func (c *PublisherConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.BatchTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative batch timeout %s", c.BatchTimeout))
	}
	if c.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("negative write timeout %s", c.WriteTimeout))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Publisher is a watermill message.Publisher on kafka-go's Writer. It is safe
// for concurrent use; concurrent Publish calls share batches.
type Publisher struct {
	w       *kafkago.Writer
	tr      *kafkago.Transport // the Writer's own: see NewPublisher
	timeout time.Duration

	mu     sync.RWMutex
	closed bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher. It does not connect until the first
// Publish.
//
// Records are keyed by MetadataKey and spread over partitions with the
// murmur2 hash Java clients and franz-go use, so one stream's events land in
// one partition (and keep their order) whichever of these clients produced
// them. Topics that do not exist are auto-created where the broker allows it,
// also one deleted since the Publisher last wrote to it.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("publisher config: %w", err)
	}
	// A Transport of its own: kafka-go's DefaultTransport caches
	// metadata for every Writer of the process, so a topic deleted (and
	// to be auto-created again) was still known there, and writes to it
	// failed until the cache expired.
	tr, err := cfg.Auth.transport()
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	w := &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Transport:              tr,
		Balancer:               &kafkago.Murmur2Balancer{},
		BatchSize:              4096,
		BatchTimeout:           cfg.BatchTimeout,
		RequiredAcks:           kafkago.RequireAll,
		AllowAutoTopicCreation: true,
		ErrorLogger:            kafkaGoLogger(cfg.Logger, slog.LevelWarn),
		Logger:                 kafkaGoLogger(cfg.Logger, slog.LevelDebug),
	}
	return &Publisher{w: w, tr: tr, timeout: cfg.WriteTimeout}, nil
}

// Publish writes msgs to topic in one Writer.WriteMessages call and returns
// once the broker acknowledged all of them (acks=all). Each record's key is
// the message's MetadataKey; its headers are the UUID (HeaderUUID) and every
// other metadata entry except the kafka.* ones. Messages with the same key
// keep their order.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errors.New("publish: publisher is closed")
	}
	if topic == "" {
		return errors.New("publish: empty topic")
	}
	if len(msgs) == 0 {
		return nil
	}
	recs := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		recs[i] = toRecord(topic, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	err := p.w.WriteMessages(ctx, recs...)
	if failed := noTopic(err, recs); failed != nil && ctx.Err() == nil {
		// The topic was deleted since the Writer last saw it: its retries
		// refreshed the metadata, and a new write auto-creates it.
		err = p.w.WriteMessages(ctx, failed...)
	}
	if err != nil {
		return fmt.Errorf("publish %d messages to %s: %w", len(msgs), topic, err)
	}
	return nil
}

// noTopic returns the records of a failed write of recs if every one of
// them failed because its topic does not exist, nil otherwise.
func noTopic(err error, recs []kafkago.Message) []kafkago.Message {
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) || werrs.Count() == 0 || len(werrs) != len(recs) {
		return nil
	}
	var failed []kafkago.Message
	for i, e := range werrs {
		switch {
		case e == nil:
		case errors.Is(e, protocol.ErrNoTopic) || errors.Is(e, kafkago.UnknownTopicOrPartition):
			failed = append(failed, recs[i])
		default:
			return nil
		}
	}
	return failed
}

// toRecord converts a watermill message to a kafka-go record for topic.
func toRecord(topic string, m *message.Message) kafkago.Message {
	rec := kafkago.Message{Topic: topic, Value: m.Payload}
	if k, ok := m.Metadata[MetadataKey]; ok {
		rec.Key = []byte(k)
	}
	rec.Headers = make([]kafkago.Header, 0, len(m.Metadata)+1)
	rec.Headers = append(rec.Headers, kafkago.Header{Key: HeaderUUID, Value: []byte(m.UUID)})
	if len(m.Metadata) == 0 {
		return rec
	}
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		if !strings.HasPrefix(k, metadataPrefix) && k != HeaderUUID {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec.Headers = append(rec.Headers, kafkago.Header{Key: k, Value: []byte(m.Metadata[k])})
	}
	return rec
}

// Close flushes pending writes and releases the Writer. Publish fails after
// Close. Safe to call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	err := p.w.Close()
	p.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close publisher: %w", err)
	}
	return nil
}

// kafkaGoLogger adapts slog to kafka-go's Logger at one level; nil when that
// level is disabled, which spares kafka-go formatting its messages.
func kafkaGoLogger(l *slog.Logger, lvl slog.Level) kafkago.Logger {
	if !l.Enabled(context.Background(), lvl) {
		return nil
	}
	return kafkago.LoggerFunc(func(format string, args ...any) {
		l.Log(context.Background(), lvl, "kafka-go: "+fmt.Sprintf(format, args...))
	})
}
