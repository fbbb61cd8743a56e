package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// The one-topic peers (naive, postgres-rls) put every tenant's records on
// one topic, with one partition, read by one consumer (one Subscribe). The
// tenant id travels in the record key, "<tenant>/<stream>": the key a
// shared topic would be partitioned by, so that a stream's events keep
// their order, and one the consumer reads without decoding the payload
// (no header is added: the payloads, headers included, are those of the
// vault phase). The record's message UUID is its number within its
// tenant, as in every phase.

// Batches are gathered as the ingest runner gathers them: up to
// gatherMax messages, waiting up to gatherLinger for more after the first.
const (
	gatherMax    = 512
	gatherLinger = 5 * time.Millisecond
)

// sharedTopic names the one topic of a one-topic peer: bench.shared on
// the embedded broker each peer phase starts; on an external cluster a
// name of the phase's own (bench.shared.b<id>-<run><tag>), deleted after.
func sharedTopic(c config, run int, tag string) string {
	if len(c.brokers) == 0 {
		return "bench.shared"
	}
	return fmt.Sprintf("bench.shared.b%s-%d%s", runID, run, tag)
}

// sharedKey is the record key of tenant t's event on stream in the shared
// topic.
func sharedKey(t events.TenantID, stream string) string { return string(t) + "/" + stream }

// parseSharedKey splits a shared topic's record key into tenant and stream.
func parseSharedKey(m *message.Message) (tenant, stream string, err error) {
	key := m.Metadata.Get(kafka.MetadataKey)
	tenant, stream, ok := strings.Cut(key, "/")
	if !ok || tenant == "" {
		return "", "", fmt.Errorf("record %s: no tenant in its key %q", m.UUID, key)
	}
	return tenant, stream, nil
}

// sharedKafka is the transport of a one-topic peer: an embedded broker of
// its own, unauthenticated and configured as benchTransport configures it
// (or the external cluster of -brokers), the shared topic with one
// partition, one Publisher and one Subscriber.
type sharedKafka struct {
	topic   string
	broker  *kafka.Embedded // nil on an external cluster
	admin   *kafka.Admin
	sub     *kafka.Subscriber
	pub     *kafka.Publisher
	created bool // the topic exists (to delete from an external cluster)
}

// openSharedKafka starts (or connects to) the brokers and creates topic.
func openSharedKafka(ctx context.Context, c config, dir, topic string) (_ *sharedKafka, err error) {
	k := &sharedKafka{topic: topic}
	defer func() {
		if err != nil {
			err = errors.Join(err, k.close(ctx))
		}
	}()
	brokers := c.brokers
	if len(brokers) == 0 {
		if k.broker, err = kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "broker"),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}); err != nil {
			return nil, fmt.Errorf("start broker: %w", err)
		}
		brokers = []string{k.broker.Addr()}
	}
	if k.admin, err = kafka.NewAdmin(brokers, kafka.Auth{}); err != nil {
		return nil, err
	}
	if err = k.admin.CreateTopic(ctx, topic, 1); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	k.created = true
	if k.sub, err = kafka.NewSubscriber(kafka.SubscriberConfig{Brokers: brokers, ConsumerGroup: "vaultbench-" + runID}); err != nil {
		return nil, err
	}
	if k.pub, err = kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers}); err != nil {
		return nil, err
	}
	return k, nil
}

// close closes what openSharedKafka opened, deleting the topic from an
// external cluster.
func (k *sharedKafka) close(ctx context.Context) error {
	var errs []error
	if k.pub != nil {
		errs = append(errs, k.pub.Close())
	}
	if k.sub != nil {
		errs = append(errs, k.sub.Close())
	}
	if k.admin != nil {
		if k.created && k.broker == nil {
			errs = append(errs, k.admin.DeleteTopic(ctx, k.topic))
		}
		errs = append(errs, k.admin.Close())
	}
	if k.broker != nil {
		errs = append(errs, k.broker.Close())
	}
	return errors.Join(errs...)
}

// runShared measures a one-topic peer: it publishes the tenants' prepared
// records (the same payloads as every phase's) to topic, c.publishers
// tenants at a time through one anonymous publisher, consumes them with
// one subscription, hands each gathered batch to commit, and acks the
// batch's messages once commit returned. The clock runs from the first
// publish to the last record acked. serverCPU, if not nil, gives the CPU
// seconds of a server outside the process, measured over the same window.
// commit runs on one goroutine, which has returned when runShared does.
func runShared(ctx context.Context, c config, dir, topic string, tenants []events.TenantID, perTenant int,
	commit func([]*message.Message) error, serverCPU func() float64) (_ *Phase, err error) {
	k, err := openSharedKafka(ctx, c, dir, topic)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, k.close(ctx)) }()

	// The topic is deleted with the caller's ctx, this one is cancelled
	// first.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := k.sub.Subscribe(pctx, topic)
	if err != nil {
		return nil, err
	}
	var acked atomic.Int64
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := consumeBatches(ch, func(batch []*message.Message) error {
			if err := commit(batch); err != nil {
				return err
			}
			for _, m := range batch {
				m.Ack()
			}
			acked.Add(int64(len(batch)))
			return nil
		}); err != nil {
			errc <- err
			cancel()
		}
	}()
	defer func() {
		cancel()
		<-done
	}()

	batches := prepareKeyed(c, tenants, perTenant, sharedKey)
	total := int64(perTenant * len(tenants))
	server0 := 0.0
	if serverCPU != nil {
		server0 = serverCPU()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	if err := publishTo(pctx, c, slices.Repeat([]*kafka.Publisher{k.pub}, len(tenants)), slices.Repeat([]string{topic}, len(tenants)), batches); err != nil {
		select {
		case cerr := <-errc: // the consumer failed first, and cancelled the publishing
			return nil, cerr
		default:
			return nil, err
		}
	}
	batches = nil
	if err := waitAcked(&acked, total, errc); err != nil {
		return nil, err
	}
	p := &Phase{Seconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds() - cpu0}
	if serverCPU != nil {
		p.ServerCPUSeconds = serverCPU() - server0
	}
	p.EventsPerSec = float64(total) / p.Seconds
	return p, nil
}

// consumeBatches gathers the messages of ch into batches as the ingest
// runner does (up to gatherMax, waiting gatherLinger for more after the
// first) and hands each to commit, until ch is closed or commit fails.
func consumeBatches(ch <-chan *message.Message, commit func([]*message.Message) error) error {
	linger := time.NewTimer(time.Hour)
	defer linger.Stop()
	for m := range ch {
		batch := []*message.Message{m}
		linger.Reset(gatherLinger)
	gather:
		for len(batch) < gatherMax {
			select {
			case m, ok := <-ch:
				if !ok {
					break gather
				}
				batch = append(batch, m)
			case <-linger.C:
				break gather
			}
		}
		linger.Stop()
		if err := commit(batch); err != nil {
			return err
		}
	}
	return nil
}
