package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// kafkaCredential is a tenant's producer credential as the API returns it.
type kafkaCredential struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Topic    string `json:"topic"`
}

// kafkaConfigFlags are the flags that say how to reach the brokers as a
// tenant's producer.
type kafkaConfigFlags struct {
	config, brokers, user, passwordFile, mechanism, tlsCA string
	tls                                                   bool
}

func (c *cli) kafkaFlags(fs *pflag.FlagSet) *kafkaConfigFlags {
	k := &kafkaConfigFlags{}
	fs.StringVar(&k.config, "kafka-config", c.env("KAFKA_CONFIG", ""), "librdkafka-style properties file with the tenant's Kafka credential, as 'tenant create --kafka-config' writes it (TENANTVAULT_KAFKA_CONFIG)")
	fs.StringVar(&k.brokers, "brokers", c.env("BROKERS", ""), "Kafka bootstrap brokers host:port,... (TENANTVAULT_BROKERS; default: the config file's bootstrap.servers, else 127.0.0.1:9092)")
	fs.StringVar(&k.user, "kafka-sasl-user", c.env("KAFKA_SASL_USER", ""), "SCRAM user (default: the config file's sasl.username) (TENANTVAULT_KAFKA_SASL_USER)")
	fs.StringVar(&k.passwordFile, "kafka-sasl-password-file", c.env("KAFKA_SASL_PASSWORD_FILE", ""), "file holding the SCRAM password (TENANTVAULT_KAFKA_SASL_PASSWORD_FILE)")
	fs.StringVar(&k.mechanism, "kafka-sasl-mechanism", c.env("KAFKA_SASL_MECHANISM", ""), "SCRAM-SHA-256 (default) or SCRAM-SHA-512")
	fs.StringVar(&k.tlsCA, "kafka-tls-ca", c.env("KAFKA_TLS_CA", ""), "PEM CA to trust for the brokers' TLS certificate; turns TLS on")
	fs.BoolVar(&k.tls, "kafka-tls", false, "connect over TLS")
	return k
}

// resolve turns the flags and the config file into brokers and an Auth.
func (k *kafkaConfigFlags) resolve() ([]string, kafka.Auth, error) {
	props := map[string]string{}
	if k.config != "" {
		var err error
		if props, err = readProperties(k.config); err != nil {
			return nil, kafka.Auth{}, err
		}
	}
	brokers := k.brokers
	if brokers == "" {
		brokers = props["bootstrap.servers"]
	}
	if brokers == "" {
		brokers = "127.0.0.1:9092"
	}
	a := kafka.Auth{User: props["sasl.username"], Password: props["sasl.password"], Mechanism: props["sasl.mechanisms"]}
	if k.user != "" {
		a.User = k.user
	}
	if k.passwordFile != "" {
		b, err := os.ReadFile(k.passwordFile)
		if err != nil {
			return nil, kafka.Auth{}, fmt.Errorf("kafka password: %w", err)
		}
		a.Password = strings.TrimSpace(string(b))
	}
	if k.mechanism != "" {
		a.Mechanism = k.mechanism
	}
	proto := strings.ToUpper(props["security.protocol"])
	ca := k.tlsCA
	if ca == "" {
		ca = props["ssl.ca.location"]
	}
	if k.tls || k.tlsCA != "" || proto == "SSL" || proto == "SASL_SSL" {
		var err error
		if a.TLS, err = kafka.ClientTLS("", ca); err != nil {
			return nil, kafka.Auth{}, err
		}
	}
	var list []string
	for b := range strings.SplitSeq(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			list = append(list, b)
		}
	}
	return list, a, a.Validate()
}

// readProperties reads a librdkafka-style properties file: key=value lines,
// # comments.
func readProperties(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("kafka config %s:%d: want key=value", path, n)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}

// writeKafkaConfig writes cred as a librdkafka properties file (0600), for
// kcat -F, librdkafka clients and vaultctl publish --kafka-config.
func writeKafkaConfig(path, tenant string, cred kafkaCredential, brokers string, tls bool) error {
	proto := "SASL_PLAINTEXT"
	if tls {
		proto = "SASL_SSL"
	}
	if brokers == "" {
		brokers = "127.0.0.1:9092"
	}
	body := fmt.Sprintf(`# tenantvault: the Kafka producer credential of tenant %s (written %s).
# It may write %s and nothing else. Keep it secret.
# kcat -F %s -P -t %s -k STREAM
bootstrap.servers=%s
security.protocol=%s
sasl.mechanisms=SCRAM-SHA-256
sasl.username=%s
sasl.password=%s
`, tenant, time.Now().UTC().Format(time.RFC3339), cred.Topic, filepath.Base(path), cred.Topic, brokers, proto, cred.User, cred.Password)
	if err := atomicfile.WriteFile(path, []byte(body), atomicfile.Options{}); err != nil {
		return fmt.Errorf("kafka config: %w", err)
	}
	return nil
}

// showKafkaCredential writes cred to the --kafka-config file when one is
// given, else prints it to stderr (stdout carries the API token): it is
// shown only this once.
func (c *cli) showKafkaCredential(tenant string, cred *kafkaCredential, k *kafkaConfigFlags) error {
	if cred == nil || cred.Password == "" {
		fmt.Fprintf(c.stderr, "the brokers do not authenticate: tenant %s has no Kafka credential\n", tenant)
		return nil
	}
	if k.config != "" {
		if err := writeKafkaConfig(k.config, tenant, *cred, k.brokers, k.tls || k.tlsCA != ""); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "its Kafka producer credential (user %s) is in %s (0600): kcat -F %s ..., or vaultctl publish --kafka-config %s\n", cred.User, k.config, k.config, k.config)
		return nil
	}
	fmt.Fprintf(c.stderr, "its Kafka producer credential, shown only this once (SASL/SCRAM-SHA-256 or -512; --kafka-config FILE saves it to a file instead):\n  sasl.username=%s\n  sasl.password=%s\n", cred.User, cred.Password)
	return nil
}

// kafkaCredentialRotateCmd gives a tenant's producers a new Kafka secret.
func (c *cli) kafkaCredentialRotateCmd() *cobra.Command {
	var k *kafkaConfigFlags
	cmd := &cobra.Command{
		Use:   "rotate ID [--kafka-config FILE]",
		Short: "A new Kafka producer secret for the tenant; the old one stops logging in",
		Args:  nArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.kafkaCredentialRotate(cmd.Context(), args[0], k)
		},
	}
	k = c.kafkaFlags(cmd.Flags())
	return cmd
}

func (c *cli) kafkaCredentialRotate(ctx context.Context, id string, k *kafkaConfigFlags) error {
	var out struct {
		Kafka kafkaCredential `json:"kafka"`
	}
	if err := c.call(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(id)+"/kafka-credential/rotate", nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "tenant %s: new Kafka producer credential; the old one no longer logs in (connections already open stay open).\n", id)
	return c.showKafkaCredential(id, &out.Kafka, k)
}
