package server

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/audit/alerts"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/embed"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// EnvPrefix prefixes every environment variable read by vaultd. Never
// VAULT_*: those belong to HashiCorp Vault.
const EnvPrefix = "TENANTVAULT_"

// Config is vaultd's configuration. The zero value plus setDefaults is the
// embedded single-node default. Every default is written once, in
// DefaultConfig (and, for the few derived from another setting,
// DefaultMasterKey, DefaultKafkaPasswordFile and DefaultEmbeddedSASLUser).
type Config struct {
	DataDir       string
	HTTPAddr      string
	KafkaAddr     string        // embedded broker listen address
	Brokers       []string      // external Kafka cluster; empty = embedded broker
	MasterKey     string        // master key URI; default DefaultMasterKey(DataDir)
	MaxEventBytes int           // largest accepted event
	ConsumerGroup string        // of every tenant topic
	AdminToken    string        // from TENANTVAULT_ADMIN_TOKEN only (never a flag: flags show in ps)
	LogLevel      string        // debug|info|warn|error
	LogFormat     string        // text|json
	ShutdownGrace time.Duration // how long Run waits for the HTTP server to drain
	// Partitions of each new tenant topic.
	Partitions int
	// AlertWebhook receives each boundary-violation alert as a JSON POST;
	// empty disables the webhook sink.
	AlertWebhook string
	// AlertTopic is the Kafka topic alerts are published to; "-" disables
	// the Kafka sink.
	AlertTopic string
	// AuditOrigin names the audit log in its signed checkpoints (the C2SP
	// origin line and the verifier key's name). The signing key is bound to it: it cannot change for a data dir.
	AuditOrigin string
	// IngressRetention is "delete": ingress records are deleted from the
	// broker once sealed; or "keep".
	IngressRetention string
	// KeyCacheTTL bounds how long an unwrapped tenant keyset stays in
	// memory.
	KeyCacheTTL time.Duration
	// AuditAggregateInterval is the window over which the audit records
	// anyone can cause without a credential (failed authentications,
	// records on topics of unknown tenants) are aggregated per source
	// (vault.Config.AggregateInterval); negative: one record each.
	AuditAggregateInterval time.Duration
	// AuthFailureLimit is how many failed authentications one client IP
	// may have per AuditAggregateInterval before it is answered 429
	// (httpapi.Options.AuthFailureLimit); negative: no limit.
	AuthFailureLimit int
	// MaxOpenStores bounds the tenant stores held open (LRU).
	// Each open store costs ~5 MiB of heap; idle tenants cost nothing.
	MaxOpenStores int
	// MaxTenants bounds the tenants that exist at once (vault.Config.MaxTenants):
	// a create past it answers 409 and is audited.
	MaxTenants int

	// KafkaAuth is "scram": the embedded broker authenticates
	// every client (SASL/SCRAM) and authorizes every request by ACLs, and
	// each tenant gets a producer principal of its own; or "none": anyone
	// who reaches the broker may read, write and consume any tenant's topic
	// (development on a closed machine only).
	KafkaAuth string
	// KafkaSASLUser is the vault's own principal: with --brokers, the SCRAM
	// user it logs in as (empty: anonymous, and tenants get no producer
	// credential); on the embedded broker, its superuser (default
	// DefaultEmbeddedSASLUser).
	KafkaSASLUser string
	// KafkaSASLPasswordFile holds the vault principal's password. Required
	// with --brokers and a user; on the embedded broker the default is
	// DefaultKafkaPasswordFile(DataDir), created (0600) on first start.
	KafkaSASLPasswordFile string
	// KafkaSASLMechanism is SCRAM-SHA-256 or SCRAM-SHA-512.
	KafkaSASLMechanism string
	// KafkaTLSCert and KafkaTLSKey (PEM files) make the embedded broker's
	// listener TLS only.
	KafkaTLSCert, KafkaTLSKey string
	// KafkaTLSCA (PEM) is a CA the vault's Kafka clients trust besides the
	// system's; with --brokers it also turns TLS on.
	KafkaTLSCA string
	// KafkaTLS connects to --brokers over TLS (system roots and KafkaTLSCA).
	KafkaTLS bool
	// IngestConsumer is "kgo": one consumer-group membership
	// (group ConsumerGroup) for every tenant topic, in commit rounds; or
	// "kafka-go": a consumer group per tenant topic (ConsumerGroup.<topic>),
	// the earlier design, kept for comparison.
	IngestConsumer string
	// NodeID names this node of a cluster (several vaultd on one Kafka
	// cluster, --brokers); "" runs one node. AdvertiseAddr is the base URL
	// the other nodes reach this one at, to proxy requests for the tenants
	// it holds.
	NodeID, AdvertiseAddr string
	// IngestStallAfter is how long a tenant partition may lag behind its
	// end with no progress (its committed offset unmoved), or keep failing,
	// before /readyz fails naming it (--ingest-consumer=kgo; the lag is
	// measured every IngestLagInterval).
	IngestStallAfter time.Duration
	// IngestLagInterval is how often the ingest group's lag is measured
	// (three Kafka requests: /readyz and tenantvault_consumer_lag_records
	// read the last measurement); default 10s.
	IngestLagInterval time.Duration

	// CheckpointTopic is the Kafka topic (on the same brokers) every signed
	// audit checkpoint is published to, with the witnesses' cosignatures;
	// default vault.checkpoints; "-" disables. vaultd creates it, and at
	// start refuses a local audit log that does not extend its last record.
	CheckpointTopic string
	// Witnesses are the URLs of C2SP tlog-witnesses every signed audit
	// checkpoint is sent to (POST <url>/add-checkpoint); at start vaultd
	// refuses a local audit log that is not consistent with what they
	// cosigned.
	Witnesses []string

	// MetricsAddr, when set, is a listener of its own that serves GET
	// /metrics only (to MetricsTokenFile's token when set, else to anyone
	// who reaches it: bind it to a private interface). Empty: no such
	// listener. /metrics on the API listener answers only the admin and
	// the metrics token either way.
	MetricsAddr string
	// MetricsTokenFile holds a bearer token (at least 16 characters)
	// that may read /metrics and nothing else.
	MetricsTokenFile string

	// Embedder computes embeddings of documents published without one and
	// of searches by text: an http(s) URL of an OpenAI-compatible
	// /v1/embeddings endpoint, or hash:N (the deterministic hashing
	// embedder of N dimensions, for tests and demos). Empty: none.
	Embedder string
	// EmbedderModel is the model named in embeddings requests.
	EmbedderModel string
	// EmbedderKeyFile holds the API key sent to the embedder (bearer).
	EmbedderKeyFile string
}

