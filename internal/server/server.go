package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/alerts"
	"github.com/tenantvault/tenantvault/audit/witness"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
	"github.com/tenantvault/tenantvault/internal/embed"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/metrics"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// Server is one running vaultd. Open it, Run it, Close it.
type Server struct {
	Config Config
	Logger *slog.Logger

	adminToken string
	kafkaAuth  kafka.Auth // the vault's own principal on the brokers
	broker     *kafka.Embedded
	brokers    []string
	admin      *kafka.Admin
	sub        *kafka.Subscriber  // --ingest-consumer=kafka-go
	consumer   *kafka.Consumer    // --ingest-consumer=kgo, one node
	txn        *kafka.TxnConsumer // --ingest-consumer=kgo, a node of a cluster
	keystore   *keys.Keystore
	cluster    *clusterNode // nil: one node
	changelogs *kafka.Changelogs
	stores     *projections.Stores
	audit      *audit.Log
	vault      *vault.Vault
	runner     runner
	alerts     *alerts.Dispatcher
	alertPub   *kafka.Publisher
	cpKafka    *kafka.Publisher                  // --checkpoint-topic
	cpPub      atomic.Pointer[witness.Publisher] // set once the start-up check passed
	listener   net.Listener
	http       *http.Server
	metrics    *metrics.Registry
	metricsLn  net.Listener // --metrics-addr
	metricsSrv *http.Server
	served     atomic.Bool // Run started serving (and so closes the listeners)
	running    atomic.Bool
	unlock     func() error // releases the data-dir lock
}

// Open sets everything up: data directory, credentials, keys, broker,
// stores, audit log, vault, and the HTTP listener. On error, whatever was
// opened is closed. It first locks <data-dir>/LOCK (held until Close): a
// second vaultd on the same data directory fails with ErrDataDirLocked
// before it starts anything. It sets the process's umask to 077, so that
// the data dir's files are 0600 and its directories 0700 (see privateModes).
func (s *Server) Open(ctx context.Context) (err error) {
	s.Config.setDefaults()
	if err := s.Config.Validate(); err != nil {
		return err
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	cfg := &s.Config
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	// One vaultd per data dir: locked before anything starts.
	if s.unlock, err = lockDataDir(cfg.DataDir); err != nil {
		return err
	}
	if n, err := privateModes(cfg.DataDir); err != nil {
		return err
	} else if n > 0 {
		s.Logger.Warn("data dir: files or directories readable by others made private to the vault's user", "changed", n)
	}
	if s.adminToken, err = adminToken(cfg, s.Logger); err != nil {
		return err
	}
	if s.keystore, err = keys.Open(keys.Config{Dir: filepath.Join(cfg.DataDir, "keys"), MasterKeyURI: cfg.MasterKey, CacheTTL: cfg.KeyCacheTTL, Logger: s.Logger}); err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	if cfg.NodeID != "" && !s.keystore.PerTenantMaster() {
		return errors.New("--node-id needs a per-tenant master key ({tenant} in --master-key): destroying a tenant's own KMS key is what shreds it on every node")
	}
	if err := s.openKafka(); err != nil {
		return err
	}
	if s.stores, err = projections.OpenStores(projections.Config{Dir: filepath.Join(cfg.DataDir, "tenants"), MaxOpen: cfg.MaxOpenStores, Logger: s.Logger}); err != nil {
		return fmt.Errorf("tenant stores: %w", err)
	}
	s.metrics = metrics.New(metrics.Config{Known: s.tenantExists})
	if err := s.openAlerts(ctx); err != nil {
		return err
	}
	signer, err := s.keystore.AuditSigner(cfg.AuditOrigin)
	if err != nil {
		return fmt.Errorf("audit checkpoint signer: %w", err)
	}
	if s.audit, err = audit.Open(audit.Options{Dir: filepath.Join(cfg.DataDir, "audit"), Logger: s.Logger, OnFlagged: s.alerts.Notify, Signer: signer,
		OnCheckpoint: s.checkpointSigned}); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := s.openWitnessing(ctx, signer.VerifierKey()); err != nil {
		return err
	}
	if err := s.openVault(ctx, signer); err != nil {
		return err
	}
	if s.listener, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	metricsToken, err := readMetricsToken(cfg.MetricsTokenFile)
	if err != nil {
		return err
	}
	s.registerMetrics()
	opts := httpapi.Options{Ready: s.ready, Logger: s.Logger, Metrics: s.metrics, MetricsToken: metricsToken,
		AuthFailureLimit: cfg.AuthFailureLimit, AuthFailureInterval: max(cfg.AuditAggregateInterval, 0)}
	if cfg.NodeID != "" {
		opts.Router, opts.NodeID, opts.ClusterStatus = router{s}, cfg.NodeID, s.clusterStatus
	}
	api := httpapi.New(s.vault, opts)
	s.http = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	if cfg.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("metrics listen: %w", err)
		}
		s.metricsSrv = &http.Server{Handler: httpapi.MetricsEndpoint(s.metrics, metricsToken, s.Logger),
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	}
	return nil
}

