package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/vault"
)

// vaultPrincipal is the vault's own identity on the brokers, from cfg: on
// the embedded broker its superuser, whose password is created on first
// start (0600) unless a password file is given; with --brokers the SASL
// user and password file given, or anonymous. TLS per cfg.
func vaultPrincipal(cfg *Config, log *slog.Logger) (kafka.Auth, error) {
	a := kafka.Auth{Mechanism: cfg.KafkaSASLMechanism}
	embedded := len(cfg.Brokers) == 0
	switch {
	case embedded && cfg.KafkaAuth == "none":
	case embedded:
		a.User = cmp.Or(cfg.KafkaSASLUser, DefaultEmbeddedSASLUser)
		pwFile := cmp.Or(cfg.KafkaSASLPasswordFile, DefaultKafkaPasswordFile(cfg.DataDir))
		pw, err := readSecretFile(pwFile, true, log)
		if err != nil {
			return kafka.Auth{}, fmt.Errorf("kafka password: %w", err)
		}
		a.Password = pw
	case cfg.KafkaSASLUser != "":
		pw, err := readSecretFile(cfg.KafkaSASLPasswordFile, false, log)
		if err != nil {
			return kafka.Auth{}, fmt.Errorf("kafka password: %w", err)
		}
		a.User, a.Password = cfg.KafkaSASLUser, pw
	}
	var err error
	switch {
	case embedded && cfg.KafkaTLSCert != "":
		// Trust the listener's own certificate (self-signed, or its chain)
		// and the CA given, as the name the broker advertises.
		a.TLS, err = kafka.ClientTLS(hostPart(cfg.KafkaAddr), cfg.KafkaTLSCert, cfg.KafkaTLSCA)
	case !embedded && (cfg.KafkaTLS || cfg.KafkaTLSCA != ""):
		a.TLS, err = kafka.ClientTLS("", cfg.KafkaTLSCA)
	}
	if err != nil {
		return kafka.Auth{}, err
	}
	return a, a.Validate()
}

// readSecretFile reads a secret from path; create makes it (0600, 256
// random bits) when it does not exist.
func readSecretFile(path string, create bool, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < 16 {
			return "", fmt.Errorf("%s: shorter than 16 characters", path)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	s := "tvb_" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := atomicfile.WriteFile(path, []byte(s+"\n"), atomicfile.Options{NoClobber: true}); err != nil {
		return "", err
	}
	log.Info("embedded broker: the vault's Kafka password created", "path", path)
	return s, nil
}

func hostPart(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// producers is the vault's Producers: the Admin when the brokers
// authenticate the vault (and so can hold tenants' principals), else nil.
func (s *Server) producers() vault.Producers {
	if s.kafkaAuth.User == "" {
		return nil
	}
	return brokerAccess{s.admin}
}

// brokerAccess adapts kafka.Admin to the vault's Producers and TopicIDs.
type brokerAccess struct{ a *kafka.Admin }

func (b brokerAccess) SetProducer(ctx context.Context, user, secret, topic string) error {
	if err := b.a.SetSCRAM(ctx, user, secret); err != nil {
		return err
	}
	return b.a.AllowProduce(ctx, user, topic)
}

func (b brokerAccess) AllowProducer(ctx context.Context, user, topic string) error {
	return b.a.AllowProduce(ctx, user, topic)
}

func (b brokerAccess) RemoveProducer(ctx context.Context, user string) error {
	if err := b.a.RevokeAll(ctx, user); err != nil {
		return err
	}
	return b.a.DeleteSCRAM(ctx, user)
}

func (b brokerAccess) HasProducer(ctx context.Context, user string) (bool, error) {
	return b.a.HasSCRAM(ctx, user)
}

// CreateTopic is kafka.Admin's, its name collisions told the vault's way.
func (b brokerAccess) CreateTopic(ctx context.Context, topic string, partitions int) error {
	err := b.a.CreateTopic(ctx, topic, partitions)
	if errors.Is(err, kafka.ErrTopicCollision) {
		return fmt.Errorf("%w: %w", vault.ErrTopicCollision, err)
	}
	return err
}

func (b brokerAccess) TopicID(ctx context.Context, topic string) (string, error) {
	id, err := b.a.TopicID(ctx, topic)
	if errors.Is(err, kafka.ErrTopicNotFound) {
		return "", fmt.Errorf("%w: %w", vault.ErrTopicMissing, err)
	}
	return id, err
}

var (
	_ vault.Producers = brokerAccess{}
	_ vault.TopicIDs  = brokerAccess{}
	_ vault.Topics    = brokerAccess{}
)
