package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// TestRunSmall runs every phase of the load command on a few events: the
// vault's end-to-end phases (SASL/SCRAM with each tenant's producer
// credential, and no SASL) check over HTTP that each event is queryable,
// the peers that each is stored, and the read phase that every vault read
// answers 200. When PostgreSQL is installed its phase must run; otherwise
// it must say it was skipped. It asserts what was done, not how fast.
func TestRunSmall(t *testing.T) {
	c := config{events: 600, tenants: 3, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2, reads: true, readSeconds: 1}
	rep, out := mustRun(t, c)
	pgInstalled := postgresInstalled(t)
	wants := []string{"vault end-to-end:", "producers SASL/SCRAM-SHA-256 per tenant", "vault no-SASL:", "producers anonymous",
		"badger baseline:", "kafka only:", "kafka -> badger:", "ratio vault/baseline:", "ratio vault-no-sasl/baseline:",
		"ratio kafka->badger/baseline:", "ratio vault/(kafka->badger):", "ratio vault/vault-no-sasl:", "run 2 of 2",
		"median ratio vault/baseline over 2 runs:", "median ratio vault/vault-no-sasl over 2 runs:",
		"\nnaive: ", "Badger commits; one topic, one consumer, one Badger DB", "ratio naive/baseline:", "ratio vault/naive:",
		"median ratio vault/naive over 2 runs:",
		"\nvault reads: ", "\nbare-http reads: ", "reads/s   (p50 ", "over 16 connections", "ratio vault-reads/bare-http:",
		"median ratio vault-reads/bare-http over 2 runs:",
		"\nvault kafka-go: ", "a consumer group per topic", "ratio vault/vault-kafka-go:", "median ratio vault/vault-kafka-go over 2 runs:",
		"\nvault no-ckpt: ", "--checkpoint-topic=-)", "ratio vault/vault-no-checkpoints:", "median ratio vault/vault-no-checkpoints over 2 runs:"}
	if pgInstalled {
		wants = append(wants, "\npostgres-rls: ", "of the server;", "one topic, one consumer; PostgreSQL ", "ratio postgres-rls/baseline:",
			"ratio vault/postgres-rls:", "median ratio vault/postgres-rls over 2 runs:")
	} else {
		wants = append(wants, "\npostgres-rls: skipped (PostgreSQL not installed")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if pgInstalled && strings.Contains(out, "postgres-rls: skipped") {
		t.Errorf("PostgreSQL is installed, and its phase was skipped:\n%s", out)
	}
	// The vault phases and the peers run in one order in odd runs and in
	// the reverse order in even ones.
	run1, run2, _ := strings.Cut(out, "run 2 of 2")
	order := []string{"vault end-to-end:", "vault no-SASL:", "vault kafka-go:", "vault no-ckpt:", "naive:", "postgres-rls:"}
	if got := lineOrder(run1, order); !slices.Equal(got, order) {
		t.Errorf("run 1 ran %q, want %q:\n%s", got, order, out)
	}
	reversed := slices.Clone(order)
	slices.Reverse(reversed)
	if got := lineOrder(run2, order); !slices.Equal(got, reversed) {
		t.Errorf("run 2 ran %q, want %q:\n%s", got, reversed, out)
	}
	if len(rep.Runs) != 2 || rep.MedianRatio <= 0 || rep.MedianKafkaBadgerRatio <= 0 || rep.MedianCeilingRatio <= 0 || rep.MedianSASLRatio <= 0 || rep.MedianConsumerRatio <= 0 || rep.MedianCheckpointRatio <= 0 ||
		rep.MedianNaiveRatio <= 0 || rep.MedianReadsRatio <= 0 || (rep.MedianPostgresRLSRatio > 0) != pgInstalled || rep.Idle != nil {
		t.Fatalf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.Events != 600 || res.VaultEventsPerSec <= 0 || res.BaselineEventsPerSec <= 0 || res.Batches <= 0 ||
			res.KafkaOnly == nil || res.KafkaOnly.EventsPerSec <= 0 || res.KafkaBadger == nil || res.KafkaBadger.Ratio <= 0 ||
			res.VaultProducers != "SASL/SCRAM-SHA-256 per tenant" || res.SASLRatio <= 0 ||
			res.VaultNoSASL == nil || res.VaultNoSASL.EventsPerSec <= 0 || res.VaultNoSASL.Batches <= 0 || res.VaultNoSASL.Ratio <= 0 ||
			res.Naive == nil || res.Naive.EventsPerSec <= 0 || res.Naive.Batches <= 0 || res.Naive.Ratio <= 0 || res.NaiveRatio <= 0 {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
		if pgInstalled {
			if p := res.PostgresRLS; p == nil || p.EventsPerSec <= 0 || p.Batches < 3 || p.Ratio <= 0 || res.PostgresRLSRatio <= 0 ||
				!strings.HasPrefix(p.Server, "PostgreSQL ") || res.PostgresRLSSkipped != "" {
				t.Errorf("run %d: postgres-rls = %+v, skipped %q", i+1, p, res.PostgresRLSSkipped)
			}
		} else if res.PostgresRLS != nil || res.PostgresRLSSkipped == "" {
			t.Errorf("run %d: postgres-rls = %+v, skipped %q", i+1, res.PostgresRLS, res.PostgresRLSSkipped)
		}
		r := res.Reads
		if r == nil || r.Connections != 16 || r.Ratio <= 0 {
			t.Fatalf("run %d: reads = %+v", i+1, r)
		}
		for _, s := range []ReadStats{r.Vault, r.BareHTTP} {
			// The bare handler's body is one of the vault's answers, whose
			// sizes differ by a few digits.
			if s.Reads <= 0 || s.ReadsPerSec <= 0 || s.Seconds < 1 || s.P50Ms <= 0 || s.P99Ms < s.P50Ms || s.BodyBytes <= 0 ||
				math.Abs(float64(s.BodyBytes-r.Vault.BodyBytes)) > 0.05*float64(r.Vault.BodyBytes) {
				t.Errorf("run %d: reads = %+v", i+1, r)
			}
		}
	}
}

// postgresInstalled reports whether the PostgreSQL phase has binaries to
// run (and, as root, a postgres user to run them as). When it has none,
// TestRunSmall requires that none be installed: binaries it cannot run
// fail the test.
func postgresInstalled(t *testing.T) bool {
	t.Helper()
	_, _, skipped, err := findPostgres()
	if err != nil {
		t.Fatal(err)
	}
	if skipped != "" {
		t.Logf("PostgreSQL phase skipped: %s", skipped)
	}
	return skipped == ""
}

// lineOrder returns those of prefixes that start a line of s, in the
// order of their first such line.
func lineOrder(s string, prefixes []string) []string {
	var got []string
	for line := range strings.Lines(s) {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) && !slices.Contains(got, p) {
				got = append(got, p)
			}
		}
	}
	return got
}