// tenantExists bounds metric labels to the tenants that exist (before the
// vault is open, none).
func (s *Server) tenantExists(t string) bool {
	return s.vault != nil && s.vault.Exists(t)
}

// registerMetrics registers what the alerts and the stores count; the
// API registers the vault's counters, ingest and the vault report to
// s.metrics as they go.
func (s *Server) registerMetrics() {
	m := s.metrics
	m.CounterVecFunc("boundary_violations_total", `Attempts to cross a tenant boundary, by tenant ("other": a tenant that does not exist) and reason.`,
		[]string{"tenant", "reason"}, func() []metrics.Sample {
			vs := s.alerts.Violations()
			out := make([]metrics.Sample, len(vs))
			for i, v := range vs {
				out[i] = metrics.Sample{Labels: []string{v.Tenant, v.Violation}, Value: float64(v.Count)}
			}
			return out
		})
	for _, c := range []struct {
		name, help string
		f          func(alerts.SinkStats) uint64
	}{
		{"alerts_sent_total", "Alerts delivered to a sink.", func(st alerts.SinkStats) uint64 { return st.Sent }},
		{"alerts_failed_total", "Alerts a sink failed to deliver after its retries.", func(st alerts.SinkStats) uint64 { return st.Failed }},
		{"alerts_dropped_total", "Alerts not queued for a sink because its queue was full (logged, in the audit log, and noticed to the sink once it catches up).",
			func(st alerts.SinkStats) uint64 { return st.Dropped }},
	} {
		m.CounterVecFunc(c.name, c.help, []string{"sink"}, func() []metrics.Sample {
			sinks := s.alerts.Sinks()
			out := make([]metrics.Sample, len(sinks))
			for i, st := range sinks {
				out[i] = metrics.Sample{Labels: []string{st.Sink}, Value: float64(c.f(st))}
			}
			return out
		})
	}
	if l, ok := s.runner.(lagReporter); ok {
		s.registerLag(m, l)
	}
	m.GaugeFunc("open_stores", "Tenant stores open (at most --max-open-stores).", func() float64 { return float64(s.stores.OpenCount()) })
	m.GaugeFunc("tenants", "Tenants in the registry (active and shredded).", func() float64 { return float64(len(s.vault.Tenants())) })
}

// The embedders of --embedder are the vault's Embedder.
var (
	_ vault.Embedder = embed.Hash{}
	_ vault.Embedder = (*embed.Client)(nil)
)