// Defaults that depend on other settings, and the embedded broker's own.
const (
	// DefaultEmbeddedSASLUser is the vault's principal (the superuser) on
	// the embedded broker when KafkaSASLUser is empty.
	DefaultEmbeddedSASLUser = "tenantvault"
	// dataDirPlaceholder stands for the data dir in the help of flags whose
	// default derives from it.
	dataDirPlaceholder = "<data-dir>"
)

// DefaultConfig is the configuration of a vaultd given no flag and no
// environment, but for the defaults derived from other settings
// (DefaultMasterKey, DefaultKafkaPasswordFile, DefaultEmbeddedSASLUser). It
// is the one place defaults are written: setDefaults fills a Config's zero
// fields from it and ParseFlags gives its values as the flags' defaults,
// which README.md's vaultd table documents (TestREADMEFlags compares them).
func DefaultConfig() Config {
	return Config{
		DataDir:                "./vault-data",
		HTTPAddr:               "127.0.0.1:8080",
		KafkaAddr:              "127.0.0.1:9092",
		MaxEventBytes:          events.DefaultMaxEventBytes,
		ConsumerGroup:          "tenantvault",
		LogLevel:               "info",
		LogFormat:              "text",
		ShutdownGrace:          10 * time.Second,
		Partitions:             1,
		AlertTopic:             alerts.DefaultAlertTopic,
		AuditOrigin:            "tenantvault/audit",
		IngressRetention:       "delete",
		KeyCacheTTL:            5 * time.Minute,
		MaxOpenStores:          128,
		MaxTenants:             10000,
		AuditAggregateInterval: vault.DefaultAggregateInterval,
		AuthFailureLimit:       httpapi.DefaultAuthFailureLimit,
		KafkaAuth:              "scram",
		KafkaSASLMechanism:     "SCRAM-SHA-256",
		IngestConsumer:         "kgo",
		IngestStallAfter:       time.Minute,
		IngestLagInterval:      10 * time.Second,
		CheckpointTopic:        "vault.checkpoints",
	}
}