// TestRunSkipNoSASL runs the vault phase alone: -skip-nosasl (with the
// other phases skipped too) leaves out the vault without SASL and its
// ratio, -skip-naive and -skip-pg the peers and theirs.
func TestRunSkipNoSASL(t *testing.T) {
	c := config{events: 200, tenants: 2, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2,
		skipBaseline: true, skipTransport: true, skipNoSASL: true, skipNaive: true, skipPG: true}
	rep, out := mustRun(t, c)
	if strings.Contains(out, "no-SASL") || strings.Contains(out, "no-sasl") || strings.Contains(out, "naive") ||
		strings.Contains(out, "postgres") || strings.Contains(out, "reads") || !strings.Contains(out, "vault end-to-end:") {
		t.Errorf("output:\n%s", out)
	}
	if rep.MedianSASLRatio != 0 || rep.MedianNaiveRatio != 0 || rep.MedianPostgresRLSRatio != 0 || rep.MedianReadsRatio != 0 {
		t.Errorf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.VaultEventsPerSec <= 0 || res.VaultNoSASL != nil || res.SASLRatio != 0 || res.Naive != nil || res.PostgresRLS != nil ||
			res.PostgresRLSSkipped != "" || res.Reads != nil {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
	}
}

// TestRunIdle runs the idle phase alone on a few tenants, with a short
// idle window: it reports the creates' latency, idle CPU and RSS.
func TestRunIdle(t *testing.T) {
	c := config{events: 20, tenants: 1, payload: 64, streams: 5, publishers: 1, chunk: 50, runs: 1,
		skipBaseline: true, skipTransport: true, skipNoSASL: true, skipNaive: true, skipPG: true,
		tenantsIdle: 3, idleSeconds: 0.5, idleSettle: 100 * time.Millisecond}
	rep, out := mustRun(t, c)
	if !strings.Contains(out, "idle: 3 tenants, create p50 ") || !strings.Contains(out, "% of a core over 0.5s, RSS ") {
		t.Errorf("output:\n%s", out)
	}
	idle := rep.Idle
	if idle == nil || idle.Tenants != 3 || idle.CreateP50Ms <= 0 || idle.CreateP99Ms < idle.CreateP50Ms || idle.CreateMaxMs < idle.CreateP99Ms ||
		idle.IdleSeconds < 0.5 || idle.IdleCPUSeconds < 0 || idle.IdleCPUPercent < 0 || idle.RSSMiB <= 0 || idle.PeakRSSMiB < idle.RSSMiB {
		t.Errorf("idle = %+v", idle)
	}
}

// TestNaiveWrite checks the naive store's writes of one batch: each
// record's log entry and its stream's state row under its tenant's
// prefix, and the offset after the batch's last record of each partition,
// in one commit.
func TestNaiveWrite(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var batch []*message.Message
	for i, r := range []struct{ tenant, stream, n, part, off string }{
		{"acme", "s-1", "0", "0", "10"}, {"acme", "s-1", "1", "0", "11"}, {"beta", "s-2", "0", "1", "5"}, {"acme", "s-3", "2", "0", "12"},
	} {
		m := message.NewMessage(r.n, []byte(fmt.Sprintf(`{"i":%d}`, i)))
		m.Metadata.Set(kafka.MetadataKey, sharedKey(events.TenantID(r.tenant), r.stream))
		m.Metadata.Set(kafka.MetadataPartition, r.part)
		m.Metadata.Set(kafka.MetadataOffset, r.off)
		batch = append(batch, m)
	}
	commits, err := naiveWrite(db, "bench.shared", batch)
	if err != nil || commits != 1 {
		t.Fatalf("naiveWrite = %d, %v", commits, err)
	}
	got := map[string]string{}
	if err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			got[string(it.Item().Key())] = string(v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"acme/s-1/000000000000": `{"i":0}`, "acme/s-1/000000000001": `{"i":1}`, "acme/s-1": `{"i":1}`,
		"beta/s-2/000000000000": `{"i":2}`, "beta/s-2": `{"i":2}`,
		"acme/s-3/000000000002": `{"i":3}`, "acme/s-3": `{"i":3}`,
		"\x00offsets/bench.shared/0": string(binary.BigEndian.AppendUint64(nil, 13)),
		"\x00offsets/bench.shared/1": string(binary.BigEndian.AppendUint64(nil, 6)),
	}
	if !maps.Equal(got, want) {
		t.Errorf("store holds %q, want %q", got, want)
	}
	for tenant, n := range map[events.TenantID]int{"acme": 3, "beta": 1} {
		if c, err := naiveCount(db, tenant); err != nil || c != n {
			t.Errorf("naiveCount(%s) = %d, %v; want %d", tenant, c, err, n)
		}
	}
	bad := message.NewMessage("0", []byte("{}"))
	bad.Metadata.Set(kafka.MetadataKey, "s-1")
	if _, err := naiveWrite(db, "bench.shared", []*message.Message{bad}); err == nil {
		t.Error("a record without a tenant in its key was written")
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
		brokers: []string{broker.Addr()}, skipBaseline: true, skipPG: true}
	rep, _ := mustRun(t, c)
	// The vault logs in anonymously (no SASL user), so its tenants get no
	// producer credential and publish anonymously; no no-SASL phase on an
	// external cluster. The naive store's shared topic is its own.
	if res := rep.Runs[0]; res.VaultEventsPerSec <= 0 || res.KafkaOnly == nil || res.KafkaBadger == nil || res.KafkaBadger.EventsPerSec <= 0 ||
		res.VaultProducers != "anonymous" || res.VaultNoSASL != nil || res.SASLRatio != 0 || res.Naive == nil || res.Naive.EventsPerSec <= 0 {
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
		if strings.HasPrefix(topic, "tenant.b") || strings.HasPrefix(topic, "bench.shared") {
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