// openEmbedder returns the embedder of --embedder (nil for none), with
// the API key of --embedder-key-file.
func openEmbedder(cfg *Config) (vault.Embedder, error) {
	var key string
	if cfg.EmbedderKeyFile != "" {
		b, err := os.ReadFile(cfg.EmbedderKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--embedder-key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	e, err := embed.Parse(cfg.Embedder, cfg.EmbedderModel, key)
	if err != nil || e == nil {
		return nil, err
	}
	return e, nil
}

// lagReporter is a runner that measures its group's lag (the rounds
// consumer; the kafka-go one does not).
type lagReporter interface{ Lag() ingest.LagReport }

// registerLag registers the ingest group's lag: per tenant (every active
// tenant has a series, 0 when caught up, so the label set is bounded by
// the registry), in total, and when it was last measured.
func (s *Server) registerLag(m *metrics.Registry, l lagReporter) {
	m.GaugeVecFunc("consumer_lag_records", "Records on a tenant's ingress topic that the vault has not committed yet, as last measured (every --ingest-lag-interval).",
		[]string{"tenant"}, func() []metrics.Sample { return lagSamples(l.Lag(), s.vault.Tenants(), s.vault.Exists) })
	m.GaugeFunc("consumer_lag_measured_timestamp_seconds", "When the ingest group's lag was last measured (Unix seconds; 0: not yet).", func() float64 {
		at := l.Lag().At
		if at.IsZero() {
			return 0
		}
		return float64(at.UnixNano()) / 1e9
	})
}

// lagSamples are the per-tenant lag series of report: one per tenant
// that exists, its partitions' lag added up (0 when none lags).
func lagSamples(report ingest.LagReport, tenants []events.TenantID, exists func(string) bool) []metrics.Sample {
	behind := make(map[events.TenantID]int64)
	for _, p := range report.Lagging {
		if t, err := events.TenantFromTopic(p.Topic); err == nil {
			behind[t] += p.Lag
		}
	}
	var out []metrics.Sample
	for _, t := range tenants {
		if exists(string(t)) {
			out = append(out, metrics.Sample{Labels: []string{string(t)}, Value: float64(behind[t])})
		}
	}
	return out
}

// readMetricsToken reads --metrics-token-file ("" when not set).
func readMetricsToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("--metrics-token-file %s: the token must be at least 16 characters", path)
	}
	return tok, nil
}

// openKafka sets up the Kafka side: the vault's own principal, the
// embedded broker (unless --brokers), and the admin client.
func (s *Server) openKafka() (err error) {
	cfg := &s.Config
	s.brokers = cfg.Brokers
	if s.kafkaAuth, err = vaultPrincipal(cfg, s.Logger); err != nil {
		return err
	}
	if len(s.brokers) == 0 {
		if err := s.startEmbedded(); err != nil {
			return err
		}
	} else if s.kafkaAuth.User == "" {
		s.Logger.Warn("no --kafka-sasl-user: the vault connects to the brokers anonymously and tenants get no producer credential; tenant isolation on the brokers is whatever their own ACLs enforce")
	}
	adminOpts := []kafka.AdminOption{kafka.WithTopicMaxMessageBytes(brokerMaxMessageBytes(cfg.MaxEventBytes))}
	if s.broker != nil {
		// kfake forgets the offsets of a partition left empty.
		adminOpts = append(adminOpts, kafka.WithLogEndMarkers())
	}
	if s.admin, err = kafka.NewAdmin(s.brokers, s.kafkaAuth, adminOpts...); err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	return nil
}

// brokerMaxMessageBytes is the largest record batch the brokers accept on
// the vault's topics (the embedded broker's message.max.bytes, and the
// max.message.bytes of every topic the vault creates): somewhat more than
// --max-event-bytes — a quarter more, and 64 KiB for the key, the headers
// and the batch's framing — so that an event a little over the limit
// reaches the vault and is quarantined too_large, with an audit record,
// instead of being refused at produce with no trace; a far larger one
// is refused by the broker (MESSAGE_TOO_LARGE).
func brokerMaxMessageBytes(maxEventBytes int) int {
	return maxEventBytes + maxEventBytes/4 + 64<<10
}