// DefaultMasterKey is the master key URI of a data dir given none: a local
// key file in it (development only).
func DefaultMasterKey(dataDir string) string {
	return "local://" + strings.TrimSuffix(dataDir, "/") + "/master.key"
}

// DefaultKafkaPasswordFile is the file of the vault's password on the
// embedded broker given none, created on first start.
func DefaultKafkaPasswordFile(dataDir string) string {
	return filepath.Join(dataDir, "kafka.password")
}

// setDefaults fills every zero field of c that has a default: those of
// DefaultConfig, then those derived from them.
func (c *Config) setDefaults() {
	cv, dv := reflect.ValueOf(c).Elem(), reflect.ValueOf(DefaultConfig())
	for i := range cv.NumField() {
		if f := cv.Field(i); f.IsZero() {
			f.Set(dv.Field(i))
		}
	}
	if c.MasterKey == "" {
		c.MasterKey = DefaultMasterKey(c.DataDir)
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
	if c.MaxTenants < 1 {
		errs = append(errs, errors.New("--max-tenants must be at least 1"))
	}
	if c.Partitions < 1 {
		errs = append(errs, errors.New("--partitions must be at least 1"))
	}
	if c.IngestStallAfter <= 0 {
		errs = append(errs, errors.New("--ingest-stall-after must be positive"))
	}
	if c.IngestLagInterval <= 0 {
		errs = append(errs, errors.New("--ingest-lag-interval must be positive"))
	}
	if c.IngestConsumer != "kgo" && c.IngestConsumer != "kafka-go" {
		errs = append(errs, fmt.Errorf("--ingest-consumer %q: want kgo or kafka-go", c.IngestConsumer))
	}
	errs = append(errs, c.validateCluster()...)
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
	for _, w := range c.Witnesses {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--witness %q is not an http(s) URL", redactedURL(w)))
		}
	}
	if _, err := embed.Parse(c.Embedder, c.EmbedderModel, ""); err != nil {
		errs = append(errs, fmt.Errorf("--embedder: %w", err))
	}
	if c.CheckpointTopic != "-" && c.CheckpointTopic == c.AlertTopic {
		errs = append(errs, fmt.Errorf("--checkpoint-topic and --alert-topic are both %q", c.CheckpointTopic))
	}
	return errors.Join(errs...)
}

