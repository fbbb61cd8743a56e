package server

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// EnvPrefix prefixes every environment variable read by vaultd. Never
// VAULT_*: those belong to HashiCorp Vault.
const EnvPrefix = "TENANTVAULT_"

// Config is vaultd's configuration. The zero value plus setDefaults is the
// embedded single-node default.
type Config struct {
	DataDir       string        // default ./vault-data
	HTTPAddr      string        // default 127.0.0.1:8080
	KafkaAddr     string        // embedded broker listen address; default 127.0.0.1:9092
	Brokers       []string      // external Kafka cluster; empty = embedded broker
	MasterKey     string        // master key URI; default local://<data-dir>/master.key
	MaxEventBytes int           // default 1 MiB
	ConsumerGroup string        // default tenantvault
	AdminToken    string        // from TENANTVAULT_ADMIN_TOKEN only (never a flag: flags show in ps)
	LogLevel      string        // debug|info|warn|error; default info
	LogFormat     string        // text|json; default text
	ShutdownGrace time.Duration // default 10s
	// Partitions of each new tenant topic; default 1.
	Partitions int
	// AlertWebhook receives each boundary-violation alert as a JSON POST;
	// empty disables the webhook sink.
	AlertWebhook string
	// AlertTopic is the Kafka topic alerts are published to; default
	// vault.alerts; "-" disables the Kafka sink.
	AlertTopic string
	// AuditOrigin names the audit log in its signed checkpoints (the C2SP
	// origin line and the verifier key's name); default tenantvault/audit.
	// The signing key is bound to it: it cannot change for a data dir.
	AuditOrigin string
	// IngressRetention is "delete" (default): ingress records are deleted
	// from the broker once sealed; or "keep".
	IngressRetention string
	// KeyCacheTTL bounds how long an unwrapped tenant keyset stays in
	// memory; default 5m.
	KeyCacheTTL time.Duration
	// AuditAggregateInterval is the window over which the audit records
	// anyone can cause without a credential (failed authentications,
	// records on topics of unknown tenants) are aggregated per source
	// (vault.Config.AggregateInterval); default 10s, negative: one record
	// each.
	AuditAggregateInterval time.Duration
	// AuthFailureLimit is how many failed authentications one client IP
	// may have per AuditAggregateInterval before it is answered 429
	// (httpapi.Options.AuthFailureLimit); default 100, negative: no limit.
	AuthFailureLimit int
	// MaxOpenStores bounds the tenant stores held open (LRU); default 128.
	// Each open store costs ~5 MiB of heap; idle tenants cost nothing.
	MaxOpenStores int

	// KafkaAuth is "scram" (default): the embedded broker authenticates
	// every client (SASL/SCRAM) and authorizes every request by ACLs, and
	// each tenant gets a producer principal of its own; or "none": anyone
	// who reaches the broker may read, write and consume any tenant's topic
	// (development on a closed machine only).
	KafkaAuth string
	// KafkaSASLUser is the vault's own principal: with --brokers, the SCRAM
	// user it logs in as (empty: anonymous, and tenants get no producer
	// credential); on the embedded broker, its superuser (default
	// tenantvault).
	KafkaSASLUser string
	// KafkaSASLPasswordFile holds the vault principal's password. Required
	// with --brokers and a user; on the embedded broker the default is
	// <data-dir>/kafka.password, created (0600) on first start.
	KafkaSASLPasswordFile string
	// KafkaSASLMechanism is SCRAM-SHA-256 (default) or SCRAM-SHA-512.
	KafkaSASLMechanism string
	// KafkaTLSCert and KafkaTLSKey (PEM files) make the embedded broker's
	// listener TLS only.
	KafkaTLSCert, KafkaTLSKey string
	// KafkaTLSCA (PEM) is a CA the vault's Kafka clients trust besides the
	// system's; with --brokers it also turns TLS on.
	KafkaTLSCA string
	// KafkaTLS connects to --brokers over TLS (system roots and KafkaTLSCA).
	KafkaTLS bool
	// IngestConsumer is "kgo" (default): one consumer-group membership
	// (group ConsumerGroup) for every tenant topic, in commit rounds; or
	// "kafka-go": a consumer group per tenant topic (ConsumerGroup.<topic>),
	// the earlier design, kept for comparison.
	IngestConsumer string
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./vault-data"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.KafkaAddr == "" {
		c.KafkaAddr = "127.0.0.1:9092"
	}
	if c.MasterKey == "" {
		c.MasterKey = "local://" + strings.TrimSuffix(c.DataDir, "/") + "/master.key"
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = events.DefaultMaxEventBytes
	}
	if c.ConsumerGroup == "" {
		c.ConsumerGroup = "tenantvault"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.IngressRetention == "" {
		c.IngressRetention = "delete"
	}
	if c.KeyCacheTTL == 0 {
		c.KeyCacheTTL = 5 * time.Minute
	}
	if c.AuditOrigin == "" {
		c.AuditOrigin = "tenantvault/audit"
	}
	if c.AlertTopic == "" {
		c.AlertTopic = "vault.alerts"
	}
	if c.MaxOpenStores == 0 {
		c.MaxOpenStores = 128
	}
	if c.AuditAggregateInterval == 0 {
		c.AuditAggregateInterval = vault.DefaultAggregateInterval
	}
	if c.AuthFailureLimit == 0 {
		c.AuthFailureLimit = httpapi.DefaultAuthFailureLimit
	}
	if c.KafkaAuth == "" {
		c.KafkaAuth = "scram"
	}
	if c.IngestConsumer == "" {
		c.IngestConsumer = "kgo"
	}
	if c.KafkaSASLMechanism == "" {
		c.KafkaSASLMechanism = "SCRAM-SHA-256"
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxEventBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-event-bytes %d is below 1024", c.MaxEventBytes))
	}
	if !strings.Contains(c.MasterKey, "://") {
		errs = append(errs, fmt.Errorf("--master-key %q is not a URI (want local://PATH)", c.MasterKey))
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("--brokers: %q is not host:port", b))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New(EnvPrefix+"ADMIN_TOKEN must be at least 16 characters"))
	}
	if c.AlertWebhook != "" && !strings.HasPrefix(c.AlertWebhook, "http://") && !strings.HasPrefix(c.AlertWebhook, "https://") {
		errs = append(errs, fmt.Errorf("--alert-webhook %q is not an http(s) URL", c.AlertWebhook))
	}
	if c.IngressRetention != "delete" && c.IngressRetention != "keep" {
		errs = append(errs, fmt.Errorf("--ingress-retention %q: want delete or keep", c.IngressRetention))
	}
	if c.KeyCacheTTL < 0 {
		errs = append(errs, errors.New("--key-cache-ttl must not be negative"))
	}
	if c.MaxOpenStores < 1 {
		errs = append(errs, errors.New("--max-open-stores must be at least 1"))
	}
	if c.Partitions < 1 {
		errs = append(errs, errors.New("--partitions must be at least 1"))
	}
	if c.IngestConsumer != "kgo" && c.IngestConsumer != "kafka-go" {
		errs = append(errs, fmt.Errorf("--ingest-consumer %q: want kgo or kafka-go", c.IngestConsumer))
	}
	switch c.KafkaAuth {
	case "scram", "none":
	default:
		errs = append(errs, fmt.Errorf("--kafka-auth %q: want scram or none", c.KafkaAuth))
	}
	if c.KafkaSASLMechanism != "SCRAM-SHA-256" && c.KafkaSASLMechanism != "SCRAM-SHA-512" {
		errs = append(errs, fmt.Errorf("--kafka-sasl-mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", c.KafkaSASLMechanism))
	}
	if len(c.Brokers) > 0 && c.KafkaSASLUser != "" && c.KafkaSASLPasswordFile == "" {
		errs = append(errs, errors.New("--kafka-sasl-user needs --kafka-sasl-password-file"))
	}
	if (c.KafkaTLSCert == "") != (c.KafkaTLSKey == "") {
		errs = append(errs, errors.New("--kafka-tls-cert and --kafka-tls-key go together"))
	}
	if c.KafkaTLSCert != "" && len(c.Brokers) > 0 {
		errs = append(errs, errors.New("--kafka-tls-cert/--kafka-tls-key serve the embedded broker: not with --brokers (use --kafka-tls, --kafka-tls-ca)"))
	}
	return errors.Join(errs...)
}