// startEmbedded starts the embedded broker, its superuser the vault's
// principal (with --kafka-auth=scram), TLS only with --kafka-tls-cert.
func (s *Server) startEmbedded() (err error) {
	cfg := &s.Config
	ec := kafka.EmbeddedConfig{Addr: cfg.KafkaAddr, DataDir: filepath.Join(cfg.DataDir, "broker"), Logger: s.Logger,
		MaxMessageBytes: brokerMaxMessageBytes(cfg.MaxEventBytes)}
	if cfg.IngressRetention == "keep" {
		// Records are kept: ordinary segments. (With deletion, one
		// batch a segment file lets deleted bytes leave the disk.)
		ec.SegmentBytes = 64 << 20
	}
	if cfg.KafkaAuth == "scram" {
		ec.Auth = &kafka.EmbeddedAuth{SuperUser: s.kafkaAuth.User, SuperPassword: s.kafkaAuth.Password}
	}
	if cfg.KafkaTLSCert != "" {
		if ec.TLS, err = kafka.ServerTLS(cfg.KafkaTLSCert, cfg.KafkaTLSKey); err != nil {
			return err
		}
	}
	s.broker, err = kafka.StartEmbedded(ec)
	if err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	s.brokers = []string{s.broker.Addr()}
	if cfg.KafkaAuth == "none" {
		s.Logger.Warn("embedded broker does NOT authenticate (--kafka-auth=none): any client that reaches it reads, writes and consumes every tenant's topic", "addr", s.broker.Addr())
	}
	s.Logger.Info("embedded Kafka-protocol broker listening (single node)", "addr", s.broker.Addr(), "auth", cfg.KafkaAuth, "tls", ec.TLS != nil)
	return nil
}

// openAlerts makes the alert dispatcher and its sinks: the log, the
// webhook (--alert-webhook) and the Kafka topic (--alert-topic, created).
func (s *Server) openAlerts(ctx context.Context) (err error) {
	cfg := &s.Config
	sinks := []alerts.Sink{alerts.LogSink{Logger: s.Logger}}
	if cfg.AlertWebhook != "" {
		sinks = append(sinks, alerts.WebhookSink{URL: cfg.AlertWebhook})
	}
	if cfg.AlertTopic != "-" {
		if err := s.admin.CreateTopic(ctx, cfg.AlertTopic, 1); err != nil {
			return fmt.Errorf("alert topic %s: %w", cfg.AlertTopic, err)
		}
		if s.alertPub, err = kafka.NewPublisher(kafka.PublisherConfig{Brokers: s.brokers, Auth: s.kafkaAuth, Logger: s.Logger}); err != nil {
			return fmt.Errorf("alert publisher: %w", err)
		}
		sinks = append(sinks, alerts.KafkaSink{Topic: cfg.AlertTopic, Publish: s.publishAlert})
	}
	s.alerts = alerts.New(alerts.Config{Sinks: sinks, Logger: s.Logger, Known: s.tenantExists})
	return nil
}