// redactedURL is s without its user info, for errors.
func redactedURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// ParseFlags fills c from args, each flag falling back to its
// TENANTVAULT_* environment variable (flag > environment > default).
func (c *Config) ParseFlags(name string, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	fs, brokers, envErrs := c.flagSet(name, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.Brokers = nil
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	c.AdminToken = getenv(EnvPrefix + "ADMIN_TOKEN")
	c.setDefaults()
	return errors.Join(append(*envErrs, c.Validate())...)
}

// flagSet defines vaultd's flags, bound to c: each flag's default is
// DefaultConfig's, or its environment variable's value when set. It
// returns the flag set, the --brokers list as given, and the problems of
// environment values that are not of their flag's type (filled in as the
// flags are defined).
func (c *Config) flagSet(name string, getenv func(string) string) (*flag.FlagSet, *string, *[]error) {
	f := &envFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError), getenv: getenv}
	d := DefaultConfig()
	var brokers string
	f.String(&c.DataDir, "data-dir", d.DataDir, "data directory")
	f.String(&c.HTTPAddr, "http-addr", d.HTTPAddr, "HTTP API listen address")
	f.String(&c.KafkaAddr, "kafka-addr", d.KafkaAddr, "embedded Kafka-protocol broker listen address, used when --brokers is empty")
	f.String(&brokers, "brokers", "", "external Kafka brokers host:port,...; empty runs the embedded broker")
	f.String(&c.MasterKey, "master-key", d.MasterKey, "master key (KEK) URI: local://PATH (development only; default "+DefaultMasterKey(dataDirPlaceholder)+"), hcvault://HOST/MOUNT/keys/NAME, aws-kms://ARN, gcp-kms://projects/.../cryptoKeys/K; {tenant} in the URI gives each tenant its own KMS key")
	f.Int(&c.MaxEventBytes, "max-event-bytes", d.MaxEventBytes, "largest accepted event, in bytes")
	f.String(&c.NodeID, "node-id", d.NodeID, "this node's id in a cluster of vaultd on one Kafka cluster (needs --brokers, --advertise-addr and a per-tenant {tenant} master key); empty: one node")
	f.String(&c.AdvertiseAddr, "advertise-addr", d.AdvertiseAddr, "with --node-id: the base URL (http(s)://host:port) other nodes proxy this node's tenants' requests to")
	f.String(&c.ConsumerGroup, "consumer-group", d.ConsumerGroup, "Kafka consumer group of every tenant topic (vaultd nodes in one group split the tenants); with --ingest-consumer=kafka-go the prefix of one group per topic")
	f.String(&c.IngestConsumer, "ingest-consumer", d.IngestConsumer, "kgo: one consumer of every tenant topic, in commit rounds; kafka-go: a consumer group per tenant topic (the earlier design, for comparison)")
	f.Duration(&c.IngestStallAfter, "ingest-stall-after", d.IngestStallAfter, "how long a tenant partition may lag with no progress, or keep failing, before /readyz fails naming it (kgo ingest; lag measured every --ingest-lag-interval)")
	f.Duration(&c.IngestLagInterval, "ingest-lag-interval", d.IngestLagInterval, "how often the ingest group's lag is measured, for /readyz and tenantvault_consumer_lag_records (kgo ingest)")
	f.Int(&c.Partitions, "partitions", d.Partitions, "partitions of each new tenant topic")
	f.String(&c.AlertWebhook, "alert-webhook", d.AlertWebhook, "URL that receives each boundary-violation alert as a JSON POST")
	f.String(&c.AlertTopic, "alert-topic", d.AlertTopic, "Kafka topic of boundary-violation alerts; - disables")
	f.String(&c.AuditOrigin, "audit-origin", d.AuditOrigin, "origin (log name) of the audit log's signed checkpoints; fixed for a data dir")
	f.String(&c.IngressRetention, "ingress-retention", d.IngressRetention, "delete ingress records from the broker once sealed (delete), or keep them (keep)")
	f.Duration(&c.KeyCacheTTL, "key-cache-ttl", d.KeyCacheTTL, "how long an unwrapped tenant keyset stays in memory")
	f.Duration(&c.AuditAggregateInterval, "audit-aggregate-interval", d.AuditAggregateInterval, "window over which audit records of failed authentications and of records on unknown tenants' topics are aggregated per source (client IP, topic); negative: one record each")
	f.Int(&c.AuthFailureLimit, "auth-failure-limit", d.AuthFailureLimit, "failed authentications one client IP may have per --audit-aggregate-interval before it is answered 429; negative: no limit")
	f.Int(&c.MaxOpenStores, "max-open-stores", d.MaxOpenStores, "tenant stores held open at once, least recently used closed first")
	f.Int(&c.MaxTenants, "max-tenants", d.MaxTenants, "tenants that may exist at once (shredded ones do not count); a create past it answers 409")
	f.String(&c.KafkaAuth, "kafka-auth", d.KafkaAuth, "embedded broker: scram (authenticate every client, ACLs, a producer principal per tenant) or none (anyone may read any tenant's topic: closed development machines only)")
	f.String(&c.KafkaSASLUser, "kafka-sasl-user", d.KafkaSASLUser, "the vault's own Kafka principal (SCRAM user); with --brokers, empty is anonymous; embedded default "+DefaultEmbeddedSASLUser)
	f.String(&c.KafkaSASLPasswordFile, "kafka-sasl-password-file", d.KafkaSASLPasswordFile, "file holding the vault principal's password; embedded default "+DefaultKafkaPasswordFile(dataDirPlaceholder)+", created on first start")
	f.String(&c.KafkaSASLMechanism, "kafka-sasl-mechanism", d.KafkaSASLMechanism, "SCRAM-SHA-256 or SCRAM-SHA-512")
	f.String(&c.KafkaTLSCert, "kafka-tls-cert", d.KafkaTLSCert, "PEM certificate: the embedded broker serves TLS only")
	f.String(&c.KafkaTLSKey, "kafka-tls-key", d.KafkaTLSKey, "PEM key of --kafka-tls-cert")
	f.String(&c.KafkaTLSCA, "kafka-tls-ca", d.KafkaTLSCA, "PEM CA the vault's Kafka clients trust besides the system's; with --brokers it turns TLS on")
	f.Bool(&c.KafkaTLS, "kafka-tls", d.KafkaTLS, "connect to --brokers over TLS")
	f.String(&c.CheckpointTopic, "checkpoint-topic", d.CheckpointTopic, "Kafka topic every signed audit checkpoint is published to (only the vault's principal may write it); - disables")
	f.List(&c.Witnesses, "witness", "URL of a C2SP tlog-witness every signed audit checkpoint is sent to; repeatable")
	f.String(&c.MetricsAddr, "metrics-addr", d.MetricsAddr, "listen address of a listener serving GET /metrics only (to the metrics token if --metrics-token-file is set, else to anyone who reaches it); empty: none")
	f.String(&c.MetricsTokenFile, "metrics-token-file", d.MetricsTokenFile, "file holding a bearer token that may read /metrics and nothing else (on the API listener, /metrics otherwise needs the admin token)")
	f.String(&c.Embedder, "embedder", d.Embedder, "embeddings of documents without one and of text searches: URL of an OpenAI-compatible /v1/embeddings endpoint (tenant text is sent to it), or hash:N (a deterministic hashing embedder, tests and demos); empty: none")
	f.String(&c.EmbedderModel, "embedder-model", d.EmbedderModel, "model named in the embeddings requests")
	f.String(&c.EmbedderKeyFile, "embedder-key-file", d.EmbedderKeyFile, "file holding the API key sent to --embedder (bearer)")
	f.String(&c.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	f.String(&c.LogFormat, "log-format", d.LogFormat, "text or json")
	return f.fs, &brokers, &f.errs
}

