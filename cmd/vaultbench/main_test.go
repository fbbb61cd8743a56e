package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// TestRunSmall runs every phase of the load command on a few events: the
// vault's end-to-end phases (SASL/SCRAM with each tenant's producer
// credential, and no SASL) check over HTTP that each event is queryable.
// It asserts what was done, not how fast.
func TestRunSmall(t *testing.T) {
	c := config{events: 600, tenants: 3, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2}
	rep, out := mustRun(t, c)
	for _, want := range []string{"vault end-to-end:", "producers SASL/SCRAM-SHA-256 per tenant", "vault no-SASL:", "producers anonymous",
		"badger baseline:", "kafka only:", "kafka -> badger:", "ratio vault/baseline:", "ratio vault-no-sasl/baseline:",
		"ratio kafka->badger/baseline:", "ratio vault/(kafka->badger):", "ratio vault/vault-no-sasl:", "run 2 of 2",
		"median ratio vault/baseline over 2 runs:", "median ratio vault/vault-no-sasl over 2 runs:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The vault phases take turns going first.
	run1, run2, _ := strings.Cut(out, "run 2 of 2")
	if first := firstOf(run1, "vault end-to-end:", "vault no-SASL:"); first != "vault end-to-end:" {
		t.Errorf("run 1 starts with %q, want the vault (SASL):\n%s", first, out)
	}
	if first := firstOf(run2, "vault end-to-end:", "vault no-SASL:"); first != "vault no-SASL:" {
		t.Errorf("run 2 starts with %q, want the vault without SASL:\n%s", first, out)
	}
	if len(rep.Runs) != 2 || rep.MedianRatio <= 0 || rep.MedianKafkaBadgerRatio <= 0 || rep.MedianCeilingRatio <= 0 || rep.MedianSASLRatio <= 0 {
		t.Fatalf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.Events != 600 || res.VaultEventsPerSec <= 0 || res.BaselineEventsPerSec <= 0 || res.Batches <= 0 ||
			res.KafkaOnly == nil || res.KafkaOnly.EventsPerSec <= 0 || res.KafkaBadger == nil || res.KafkaBadger.Ratio <= 0 ||
			res.VaultProducers != "SASL/SCRAM-SHA-256 per tenant" || res.SASLRatio <= 0 ||
			res.VaultNoSASL == nil || res.VaultNoSASL.EventsPerSec <= 0 || res.VaultNoSASL.Batches <= 0 || res.VaultNoSASL.Ratio <= 0 {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
	}
}

// firstOf returns whichever of a and b comes first in s ("" if neither is
// in it).
func firstOf(s, a, b string) string {
	i, j := strings.Index(s, a), strings.Index(s, b)
	switch {
	case i < 0 && j < 0:
		return ""
	case j < 0 || (i >= 0 && i < j):
		return a
	default:
		return b
	}
}

// TestRunSkipNoSASL runs the vault phase alone: -skip-nosasl (with the
// other phases skipped too) leaves out the vault without SASL and its ratio.
func TestRunSkipNoSASL(t *testing.T) {
	c := config{events: 200, tenants: 2, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2,
		skipBaseline: true, skipTransport: true, skipNoSASL: true}
	rep, out := mustRun(t, c)
	if strings.Contains(out, "no-SASL") || strings.Contains(out, "no-sasl") || !strings.Contains(out, "vault end-to-end:") {
		t.Errorf("output:\n%s", out)
	}
	if rep.MedianSASLRatio != 0 {
		t.Errorf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.VaultEventsPerSec <= 0 || res.VaultNoSASL != nil || res.SASLRatio != 0 {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
	}
}

// TestProducerAuth checks how a tenant's publisher logs in from its create
// answer: with its own credential, by the vault's mechanism and TLS, or
// anonymously without one; a credential for another topic is refused.
func TestProducerAuth(t *testing.T) {
	vaultAuth := kafka.Auth{Mechanism: kafka.SCRAMSHA512, User: "tenantvault", Password: "secret"}
	const tenant = events.TenantID("acme")
	got, err := producerAuth(vaultAuth, tenant, &kafkaCredential{User: "tenant-acme", Password: "tvk_x", Topic: events.TopicFor(tenant)})
	if err != nil || got != (kafka.Auth{Mechanism: kafka.SCRAMSHA512, User: "tenant-acme", Password: "tvk_x"}) {
		t.Errorf("with a credential: %+v, %v", got, err)
	}
	if got, err := producerAuth(vaultAuth, tenant, nil); err != nil || got != (kafka.Auth{}) {
		t.Errorf("without a credential: %+v, %v", got, err)
	}
	if _, err := producerAuth(vaultAuth, tenant, &kafkaCredential{User: "tenant-acme", Password: "tvk_x", Topic: "tenant.other.events"}); err == nil {
		t.Error("a credential for another topic was taken")
	}
	if _, err := producerAuth(vaultAuth, tenant, &kafkaCredential{User: "tenant-acme", Topic: events.TopicFor(tenant)}); err == nil {
		t.Error("a credential without a password was taken")
	}
}

// TestRunExternalBrokers runs the phases against a cluster vaultbench did
// not start (an embedded broker standing in for one): each phase on topics
// of its own, all deleted at the end.
func TestRunExternalBrokers(t *testing.T) {
	broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	c := config{events: 300, tenants: 3, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 1,
		brokers: []string{broker.Addr()}, skipBaseline: true}
	rep, _ := mustRun(t, c)
	// The vault logs in anonymously (no SASL user), so its tenants get no
	// producer credential and publish anonymously; no no-SASL phase on an
	// external cluster.
	if res := rep.Runs[0]; res.VaultEventsPerSec <= 0 || res.KafkaOnly == nil || res.KafkaBadger == nil || res.KafkaBadger.EventsPerSec <= 0 ||
		res.VaultProducers != "anonymous" || res.VaultNoSASL != nil || res.SASLRatio != 0 {
		t.Errorf("results = %+v", res)
	}
	admin, err := kafka.NewAdmin([]string{broker.Addr()}, kafka.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	topics, err := admin.ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if strings.HasPrefix(topic, "tenant.b") {
			t.Errorf("topic %s left on the cluster", topic)
		}
	}
}

// mustRun runs the load command with c, writing its report to a file, and
// returns the report read back and what it printed.
func mustRun(t *testing.T, c config) (Report, string) {
	t.Helper()
	c.out = filepath.Join(t.TempDir(), "res.json")
	var w bytes.Buffer
	if err := run(context.Background(), c, &w); err != nil {
		t.Fatalf("run: %v\n%s", err, w.String())
	}
	b, err := os.ReadFile(c.out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, w.String()
}