// openVault opens the vault over the keystore, stores, audit log and
// brokers, with its ingest, then finishes what a crash interrupted.
func (s *Server) openVault(ctx context.Context, signer note.Signer) (err error) {
	cfg := &s.Config
	embedder, err := openEmbedder(cfg)
	if err != nil {
		return err
	}
	var changelog vault.Changelog // nil: one node
	if cfg.NodeID != "" {
		if s.changelogs, err = kafka.NewChangelogs(s.brokers, s.kafkaAuth, s.admin); err != nil {
			return err
		}
		changelog = changelogs{s.changelogs}
	}
	if s.vault, err = vault.Open(vault.Config{
		DataDir: cfg.DataDir, Keys: vault.KeysOf(s.keystore), Stores: s.stores, Audit: s.audit, Topics: brokerAccess{s.admin},
		Producers: s.producers(), TopicIDs: brokerAccess{s.admin},
		Ingress:      ingress{s},
		RotateMaster: s.keystore.RotateMaster,
		SignReceipt: func(body []byte) ([]byte, error) {
			return audit.SignReceipt(body, signer)
		},
		// An external cluster may be shared with other vaults (a tenant
		// moved here resumes from records this vault skipped before the
		// import); the embedded broker is this vault's alone.
		KeepUnknownIngress: len(cfg.Brokers) > 0,
		Mover:              keyMover{s.keystore},
		SignNote: func(text string) ([]byte, error) {
			return note.Sign(&note.Note{Text: text}, signer)
		},
		OnTenantImported: s.tenantImported,
		AdminToken:       s.adminToken, MaxEventBytes: cfg.MaxEventBytes, Partitions: cfg.Partitions, Logger: s.Logger,
		MaxTenants:        cfg.MaxTenants,
		AggregateInterval: cfg.AuditAggregateInterval,
		Embedder:          embedder,
		OnIngested: func(t events.TenantID, applied, quarantined int) {
			s.metrics.Ingested(string(t), applied, quarantined)
		},
		Changelog: changelog,
		Replicate: func(ctx context.Context, t events.TenantID, entry []byte) error {
			if s.cluster == nil {
				return nil
			}
			return s.cluster.publish(ctx, t, entry)
		},
		ReplicateShred: func(ctx context.Context, t events.TenantID) error {
			if s.cluster == nil {
				return nil
			}
			return s.cluster.publishShred(ctx, t)
		},
		OnTenantCreated: func(t events.TenantID) {
			if s.runner != nil {
				s.runner.Add(events.TopicFor(t))
			}
		},
	}); err != nil {
		return err
	}
	if err := s.vault.EnsureBroker(ctx); err != nil {
		return err
	}
	// The cluster's directory before the consumer: the node knows every
	// tenant before it is assigned any.
	if err := s.openCluster(ctx); err != nil {
		return err
	}
	if err := s.openIngest(); err != nil {
		return err
	}
	// A shred that a crash interrupted is finished before anything else;
	// a rewrap that one interrupted resumes in the background.
	if err := s.vault.ResumeShreds(ctx); err != nil {
		return err
	}
	// Tenants frozen by an export, or moved away, are not consumed.
	if err := s.vault.ResumeMoves(ctx); err != nil {
		return err
	}
	if err := s.vault.ResumeRewraps(); err != nil {
		s.Logger.Error("resume rewraps", "err", err)
	}
	return nil
}

func (s *Server) ready() error {
	if !s.running.Load() {
		return errors.New("ingest not running")
	}
	if h, ok := s.runner.(interface{ Health() error }); ok {
		return h.Health()
	}
	return nil
}

// Run serves until ctx is done, then shuts down gracefully: the HTTP server
// drains, in-flight ingest batches commit, and Run returns.
func (s *Server) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.running.Store(true)
		defer s.running.Store(false)
		return s.runner.Run(gctx)
	})
	g.Go(func() error { return s.alerts.Run(gctx) })
	if p := s.cpPub.Load(); p != nil {
		g.Go(func() error { return p.Run(gctx) })
	}
	g.Go(func() error {
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	s.served.Store(true)
	if s.metricsSrv != nil {
		g.Go(func() error {
			if err := s.metricsSrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics http: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Config.ShutdownGrace)
		defer cancel()
		var errs []error
		if s.metricsSrv != nil {
			errs = append(errs, s.metricsSrv.Shutdown(sctx))
		}
		return errors.Join(append(errs, s.http.Shutdown(sctx))...)
	})
	s.Logger.Info("vaultd serving", "http", s.HTTPAddr(), "brokers", strings.Join(s.brokers, ","), "data_dir", s.Config.DataDir)
	return g.Wait()
}

// Close releases everything Open acquired, in reverse order. Call it after
// Run has returned.
func (s *Server) Close() error {
	var errs []error
	// s.cluster stays set: kgo's revoke callbacks may still read it
	// while the consumer closes; close is idempotent.
	s.cluster.close()
	if s.vault != nil {
		errs = append(errs, s.vault.Close())
	}
	if s.listener != nil && s.http == nil {
		errs = append(errs, s.listener.Close())
	}
	if s.metricsLn != nil && !s.served.Load() {
		errs = append(errs, s.metricsLn.Close())
	}
	if s.sub != nil {
		errs = append(errs, s.sub.Close())
	}
	if s.consumer != nil {
		errs = append(errs, s.consumer.Close())
	}
	if s.txn != nil {
		errs = append(errs, s.txn.Close())
	}
	if s.alertPub != nil {
		errs = append(errs, s.alertPub.Close())
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Close())
	}
	if s.stores != nil {
		errs = append(errs, s.stores.Close())
	}
	if s.audit != nil {
		errs = append(errs, s.audit.Close())
		s.flushCheckpoints() // the checkpoint Close signed
	}
	if s.cpKafka != nil {
		errs = append(errs, s.cpKafka.Close())
	}
	if s.keystore != nil {
		errs = append(errs, s.keystore.Close())
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Close())
	}
	if s.unlock != nil {
		errs = append(errs, s.unlock())
		s.unlock = nil
	}
	return errors.Join(errs...)
}

