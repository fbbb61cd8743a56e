package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/witness"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// openWitnessing makes the checkpoint Publisher of --checkpoint-topic and
// --witness, and checks the audit log against what it published before:
// a log that does not extend it (a rollback, a fork) fails Open, so vaultd
// refuses to start. It runs after the audit log has opened (and signed a
// checkpoint of every record), before anything is served.
func (s *Server) openWitnessing(ctx context.Context, verifierKey string) error {
	cfg := &s.Config
	wc := witness.Config{Log: s.audit, VerifierKey: verifierKey, Logger: s.Logger}
	if cfg.CheckpointTopic != "-" {
		if err := s.admin.CreateTopic(ctx, cfg.CheckpointTopic, 1); err != nil {
			return fmt.Errorf("checkpoint topic %s: %w", cfg.CheckpointTopic, err)
		}
		pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: s.brokers, Auth: s.kafkaAuth, Logger: s.Logger})
		if err != nil {
			return fmt.Errorf("checkpoint publisher: %w", err)
		}
		s.cpKafka = pub
		wc.Topic = checkpointTopic{name: cfg.CheckpointTopic, key: []byte(verifierKey), brokers: s.brokers, auth: s.kafkaAuth, pub: pub}
	}
	hc := &http.Client{Timeout: witness.DefaultTimeout}
	for _, u := range cfg.Witnesses {
		w, err := witness.NewHTTPWitness(u, hc)
		if err != nil {
			return err
		}
		wc.Witnesses = append(wc.Witnesses, w)
	}
	if wc.Topic == nil && len(wc.Witnesses) == 0 {
		s.Logger.Warn("audit checkpoints are published nowhere (--checkpoint-topic=- and no --witness): a rollback of the data dir cannot be detected at start")
		return nil
	}
	p, err := witness.New(wc)
	if err != nil {
		return err
	}
	if err := p.Check(ctx); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	s.cpPub.Store(p)
	return nil
}

// checkpointSigned is the audit log's OnCheckpoint: it wakes the Publisher.
func (s *Server) checkpointSigned(signed []byte, c audit.Checkpoint) {
	if p := s.cpPub.Load(); p != nil {
		p.Notify(signed, c)
	}
}

// flushCheckpoints publishes the checkpoint the audit log signed when it
// closed. Failures are logged: the next start publishes it.
func (s *Server) flushCheckpoints() {
	p := s.cpPub.Load()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		s.Logger.Warn("audit: the last checkpoint was not published; the next start publishes it", "err", err)
	}
}

// checkpointTopic is the Kafka topic of --checkpoint-topic: one record a
// checkpoint, its value the signed note with the witnesses' cosignatures.
type checkpointTopic struct {
	name    string
	key     []byte // the records' key: the log's verifier key, so that logs may share the topic
	brokers []string
	auth    kafka.Auth
	pub     *kafka.Publisher
}

func (t checkpointTopic) Name() string { return "topic " + t.name }

func (t checkpointTopic) Publish(ctx context.Context, signed []byte) error {
	m := message.NewMessage(watermill.NewUUID(), signed)
	m.Metadata.Set(kafka.MetadataKey, string(t.key))
	m.SetContext(ctx)
	return t.pub.Publish(t.name, m)
}

func (t checkpointTopic) Last(ctx context.Context) ([]byte, error) {
	return kafka.LastRecord(ctx, t.brokers, t.auth, t.name, t.key)
}

var _ witness.Topic = checkpointTopic{}
