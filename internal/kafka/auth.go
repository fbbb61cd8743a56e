package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	kgoscram "github.com/segmentio/kafka-go/sasl/scram"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SCRAM mechanisms, as Kafka names them.
const (
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// Auth is how a client of this package proves who it is to the brokers:
// a SASL/SCRAM principal, over TLS when TLS is set. The zero value is an
// anonymous plaintext client.
type Auth struct {
	// Mechanism is SCRAMSHA256 (the default when User is set) or
	// SCRAMSHA512.
	Mechanism string
	// User and Password are the SCRAM credential; no User: no SASL.
	User     string
	Password string
	// TLS, when not nil, wraps every connection in TLS with this config.
	TLS *tls.Config
}

// String names the principal without its secret.
func (a Auth) String() string {
	s := "anonymous"
	if a.User != "" {
		s = fmt.Sprintf("User:%s (%s)", a.User, a.mechanism())
	}
	if a.TLS != nil {
		s += " over TLS"
	}
	return s
}

// Validate reports what is wrong with a.
func (a Auth) Validate() error {
	var errs []error
	switch a.Mechanism {
	case "", SCRAMSHA256, SCRAMSHA512:
	default:
		errs = append(errs, fmt.Errorf("SASL mechanism %q: want %s or %s", a.Mechanism, SCRAMSHA256, SCRAMSHA512))
	}
	if a.User != "" && a.Password == "" {
		errs = append(errs, fmt.Errorf("SASL user %q has no password", a.User))
	}
	if a.User == "" && a.Password != "" {
		errs = append(errs, errors.New("SASL password without a user"))
	}
	return errors.Join(errs...)
}

func (a Auth) mechanism() string {
	if a.Mechanism == "" {
		return SCRAMSHA256
	}
	return a.Mechanism
}

// kgoOpts are the franz-go options for a.
func (a Auth) kgoOpts() []kgo.Opt {
	var opts []kgo.Opt
	if a.User != "" {
		s := scram.Auth{User: a.User, Pass: a.Password}
		if a.mechanism() == SCRAMSHA512 {
			opts = append(opts, kgo.SASL(s.AsSha512Mechanism()))
		} else {
			opts = append(opts, kgo.SASL(s.AsSha256Mechanism()))
		}
	}
	if a.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(a.TLS.Clone()))
	}
	return opts
}

// saslMechanism is the kafka-go mechanism for a, or nil without a User.
func (a Auth) saslMechanism() (sasl.Mechanism, error) {
	if a.User == "" {
		return nil, nil
	}
	algo := kgoscram.SHA256
	if a.mechanism() == SCRAMSHA512 {
		algo = kgoscram.SHA512
	}
	m, err := kgoscram.Mechanism(algo, a.User, a.Password)
	if err != nil {
		return nil, fmt.Errorf("SASL %s: %w", a.mechanism(), err)
	}
	return m, nil
}

// transport is a kafka-go Transport that authenticates as a.
func (a Auth) transport() (*kafkago.Transport, error) {
	m, err := a.saslMechanism()
	if err != nil {
		return nil, err
	}
	tr := &kafkago.Transport{SASL: m}
	if a.TLS != nil {
		tr.TLS = a.TLS.Clone()
	}
	return tr, nil
}

// dialer is a kafka-go Dialer that authenticates as a.
func (a Auth) dialer() (*kafkago.Dialer, error) {
	m, err := a.saslMechanism()
	if err != nil {
		return nil, err
	}
	d := &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, SASLMechanism: m}
	if a.TLS != nil {
		d.TLS = a.TLS.Clone()
	}
	return d, nil
}

// ServerTLS loads a certificate and its key (PEM files) for the embedded
// broker's listener.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kafka TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ClientTLS is the TLS config of a client that trusts the certificates in
// the PEM files caFiles (a private CA, or a self-signed broker certificate)
// on top of the system's roots. serverName, when set, is the name the
// broker's certificate must carry; otherwise the dialled host.
func ClientTLS(serverName string, caFiles ...string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range caFiles {
		if f == "" {
			continue
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS CA %s: no PEM certificate in it", f)
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}
