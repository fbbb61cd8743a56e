package server

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// defaultConfig is what ParseFlags gives with no flag and no environment.
func defaultConfig() Config {
	return Config{
		DataDir:          "./vault-data",
		HTTPAddr:         "127.0.0.1:8080",
		KafkaAddr:        "127.0.0.1:9092",
		MasterKey:        "local://./vault-data/master.key",
		MaxEventBytes:    1 << 20,
		ConsumerGroup:    "tenantvault",
		LogLevel:         "info",
		LogFormat:        "text",
		ShutdownGrace:    10 * time.Second,
		Partitions:       1,
		AlertTopic:       "vault.alerts",
		AuditOrigin:      "tenantvault/audit",
		MaxOpenStores:    128,
		IngressRetention: "delete",
		KeyCacheTTL:      5 * time.Minute,
		KafkaAuth:        "scram",
		IngestConsumer:   "kgo",
		CheckpointTopic:  "vault.checkpoints",

		AuditAggregateInterval: 10 * time.Second,
		AuthFailureLimit:       100,
		MaxTenants:             10000,
		IngestStallAfter:       time.Minute,
		IngestLagInterval:      10 * time.Second,

		KafkaSASLMechanism: "SCRAM-SHA-256",
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*Config) // applied to defaultConfig()
	}{
		{name: "defaults", want: func(*Config) {}},
		{
			name: "witnesses from the environment",
			env:  map[string]string{"TENANTVAULT_WITNESS": "https://w1.example/w, http://127.0.0.1:1/x", "TENANTVAULT_CHECKPOINT_TOPIC": "-"},
			want: func(c *Config) {
				c.Witnesses, c.CheckpointTopic = []string{"https://w1.example/w", "http://127.0.0.1:1/x"}, "-"
			},
		},
		{
			name: "witness flags replace the environment's",
			args: []string{"--witness", "https://w2.example", "--witness=https://w3.example/", "--checkpoint-topic", "cps"},
			env:  map[string]string{"TENANTVAULT_WITNESS": "https://w1.example/w"},
			want: func(c *Config) {
				c.Witnesses, c.CheckpointTopic = []string{"https://w2.example", "https://w3.example/"}, "cps"
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"TENANTVAULT_DATA_DIR": "/srv/tv", "TENANTVAULT_HTTP_ADDR": "0.0.0.0:80", "TENANTVAULT_KAFKA_ADDR": "127.0.0.1:19092",
				"TENANTVAULT_BROKERS": "k1:9092,k2:9092", "TENANTVAULT_MAX_EVENT_BYTES": "4096", "TENANTVAULT_CONSUMER_GROUP": "g",
				"TENANTVAULT_PARTITIONS": "6", "TENANTVAULT_MAX_OPEN_STORES": "9", "TENANTVAULT_LOG_LEVEL": "debug",
				"TENANTVAULT_LOG_FORMAT": "json", "TENANTVAULT_ADMIN_TOKEN": "0123456789abcdef",
				"TENANTVAULT_ALERT_WEBHOOK": "https://hooks.example/tv", "TENANTVAULT_ALERT_TOPIC": "-",
				"TENANTVAULT_AUDIT_ORIGIN": "example.com/tv", "TENANTVAULT_KEY_CACHE_TTL": "90s", "TENANTVAULT_KAFKA_TLS": "true",
			},
			want: func(c *Config) {
				c.DataDir, c.HTTPAddr, c.KafkaAddr = "/srv/tv", "0.0.0.0:80", "127.0.0.1:19092"
				c.Brokers = []string{"k1:9092", "k2:9092"}
				c.MasterKey = "local:///srv/tv/master.key"
				c.MaxEventBytes, c.ConsumerGroup, c.Partitions, c.MaxOpenStores = 4096, "g", 6, 9
				c.LogLevel, c.LogFormat, c.AdminToken = "debug", "json", "0123456789abcdef"
				c.AlertWebhook, c.AlertTopic = "https://hooks.example/tv", "-"
				c.AuditOrigin, c.KeyCacheTTL, c.KafkaTLS = "example.com/tv", 90*time.Second, true
			},
		},
		{
			name: "flags",
			args: []string{
				"--data-dir", "/d", "--http-addr", "127.0.0.1:1", "--kafka-addr", "127.0.0.1:2", "--brokers", "b:1",
				"--master-key", "local:///keys/mk", "--max-event-bytes", "2048", "--consumer-group", "cg",
				"--partitions", "3", "--max-open-stores", "4", "--log-level", "warn", "--log-format", "json",
				"--alert-webhook", "http://h/x", "--alert-topic", "alerts", "--audit-origin", "o.example/a",
			},
			want: func(c *Config) {
				c.DataDir, c.HTTPAddr, c.KafkaAddr, c.Brokers = "/d", "127.0.0.1:1", "127.0.0.1:2", []string{"b:1"}
				c.MasterKey, c.MaxEventBytes, c.ConsumerGroup = "local:///keys/mk", 2048, "cg"
				c.Partitions, c.MaxOpenStores, c.LogLevel, c.LogFormat = 3, 4, "warn", "json"
				c.AlertWebhook, c.AlertTopic, c.AuditOrigin = "http://h/x", "alerts", "o.example/a"
			},
		},
		{
			name: "flags beat environment",
			args: []string{"-data-dir=/flag", "--max-event-bytes=8192", "--log-level=error", "--brokers=f:1", "--partitions=2"},
			env: map[string]string{
				"TENANTVAULT_DATA_DIR": "/env", "TENANTVAULT_MAX_EVENT_BYTES": "4096", "TENANTVAULT_LOG_LEVEL": "debug",
				"TENANTVAULT_BROKERS": "e:1", "TENANTVAULT_PARTITIONS": "5", "TENANTVAULT_HTTP_ADDR": "127.0.0.1:7",
			},
			want: func(c *Config) {
				c.DataDir, c.MasterKey = "/flag", "local:///flag/master.key"
				c.MaxEventBytes, c.LogLevel, c.Brokers, c.Partitions = 8192, "error", []string{"f:1"}, 2
				c.HTTPAddr = "127.0.0.1:7" // no flag: the environment
			},
		},
		{
			name: "master key follows data dir without a double slash",
			args: []string{"--data-dir", "/srv/tv/"},
			want: func(c *Config) { c.DataDir, c.MasterKey = "/srv/tv/", "local:///srv/tv/master.key" },
		},
		{
			name: "explicit master key is kept",
			args: []string{"--data-dir", "/d"},
			env:  map[string]string{"TENANTVAULT_MASTER_KEY": "local:///etc/tv/mk"},
			want: func(c *Config) { c.DataDir, c.MasterKey = "/d", "local:///etc/tv/mk" },
		},
		{
			name: "broker list",
			args: []string{"--brokers", " k1:9092, k2:9092,,k3:9093 ,"},
			want: func(c *Config) { c.Brokers = []string{"k1:9092", "k2:9092", "k3:9093"} },
		},
		{
			name: "empty broker flag overrides the environment",
			args: []string{"--brokers="},
			env:  map[string]string{"TENANTVAULT_BROKERS": "e:1"},
			want: func(c *Config) {},
		},
		{
			name: "audit aggregation and the failure limit",
			args: []string{"--audit-aggregate-interval", "1m"},
			env:  map[string]string{"TENANTVAULT_AUTH_FAILURE_LIMIT": "-1"},
			want: func(c *Config) { c.AuditAggregateInterval, c.AuthFailureLimit = time.Minute, -1 },
		},
		{
			name: "VAULT_ variables are not ours",
			env:  map[string]string{"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_TOKEN": "hvs.xxxxxxxxxxxxxxxxxxxx", "DATA_DIR": "/x"},
			want: func(*Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			if err := c.ParseFlags("vaultd", tt.args, mapEnv(tt.env)); err != nil {
				t.Fatalf("ParseFlags(%q) = %v, want nil", tt.args, err)
			}
			want := defaultConfig()
			tt.want(&want)
			if !reflect.DeepEqual(c, want) {
				t.Errorf("ParseFlags(%q) with env %v =\n%+v\nwant\n%+v", tt.args, tt.env, c, want)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // each must be named by the error
	}{
		{name: "bad log level", args: []string{"--log-level", "verbose"}, want: []string{"--log-level", "verbose"}},
		{name: "bad log level from env", env: map[string]string{"TENANTVAULT_LOG_LEVEL": "trace"}, want: []string{"--log-level", "trace"}},
		{name: "bad log format", args: []string{"--log-format", "xml"}, want: []string{"--log-format"}},
		{name: "max event bytes too small", args: []string{"--max-event-bytes", "1023"}, want: []string{"--max-event-bytes", "1023"}},
		{name: "max event bytes negative", args: []string{"--max-event-bytes", "-5"}, want: []string{"--max-event-bytes"}},
		{name: "max event bytes not a number", args: []string{"--max-event-bytes", "1MiB"}, want: []string{"max-event-bytes"}},
		{name: "short admin token", env: map[string]string{"TENANTVAULT_ADMIN_TOKEN": "short"}, want: []string{"TENANTVAULT_ADMIN_TOKEN", "16"}},
		{name: "broker without port", args: []string{"--brokers", "k1:9092,k2"}, want: []string{"--brokers", `"k2"`}},
		{name: "master key not a URI", args: []string{"--master-key", "/etc/mk"}, want: []string{"--master-key"}},
		{name: "webhook not http", args: []string{"--alert-webhook", "ftp://h/x"}, want: []string{"--alert-webhook"}},
		{name: "partitions", args: []string{"--partitions", "-1"}, want: []string{"--partitions"}},
		{name: "witness not http", args: []string{"--witness", "ftp://user:tooshort@w.example/x"}, want: []string{"--witness", "w.example"}},
		{name: "checkpoint topic is the alert topic", args: []string{"--checkpoint-topic", "vault.alerts"}, want: []string{"--checkpoint-topic", "--alert-topic"}},
		{name: "max open stores", args: []string{"--max-open-stores", "-2"}, want: []string{"--max-open-stores"}},
		{name: "key cache ttl not a duration", args: []string{"--key-cache-ttl", "5"}, want: []string{"key-cache-ttl"}},
		{name: "unknown flag", args: []string{"--verbose"}, want: []string{"verbose"}},
		{name: "no admin token flag", args: []string{"--admin-token", "0123456789abcdef"}, want: []string{"admin-token"}},
		{name: "unexpected argument", args: []string{"--log-level", "info", "serve"}, want: []string{"serve"}},
		{
			name: "all problems at once",
			args: []string{"--log-level", "loud", "--max-event-bytes", "10"},
			env:  map[string]string{"TENANTVAULT_ADMIN_TOKEN": "tooshort"},
			want: []string{"--log-level", "--max-event-bytes", "TENANTVAULT_ADMIN_TOKEN"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := c.ParseFlags("vaultd", tt.args, mapEnv(tt.env))
			if err == nil {
				t.Fatalf("ParseFlags(%q) with env %v = nil, want an error naming %q", tt.args, tt.env, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseFlags(%q) = %q, want it to name %q", tt.args, err, w)
				}
			}
			if strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "tooshort") {
				t.Errorf("ParseFlags(%q) = %q: the error shows the admin token", tt.args, err)
			}
		})
	}
}

// An environment variable that is not a number (a duration, a boolean) is
// a configuration error, as the same value given as a flag is: it must not
// silently fall back to the default (TENANTVAULT_MAX_EVENT_BYTES=2MiB
// running with 1 MiB).
func TestParseFlagsBadEnvNumber(t *testing.T) {
	for _, name := range []string{"TENANTVAULT_MAX_EVENT_BYTES", "TENANTVAULT_PARTITIONS", "TENANTVAULT_MAX_OPEN_STORES",
		"TENANTVAULT_KEY_CACHE_TTL", "TENANTVAULT_KAFKA_TLS"} {
		t.Run(name, func(t *testing.T) {
			var c Config
			err := c.ParseFlags("vaultd", nil, mapEnv(map[string]string{name: "2MiB"}))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("ParseFlags with %s=2MiB = %v (MaxEventBytes %d, Partitions %d, MaxOpenStores %d), want an error naming %s",
					name, err, c.MaxEventBytes, c.Partitions, c.MaxOpenStores, name)
			}
		})
	}
}

// With a nil getenv, ParseFlags reads the process environment.
func TestParseFlagsProcessEnv(t *testing.T) {
	t.Setenv("TENANTVAULT_HTTP_ADDR", "127.0.0.1:18080")
	t.Setenv("TENANTVAULT_LOG_FORMAT", "json")
	var c Config
	if err := c.ParseFlags("vaultd", []string{"--log-format", "text"}, nil); err != nil {
		t.Fatalf("ParseFlags = %v", err)
	}
	if c.HTTPAddr != "127.0.0.1:18080" || c.LogFormat != "text" {
		t.Errorf("ParseFlags = HTTPAddr %q LogFormat %q, want 127.0.0.1:18080 (env) and text (flag)", c.HTTPAddr, c.LogFormat)
	}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