// EnvName is the environment variable of flag name: TENANTVAULT_ and the
// name in upper case, - as _.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envFlags defines flags whose default is their environment variable's
// value when it is set, and whose help names the variable.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error // environment values that are not of their flag's type
}

// env is the value of flag name's environment variable, and whether it is
// set (not empty).
func (f *envFlags) env(name string) (string, bool) {
	v := f.getenv(EnvName(name))
	return v, v != ""
}

func (f *envFlags) usage(name, usage string) string {
	return usage + " (env " + EnvName(name) + ")"
}

// bad records that flag name's environment value v is not a want.
func (f *envFlags) bad(name, v, want string) {
	f.errs = append(f.errs, fmt.Errorf("%s=%q is not %s", EnvName(name), v, want))
}

// List defines a repeatable flag: its values, in order, replace the
// environment's comma-separated list.
func (f *envFlags) List(p *[]string, name, usage string) {
	*p = nil
	if v, ok := f.env(name); ok {
		for w := range strings.FieldsSeq(strings.ReplaceAll(v, ",", " ")) {
			*p = append(*p, w)
		}
	}
	fromEnv := true
	f.fs.Func(name, usage+" (env "+EnvName(name)+", comma-separated)", func(v string) error {
		if fromEnv { // a flag replaces the environment's list
			*p, fromEnv = nil, false
		}
		*p = append(*p, v)
		return nil
	})
}

func (f *envFlags) String(p *string, name, def, usage string) {
	if v, ok := f.env(name); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, f.usage(name, usage))
}

func (f *envFlags) Int(p *int, name string, def int, usage string) {
	if v, ok := f.env(name); ok {
		if n, err := strconv.Atoi(v); err != nil {
			f.bad(name, v, "an integer")
		} else {
			def = n
		}
	}
	f.fs.IntVar(p, name, def, f.usage(name, usage))
}

func (f *envFlags) Bool(p *bool, name string, def bool, usage string) {
	if v, ok := f.env(name); ok {
		if b, err := strconv.ParseBool(v); err != nil {
			f.bad(name, v, "a boolean")
		} else {
			def = b
		}
	}
	f.fs.BoolVar(p, name, def, f.usage(name, usage))
}

func (f *envFlags) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := f.env(name); ok {
		if d, err := time.ParseDuration(v); err != nil {
			f.bad(name, v, "a duration")
		} else {
			def = d
		}
	}
	f.fs.DurationVar(p, name, def, f.usage(name, usage))
}