// ParseFlags fills c from args, each flag falling back to its
// TENANTVAULT_* environment variable (flag > environment > default).
func (c *Config) ParseFlags(name string, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	env := func(flagName, def string) string {
		if v := getenv(EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	var envErrs []error
	envInt := func(flagName string, def int) int {
		if v := env(flagName, ""); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s%s=%q is not an integer", EnvPrefix, strings.ToUpper(strings.ReplaceAll(flagName, "-", "_")), v))
				return def
			}
			return n
		}
		return def
	}
	var brokers string
	fs.StringVar(&c.DataDir, "data-dir", env("data-dir", "./vault-data"), "data directory (env TENANTVAULT_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("http-addr", "127.0.0.1:8080"), "HTTP API listen address (env TENANTVAULT_HTTP_ADDR)")
	fs.StringVar(&c.KafkaAddr, "kafka-addr", env("kafka-addr", "127.0.0.1:9092"), "embedded Kafka-protocol broker listen address, used when --brokers is empty (env TENANTVAULT_KAFKA_ADDR)")
	fs.StringVar(&brokers, "brokers", env("brokers", ""), "external Kafka brokers host:port,...; empty runs the embedded broker (env TENANTVAULT_BROKERS)")
	fs.StringVar(&c.MasterKey, "master-key", env("master-key", ""), "master key (KEK) URI: local://PATH (development only; default local://<data-dir>/master.key), hcvault://HOST/MOUNT/keys/NAME, aws-kms://ARN, gcp-kms://projects/.../cryptoKeys/K; {tenant} in the URI gives each tenant its own KMS key (env TENANTVAULT_MASTER_KEY)")
	fs.IntVar(&c.MaxEventBytes, "max-event-bytes", envInt("max-event-bytes", events.DefaultMaxEventBytes), "largest accepted event, in bytes (env TENANTVAULT_MAX_EVENT_BYTES)")
	fs.StringVar(&c.ConsumerGroup, "consumer-group", env("consumer-group", "tenantvault"), "Kafka consumer group of every tenant topic (vaultd nodes in one group split the tenants); with --ingest-consumer=kafka-go the prefix of one group per topic (env TENANTVAULT_CONSUMER_GROUP)")
	fs.StringVar(&c.IngestConsumer, "ingest-consumer", env("ingest-consumer", "kgo"), "kgo: one consumer of every tenant topic, in commit rounds; kafka-go: a consumer group per tenant topic (the earlier design, for comparison) (env TENANTVAULT_INGEST_CONSUMER)")
	fs.IntVar(&c.Partitions, "partitions", envInt("partitions", 1), "partitions of each new tenant topic (env TENANTVAULT_PARTITIONS)")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", env("alert-webhook", ""), "URL that receives each boundary-violation alert as a JSON POST (env TENANTVAULT_ALERT_WEBHOOK)")
	fs.StringVar(&c.AlertTopic, "alert-topic", env("alert-topic", "vault.alerts"), "Kafka topic of boundary-violation alerts; - disables (env TENANTVAULT_ALERT_TOPIC)")
	fs.StringVar(&c.AuditOrigin, "audit-origin", env("audit-origin", "tenantvault/audit"), "origin (log name) of the audit log's signed checkpoints; fixed for a data dir (env TENANTVAULT_AUDIT_ORIGIN)")
	fs.StringVar(&c.IngressRetention, "ingress-retention", env("ingress-retention", "delete"), "delete ingress records from the broker once sealed (delete), or keep them (keep) (env TENANTVAULT_INGRESS_RETENTION)")
	var ttl string
	fs.StringVar(&ttl, "key-cache-ttl", env("key-cache-ttl", "5m"), "how long an unwrapped tenant keyset stays in memory (env TENANTVAULT_KEY_CACHE_TTL)")
	var aggregate string
	fs.StringVar(&aggregate, "audit-aggregate-interval", env("audit-aggregate-interval", vault.DefaultAggregateInterval.String()), "window over which audit records of failed authentications and of records on unknown tenants' topics are aggregated per source (client IP, topic); negative: one record each (env TENANTVAULT_AUDIT_AGGREGATE_INTERVAL)")
	fs.IntVar(&c.AuthFailureLimit, "auth-failure-limit", envInt("auth-failure-limit", httpapi.DefaultAuthFailureLimit), "failed authentications one client IP may have per --audit-aggregate-interval before it is answered 429; negative: no limit (env TENANTVAULT_AUTH_FAILURE_LIMIT)")
	fs.IntVar(&c.MaxOpenStores, "max-open-stores", envInt("max-open-stores", 128), "tenant stores held open at once, least recently used closed first (env TENANTVAULT_MAX_OPEN_STORES)")
	fs.StringVar(&c.KafkaAuth, "kafka-auth", env("kafka-auth", "scram"), "embedded broker: scram (authenticate every client, ACLs, a producer principal per tenant) or none (anyone may read any tenant's topic: closed development machines only) (env TENANTVAULT_KAFKA_AUTH)")
	fs.StringVar(&c.KafkaSASLUser, "kafka-sasl-user", env("kafka-sasl-user", ""), "the vault's own Kafka principal (SCRAM user); with --brokers, empty is anonymous; embedded default tenantvault (env TENANTVAULT_KAFKA_SASL_USER)")
	fs.StringVar(&c.KafkaSASLPasswordFile, "kafka-sasl-password-file", env("kafka-sasl-password-file", ""), "file holding the vault principal's password; embedded default <data-dir>/kafka.password, created on first start (env TENANTVAULT_KAFKA_SASL_PASSWORD_FILE)")
	fs.StringVar(&c.KafkaSASLMechanism, "kafka-sasl-mechanism", env("kafka-sasl-mechanism", "SCRAM-SHA-256"), "SCRAM-SHA-256 or SCRAM-SHA-512 (env TENANTVAULT_KAFKA_SASL_MECHANISM)")
	fs.StringVar(&c.KafkaTLSCert, "kafka-tls-cert", env("kafka-tls-cert", ""), "PEM certificate: the embedded broker serves TLS only (env TENANTVAULT_KAFKA_TLS_CERT)")
	fs.StringVar(&c.KafkaTLSKey, "kafka-tls-key", env("kafka-tls-key", ""), "PEM key of --kafka-tls-cert (env TENANTVAULT_KAFKA_TLS_KEY)")
	fs.StringVar(&c.KafkaTLSCA, "kafka-tls-ca", env("kafka-tls-ca", ""), "PEM CA the vault's Kafka clients trust besides the system's; with --brokers it turns TLS on (env TENANTVAULT_KAFKA_TLS_CA)")
	kafkaTLS, err := strconv.ParseBool(env("kafka-tls", "false"))
	if err != nil {
		envErrs = append(envErrs, fmt.Errorf("%sKAFKA_TLS=%q is not a boolean", EnvPrefix, env("kafka-tls", "")))
	}
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", kafkaTLS, "connect to --brokers over TLS (env TENANTVAULT_KAFKA_TLS)")
	fs.StringVar(&c.LogLevel, "log-level", env("log-level", "info"), "debug, info, warn or error (env TENANTVAULT_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("log-format", "text"), "text or json (env TENANTVAULT_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if d, err := time.ParseDuration(aggregate); err != nil {
		envErrs = append(envErrs, fmt.Errorf("--audit-aggregate-interval %q is not a duration", aggregate))
	} else {
		c.AuditAggregateInterval = d
	}
	if d, err := time.ParseDuration(ttl); err != nil {
		envErrs = append(envErrs, fmt.Errorf("--key-cache-ttl %q is not a duration", ttl))
	} else {
		c.KeyCacheTTL = d
	}
	c.Brokers = nil
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	c.AdminToken = getenv(EnvPrefix + "ADMIN_TOKEN")
	c.setDefaults()
	return errors.Join(append(envErrs, c.Validate())...)
}
