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

	"github.com/tenantvault/tenantvault/internal/kafka"
)

// TestRunSmall runs every phase of the load command on a few events: the
// vault's end-to-end phase checks over HTTP that each event is queryable.
// It asserts what was done, not how fast.
func TestRunSmall(t *testing.T) {
	c := config{events: 600, tenants: 3, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2}
	rep, out := mustRun(t, c)
	for _, want := range []string{"vault end-to-end:", "badger baseline:", "kafka only:", "kafka -> badger:", "ratio vault/baseline:", "ratio kafka->badger/baseline:", "ratio vault/(kafka->badger):", "run 2 of 2", "median ratio vault/baseline over 2 runs:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if len(rep.Runs) != 2 || rep.MedianRatio <= 0 || rep.MedianKafkaBadgerRatio <= 0 || rep.MedianCeilingRatio <= 0 {
		t.Fatalf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.Events != 600 || res.VaultEventsPerSec <= 0 || res.BaselineEventsPerSec <= 0 || res.Batches <= 0 ||
			res.KafkaOnly == nil || res.KafkaOnly.EventsPerSec <= 0 || res.KafkaBadger == nil || res.KafkaBadger.Ratio <= 0 {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
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
	if res := rep.Runs[0]; res.VaultEventsPerSec <= 0 || res.KafkaOnly == nil || res.KafkaBadger == nil || res.KafkaBadger.EventsPerSec <= 0 {
		t.Errorf("results = %+v", res)
	}
	admin, err := kafka.NewAdmin([]string{broker.Addr()})
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
