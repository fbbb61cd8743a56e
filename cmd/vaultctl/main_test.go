package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/server"
)

// TestCLI drives vaultctl against an in-process vaultd, the way the README's
// quickstart does: admin token found in the data dir, tenant token from env.
// startVault runs an in-process vaultd on dir and returns the environment
// vaultctl needs to reach it.
func startVault(t *testing.T, dir string) map[string]string {
	t.Helper()
	srv := &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0"}}
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
		"TENANTVAULT_BROKERS":  srv.Brokers()[0],
	}
}

// ctl runs vaultctl commands against env.
type ctl struct {
	t   *testing.T
	env map[string]string
}

func (c ctl) run(args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb, func(k string) string { return c.env[k] })
	return out.String(), err
}

func (c ctl) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("vaultctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	env := startVault(t, dir)
	c := ctl{t, env}
	vaultctl, must := c.run, c.must

	kafkaConfig := filepath.Join(t.TempDir(), "acme.kafka")
	token := strings.TrimSpace(must("tenant", "create", "acme", "--kafka-config", kafkaConfig))
	if !strings.HasPrefix(token, "tvt_") {
		t.Fatalf("tenant create printed %q, want a token", token)
	}
	if fi, err := os.Stat(kafkaConfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kafka config %s: %v, %v; want a 0600 file", kafkaConfig, fi, err)
	}
	if b, _ := os.ReadFile(kafkaConfig); !strings.Contains(string(b), "sasl.username=tenant-acme\n") || !strings.Contains(string(b), "sasl.password=tvk_") {
		t.Fatalf("kafka config = %s", b)
	}
	// Without its credential, publish is refused by the broker, and says why.
	if _, err := vaultctl("publish", "--tenant", "acme", "--stream", "order-1", "--type", "order.placed", "--data", `{"total":666}`); err == nil || !strings.Contains(err.Error(), "--kafka-config") {
		t.Fatalf("anonymous publish = %v, want a refusal naming --kafka-config", err)
	}
	env["TENANTVAULT_KAFKA_CONFIG"] = kafkaConfig
	if out := must("tenant", "list"); !strings.Contains(out, `"acme"`) {
		t.Fatalf("tenant list = %s", out)
	}
	// One node: cluster status says so (404).
	if _, err := vaultctl("cluster", "status"); err == nil || !strings.Contains(err.Error(), "not a node of a cluster") {
		t.Fatalf("cluster status on one node = %v, want a 404 saying so", err)
	}
	if _, err := vaultctl("tenant", "create", "../evil"); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("tenant create ../evil = %v, want an invalid-id error", err)
	}
	must("publish", "--tenant", "acme", "--stream", "order-1", "--type", "order.placed", "--data", `{"total":12}`)
	must("publish", "--tenant", "acme", "--stream", "order-1", "--type", "order.paid", "--data", `{"paid":true}`, "--id", "pay-1")

	env["TENANTVAULT_TOKEN"] = token
	var state struct {
		Version uint64
		Data    map[string]any
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := vaultctl("get", "--tenant", "acme", "order-1")
		if err == nil {
			if err := json.Unmarshal([]byte(out), &state); err != nil {
				t.Fatalf("get printed %q: %v", out, err)
			}
			if state.Version == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("order-1 not at version 2 after 20s: %v %+v", err, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if state.Data["total"] != 12.0 || state.Data["paid"] != true {
		t.Fatalf("get = %+v", state)
	}
	if out := must("events", "order-1", "--tenant", "acme"); !strings.Contains(out, `"pay-1"`) || !strings.Contains(out, `"order.placed"`) {
		t.Fatalf("events = %s", out)
	}
	if out := must("streams", "--tenant", "acme"); !strings.Contains(out, `"order-1"`) {
		t.Fatalf("streams = %s", out)
	}
	if out := must("quarantine", "--tenant", "acme"); !strings.Contains(out, `"quarantine"`) {
		t.Fatalf("quarantine = %s", out)
	}
	// A tenant token cannot read the audit log; the admin one (from the data dir) can.
	if _, err := vaultctl("audit"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("audit with tenant token = %v, want 403", err)
	}
	delete(env, "TENANTVAULT_TOKEN")
	if out := must("audit", "--tenant", "acme", "--action", "stream.read"); !strings.Contains(out, `"stream.read"`) {
		t.Fatalf("audit = %s", out)
	}
	env["TENANTVAULT_TOKEN"] = "tvt_wrong"
	if _, err := vaultctl("get", "--tenant", "acme", "order-1"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("get with a wrong token = %v, want 401", err)
	}
	if _, err := vaultctl("frobnicate"); err == nil {
		t.Fatal("unknown command succeeded")
	}
}

// TestKafkaCredentialRotate: a tenant's producer credential, written once
// by tenant create, is replaced by rotate; the old one stops logging in.
func TestKafkaCredentialRotate(t *testing.T) {
	env := startVault(t, t.TempDir())
	c := ctl{t, env}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.kafka"), filepath.Join(dir, "second.kafka")
	token := strings.TrimSpace(c.must("tenant", "create", "rota", "--kafka-config", first))
	pub := func(cfg, id string) error {
		_, err := c.run("publish", "--tenant", "rota", "--stream", "s", "--type", "t.set", "--data", `{"id":"`+id+`"}`, "--id", id, "--kafka-config", cfg)
		return err
	}
	if err := pub(first, "e1"); err != nil {
		t.Fatalf("publish with the first credential: %v", err)
	}
	// A tenant's own API token cannot rotate it.
	c.env["TENANTVAULT_TOKEN"] = token
	if _, err := c.run("tenant", "kafka-credential", "rotate", "rota", "--kafka-config", second); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("rotate with the tenant token = %v, want 403", err)
	}
	delete(c.env, "TENANTVAULT_TOKEN")
	c.must("tenant", "kafka-credential", "rotate", "rota", "--kafka-config", second)
	if err := pub(first, "e2"); err == nil {
		t.Fatal("publish with the rotated-out credential: accepted")
	}
	if err := pub(second, "e3"); err != nil {
		t.Fatalf("publish with the new credential: %v", err)
	}
	b1, _ := os.ReadFile(first)
	b2, _ := os.ReadFile(second)
	if string(b1) == string(b2) {
		t.Fatal("rotate wrote the same credential")
	}
	if _, err := c.run("tenant", "kafka-credential", "rotate", "nobody"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("rotate an unknown tenant = %v, want 404", err)
	}
	if _, err := c.run("tenant", "kafka-credential"); err == nil {
		t.Fatal("tenant kafka-credential without a subcommand: no error")
	}
	// Without --kafka-config the credential is shown on stderr once.
	var out, errb strings.Builder
	if err := run(context.Background(), []string{"tenant", "kafka-credential", "rotate", "rota"}, &out, &errb, func(k string) string { return c.env[k] }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "sasl.username=tenant-rota") || !strings.Contains(errb.String(), "sasl.password=tvk_") || out.Len() != 0 {
		t.Fatalf("rotate without --kafka-config: stdout %q, stderr %q", out.String(), errb.String())
	}
}

// TestBreakGlassReachesTheVault: vaultctl sends the --break-glass reason
// to vaultd, which serves the admin's read, records the reason in the
// read's audit record and flags it break_glass (not admin_on_tenant_data);
// a reason that cannot travel in a header is refused before any request.
func TestBreakGlassReachesTheVault(t *testing.T) {
	dir := t.TempDir()
	env := startVault(t, dir)
	c := ctl{t, env}
	kafkaConfig := filepath.Join(t.TempDir(), "acme.kafka")
	token := strings.TrimSpace(c.must("tenant", "create", "acme", "--kafka-config", kafkaConfig))
	env["TENANTVAULT_KAFKA_CONFIG"] = kafkaConfig
	c.must("publish", "--tenant", "acme", "--stream", "order-1", "--type", "order.placed", "--data", `{"total":12}`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		env["TENANTVAULT_TOKEN"] = token
		_, err := c.run("get", "--tenant", "acme", "order-1")
		delete(env, "TENANTVAULT_TOKEN")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order-1 not readable after 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if _, err := c.run("get", "--tenant", "acme", "order-1", "--break-glass", "line one\nline two"); !errors.Is(err, errBadBreakGlass) {
		t.Fatalf("get --break-glass with a newline = %v, want %v", err, errBadBreakGlass)
	}
	out := c.must("get", "--tenant", "acme", "order-1", "--break-glass", "INC-42 customer asked")
	if !strings.Contains(out, `"total": 12`) {
		t.Fatalf("break-glass get = %s", out)
	}
	var got struct {
		Records []struct {
			Action    string            `json:"action"`
			Principal string            `json:"principal"`
			Flagged   bool              `json:"flagged"`
			Reason    string            `json:"reason"`
			Details   map[string]string `json:"details"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(c.must("audit", "--tenant", "acme", "--action", "stream.read")), &got); err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, r := range got.Records {
		if r.Principal != "admin" {
			continue
		}
		seen = true
		if !r.Flagged || !strings.HasPrefix(r.Reason, "break-glass") || r.Details["break_glass"] != "INC-42 customer asked" {
			t.Errorf("admin read record = %+v, want flagged break_glass with the reason", r)
		}
	}
	if !seen {
		t.Fatalf("no admin stream.read record in %+v", got.Records)
	}
}