// publishAlert publishes one alert record to Kafka.
func (s *Server) publishAlert(ctx context.Context, topic string, key, value []byte) error {
	m := message.NewMessage(watermill.NewUUID(), value)
	m.Metadata.Set(kafka.MetadataKey, string(key))
	m.SetContext(ctx)
	return s.alertPub.Publish(topic, m)
}

// Alerts is the alert dispatcher (for its counters).
func (s *Server) Alerts() *alerts.Dispatcher { return s.alerts }

// HTTPAddr is the address the API listens on.
func (s *Server) HTTPAddr() string { return s.listener.Addr().String() }

// MetricsAddr is the address of the --metrics-addr listener ("" when
// there is none).
func (s *Server) MetricsAddr() string {
	if s.metricsLn == nil {
		return ""
	}
	return s.metricsLn.Addr().String()
}

// Brokers are the Kafka bootstrap addresses in use.
func (s *Server) Brokers() []string { return s.brokers }

// KafkaAuth is the vault's own principal on the brokers (on the embedded
// broker, its superuser): for in-process tools and tests.
func (s *Server) KafkaAuth() kafka.Auth { return s.kafkaAuth }

// AdminToken is the admin credential.
func (s *Server) AdminToken() string { return s.adminToken }

// Vault is the running vault.
func (s *Server) Vault() *vault.Vault { return s.vault }

// adminToken returns TENANTVAULT_ADMIN_TOKEN, or the token in
// <data-dir>/admin.token, created (0600) on first start.
func adminToken(cfg *Config, log *slog.Logger) (string, error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, nil
	}
	path := filepath.Join(cfg.DataDir, "admin.token")
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("admin token file %s is too short", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := "tva_" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), atomicfile.Options{NoClobber: true}); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	log.Info("admin token created", "path", path)
	return tok, nil
}

// runner consumes the tenant topics into the vault: ingest.RoundRunner
// (one consumer of every tenant topic, commit rounds) or ingest.Runner (a
// consumer group per topic, kafka-go).
type runner interface {
	Run(ctx context.Context) error
	Add(topic string)
	Remove(ctx context.Context, topic string) error
}

// openIngest makes the consumer and the runner of --ingest-consumer.
func (s *Server) openIngest() error {
	cfg := &s.Config
	keep := cfg.IngressRetention == "keep"
	var err error
	switch cfg.IngestConsumer {
	case "kafka-go":
		if s.sub, err = kafka.NewSubscriber(kafka.SubscriberConfig{Brokers: s.brokers, ConsumerGroup: cfg.ConsumerGroup, Auth: s.kafkaAuth, Logger: s.Logger}); err != nil {
			return fmt.Errorf("kafka subscriber: %w", err)
		}
		s.runner, err = ingest.New(ingest.Config{Subscriber: s.sub, Topics: s.admin, TopicIDs: s.admin, Vault: s.vault, Logger: s.Logger,
			Deleter: s.admin, KeepIngress: keep, ObserveBatch: s.metrics.ObserveBatch})
		return err
	default:
		if cfg.NodeID != "" {
			return s.openTxnIngest(keep)
		}
		if s.consumer, err = kafka.NewConsumer(kafka.ConsumerConfig{Brokers: s.brokers, Group: cfg.ConsumerGroup, Topics: events.TenantTopicShape,
			InstanceID: cfg.NodeID, OnAssigned: s.assigned, OnRevoked: s.released, OnLost: s.released, Auth: s.kafkaAuth, Logger: s.Logger}); err != nil {
			return fmt.Errorf("kafka consumer: %w", err)
		}
		s.runner, err = ingest.NewRoundRunner(ingest.RoundsConfig{Consumer: s.consumer, Vault: s.vault, Deleter: s.admin, KeepIngress: keep, Logger: s.Logger,
			StuckAfter: cfg.IngestStallAfter, LagInterval: cfg.IngestLagInterval, Lag: groupLag{s.admin, cfg.ConsumerGroup}, ObserveBatch: s.metrics.ObserveBatch})
		return err
	}
}

