package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/server"
)

// startVaultOn runs a second in-process vaultd on dir with the first's
// broker (--brokers, its SCRAM superuser) and a consumer group of its own,
// and returns the environment vaultctl needs to reach it.
func startVaultOn(t *testing.T, dir string, first map[string]string) (map[string]string, *server.Server) {
	t.Helper()
	srv := &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Brokers: []string{first["TENANTVAULT_BROKERS"]},
		KafkaSASLUser: server.DefaultEmbeddedSASLUser, KafkaSASLPasswordFile: server.DefaultKafkaPasswordFile(first["TENANTVAULT_DATA_DIR"]),
		ConsumerGroup: "tenantvault-b", AuditOrigin: "vault-b.example/audit"}}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Open(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return map[string]string{
		"TENANTVAULT_ADDR":     "http://" + srv.HTTPAddr(),
		"TENANTVAULT_DATA_DIR": dir,
		"TENANTVAULT_BROKERS":  first["TENANTVAULT_BROKERS"],
	}, srv
}

// waitHistory waits until the stream's history holds n events and returns
// their ids, in version order.
func waitHistory(t *testing.T, c ctl, stream string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.run("events", stream, "--tenant", "acme")
		var page struct {
			Events []struct {
				Version uint64
				Offset  int64
				ID      string
			}
		}
		if err == nil && json.Unmarshal([]byte(out), &page) == nil && len(page.Events) >= n {
			var ids []string
			for i, e := range page.Events {
				if e.Version != uint64(i+1) {
					t.Fatalf("event %d has version %d: versions renumbered or duplicated", i, e.Version)
				}
				ids = append(ids, e.ID)
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not %d events after 30s: %v %s", stream, n, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTenantMove moves a tenant between two vaultd processes on one broker
// with vaultctl tenant move, while its producer keeps publishing: every
// event is on the destination exactly once, with the versions and ids the
// source gave them; the destination verified the source's audit proof;
// the source answers 410 (moved, naming the destination) and has nothing
// of the tenant left.
func TestTenantMove(t *testing.T) {
	dirA := t.TempDir()
	envA := startVault(t, dirA)
	envB, _ := startVaultOn(t, t.TempDir(), envA)
	a := ctl{t, envA}
	kafkaConfig := filepath.Join(t.TempDir(), "acme.kafka")
	token := strings.TrimSpace(a.must("tenant", "create", "acme", "--kafka-config", kafkaConfig))
	envA["TENANTVAULT_KAFKA_CONFIG"] = kafkaConfig
	publish := func(i int) {
		a.must("publish", "--tenant", "acme", "--stream", "order-1", "--type", "order.step", "--id", fmt.Sprintf("e-%03d", i), "--data", fmt.Sprintf(`{"step":%d}`, i))
	}
	for i := range 10 {
		publish(i)
	}
	envA["TENANTVAULT_TOKEN"] = token
	before := waitHistory(t, a, "order-1", 10)
	delete(envA, "TENANTVAULT_TOKEN")

	// Events published while the move runs and after it.
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 10; i < 20; i++ {
			publish(i)
		}
	}()
	bAdmin, err := os.ReadFile(filepath.Join(envB["TENANTVAULT_DATA_DIR"], "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	out := a.must("tenant", "move", "acme", "--to", envB["TENANTVAULT_ADDR"], "--to-token", strings.TrimSpace(string(bAdmin)))
	var res struct {
		Imported struct {
			Records      uint64 `json:"records"`
			AuditRecords uint64 `json:"audit_records_verified"`
			Offsets      map[string]int64
		}
		Moved struct {
			Destination string   `json:"destination"`
			KeyIDs      []uint32 `json:"key_ids_destroyed"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Imported.Records == 0 || res.Imported.AuditRecords == 0 ||
		res.Moved.Destination != envB["TENANTVAULT_ADDR"] || len(res.Moved.KeyIDs) == 0 {
		t.Fatalf("tenant move printed %s (%v)", out, err)
	}
	<-published
	for i := 20; i < 25; i++ {
		publish(i)
	}

	// On the destination, with the tenant's own token: all 25, once each.
	b := ctl{t, envB}
	envB["TENANTVAULT_TOKEN"] = token
	after := waitHistory(t, b, "order-1", 25)
	if len(after) != 25 || strings.Join(after[:10], ",") != strings.Join(before, ",") {
		t.Fatalf("destination history = %v, want the source's 10 then 15 more", after)
	}
	for i, id := range after {
		if id != fmt.Sprintf("e-%03d", i) {
			t.Fatalf("destination history = %v: event %d is %s", after, i, id)
		}
	}
	// On the source: 410, reason moved, naming the destination.
	envA["TENANTVAULT_TOKEN"] = token
	if _, err := a.run("events", "order-1", "--tenant", "acme"); err == nil || !strings.Contains(err.Error(), "HTTP 410") || !strings.Contains(err.Error(), "moved to "+envB["TENANTVAULT_ADDR"]) {
		t.Fatalf("events on the source after the move = %v, want 410 moved to the destination", err)
	}
	delete(envA, "TENANTVAULT_TOKEN")
	if out := a.must("audit", "--tenant", "acme", "--action", "tenant.moved"); !strings.Contains(out, envB["TENANTVAULT_ADDR"]) {
		t.Fatalf("tenant.moved audit = %s, want the destination", out)
	}
	if _, err := os.Stat(filepath.Join(dirA, "tenants", "acme")); !os.IsNotExist(err) {
		t.Fatalf("source store of acme: %v, want it removed", err)
	}
	delete(envB, "TENANTVAULT_TOKEN")
	if out := b.must("audit", "--action", "tenant.import"); !strings.Contains(out, `"audit_records_verified"`) {
		t.Fatalf("tenant.import audit on the destination = %s", out)
	}
	// A bundle cannot bring it back to the source.
	if _, err := a.run("tenant", "export", "acme", "--to", envB["TENANTVAULT_ADDR"]); err == nil || !strings.Contains(err.Error(), "410") {
		t.Fatalf("export after the move = %v, want 410", err)
	}
}
