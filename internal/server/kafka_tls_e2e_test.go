package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// (PEM) into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tenantvault test broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestKafkaTLS: with --kafka-tls-cert/--kafka-tls-key the embedded broker
// speaks TLS only (SASL_SSL). The vault's own clients reach it, a tenant's
// producers publish over TLS (franz-go through the vault's Publisher, and
// kcat with SASL_SSL), and a plaintext client gets nowhere.
func TestKafkaTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	v := mustStartWith(t, t.TempDir(), "", func(c *server.Config) { c.KafkaTLSCert, c.KafkaTLSKey = certFile, keyFile })
	tok := v.createTenant("tls-tenant")
	a, _ := v.producer("tls-tenant")
	var err error
	if a.TLS, err = kafka.ClientTLS("127.0.0.1", certFile); err != nil {
		t.Fatal(err)
	}
	publishAs(t, v.brokers(), a, "tenant.tls-tenant.events", rec("s-1", event("t1", "s-1", "t.set", `{"over":"tls"}`)))
	if s := v.waitVersion("tls-tenant", tok, "s-1", 1); !strings.Contains(string(s.Data), `"over":"tls"`) {
		t.Fatalf("state = %s", s.Data)
	}
	// Plaintext SASL to a TLS listener: refused.
	plain := a
	plain.TLS = nil
	if err := tryPublish(v.brokers(), plain, "tenant.tls-tenant.events", rec("s-1", event("t2", "s-1", "t.set", `{"over":"plaintext"}`))); err == nil {
		t.Fatal("plaintext publish to the TLS listener: accepted")
	}

	kcat := needKcat(t)
	out, err := kcatRun(t, kcat, 30*time.Second, string(event("t3", "s-2", "t.set", `{"by":"kcat"}`))+"\n",
		"-P", "-b", v.brokers()[0], "-t", "tenant.tls-tenant.events", "-k", "s-2",
		"-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location="+certFile,
		"-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username="+a.User, "-X", "sasl.password="+a.Password)
	if err != nil {
		t.Fatalf("kcat over SASL_SSL: %v\n%s", err, out)
	}
	v.waitVersion("tls-tenant", tok, "s-2", 1)
	if _, s := v.state("tls-tenant", tok, "s-1"); s.Version != 1 {
		t.Errorf("s-1 at version %d after the plaintext attempt, want 1", s.Version)
	}
}

// TestExternalBrokersSASL runs the vault against brokers it does not embed
// (--brokers), logging in with --kafka-sasl-user/--kafka-sasl-password-file,
// as against a real Kafka cluster: it manages tenants' producer principals
// and ACLs there through the Kafka protocol (AlterUserSCRAMs, CreateACLs),
// and removes them on shred.
func TestExternalBrokersSASL(t *testing.T) {
	const opsPass = "ops-password-for-the-cluster-0123"
	cluster, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(),
		Auth: &kafka.EmbeddedAuth{SuperUser: "vault-ops", SuperPassword: opsPass}})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(opsPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := mustStartWith(t, t.TempDir(), "", func(c *server.Config) {
		c.Brokers = []string{cluster.Addr()}
		c.KafkaSASLUser, c.KafkaSASLPasswordFile, c.KafkaSASLMechanism = "vault-ops", pwFile, "SCRAM-SHA-512"
	})
	tok := v.createTenant("ext")
	v.publish("tenant.ext.events", rec("e-1", event("x1", "e-1", "t.set", `{"on":"cluster"}`)))
	v.waitVersion("ext", tok, "e-1", 1)

	adm, err := kafka.NewAdmin([]string{cluster.Addr()}, kafka.Auth{User: "vault-ops", Password: opsPass})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	acls, err := adm.ACLsOf(ctx, "tenant-ext")
	if err != nil || len(acls) != 2 {
		t.Fatalf("ACLs of tenant-ext on the cluster = %+v, %v; want WRITE and DESCRIBE on its topic", acls, err)
	}
	if st := v.do("DELETE", "/v1/tenants/ext?confirm=ext", v.srv.AdminToken(), nil, nil); st != 200 {
		t.Fatalf("shred = %d", st)
	}
	if ok, err := adm.HasSCRAM(ctx, "tenant-ext"); err != nil || ok {
		t.Errorf("tenant-ext's credential after shred: %v, %v; want gone", ok, err)
	}
	if acls, err := adm.ACLsOf(ctx, "tenant-ext"); err != nil || len(acls) != 0 {
		t.Errorf("tenant-ext's ACLs after shred: %+v, %v; want none", acls, err)
	}
	// A vault without SASL against an authenticating cluster is refused
	// at once, clearly: it cannot even create its alert topic.
	bad := &server.Server{Config: server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Brokers: []string{cluster.Addr()}}}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bad.Open(octx); err == nil {
		bad.Close()
		t.Error("vault without a Kafka credential opened against an authenticating cluster")
	}
}