// groupLag is the ingest group's lag on the tenant topics.
type groupLag struct {
	admin *kafka.Admin
	group string
}

func (g groupLag) Lag(ctx context.Context) ([]kafka.PartitionLag, error) {
	return g.admin.GroupLag(ctx, g.group, func(topic string) bool {
		_, err := events.TenantFromTopic(topic)
		return err == nil
	})
}

// ingress is the Kafka side of a shred: the runner stops consuming the
// tenant's topic, the admin deletes it and its consumer group.
type ingress struct{ s *Server }

func (i ingress) Stop(ctx context.Context, t events.TenantID) error {
	return i.s.runner.Remove(ctx, events.TopicFor(t))
}

// Resume consumes a tenant's topic again after an export that did not
// lead to a move.
func (i ingress) Resume(_ context.Context, t events.TenantID) error {
	i.s.runner.Add(events.TopicFor(t))
	return nil
}

// seeker is a runner that can hold a topic and start it at given offsets.
type seeker interface {
	Hold(ctx context.Context, topic string) error
	Seek(ctx context.Context, topic string, last map[int]int64, partitions int) error
}

// Hold keeps an imported tenant's topic from being applied until
// tenantImported seeks it to the bundle's offsets.
func (i ingress) Hold(ctx context.Context, t events.TenantID) error {
	if sk, ok := i.s.runner.(seeker); ok {
		return sk.Hold(ctx, events.TopicFor(t))
	}
	return nil
}

// tenantImported consumes an imported tenant's topic from its bundle's
// offsets: where the source stopped applying, on the same brokers.
func (s *Server) tenantImported(t events.TenantID, offsets map[int]int64) {
	topic := events.TopicFor(t)
	sk, ok := s.runner.(seeker)
	if !ok {
		s.Logger.Warn("this ingest consumer cannot start an imported tenant at its bundle's offsets: it resumes at its group's", "tenant", t)
		s.runner.Add(topic)
		return
	}
	parts := s.Config.Partitions
	if starts, err := s.admin.LogStartOffsets(context.Background(), topic); err == nil && len(starts) > parts {
		parts = len(starts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sk.Seek(ctx, topic, offsets, parts); err != nil {
		s.Logger.Error("start an imported tenant at its bundle's offsets", "tenant", t, "err", err)
	}
}

func (i ingress) Purge(ctx context.Context, t events.TenantID) error {
	topic := events.TopicFor(t)
	if err := i.s.admin.DeleteTopic(ctx, topic); err != nil && !errors.Is(err, kafka.ErrTopicNotFound) {
		return err
	}
	return i.s.admin.DeleteGroup(ctx, i.s.Config.ConsumerGroup+"."+topic)
}

var (
	_ vault.Ingress           = ingress{}
	_ vault.IngressResumer    = ingress{}
	_ vault.IngressHolder     = ingress{}
	_ seeker                  = (*ingest.RoundRunner)(nil)
	_ vault.Topics            = (*kafka.Admin)(nil)
	_ ingest.Subscriber       = (*kafka.Subscriber)(nil)
	_ ingest.RoundConsumer    = (*kafka.Consumer)(nil)
	_ ingest.TxnRoundConsumer = (*kafka.TxnConsumer)(nil)
	_ ingest.Preparer         = (*vault.Vault)(nil)
	_ runner                  = (*ingest.Runner)(nil)
	_ runner                  = (*ingest.RoundRunner)(nil)
	_ ingest.LagReader        = groupLag{}
)
