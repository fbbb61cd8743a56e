package server_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/internal/server"
)

// TestRotateMasterKey re-wraps every keyset under a new master key through
// the API: data stays readable, the vault restarts with the new key, and
// the old key no longer opens the keystore.
func TestRotateMasterKey(t *testing.T) {
	dir := t.TempDir()
	v := mustStart(t, dir, "")
	tok := v.createTenant("mk")
	v.publish("tenant.mk.events", rec("s", event("m1", "s", "t.set", `{"a":1}`)))
	v.waitVersion("mk", tok, "s", 1)

	newURI := "local://" + filepath.Join(dir, "master-2026.key")
	for _, bad := range []string{"", "not-a-uri"} {
		if st := v.do("POST", "/v1/master-key/rotate", v.srv.AdminToken(), map[string]string{"new_master_key": bad}, nil); st != 400 {
			t.Fatalf("rotate master to %q = %d, want 400", bad, st)
		}
	}
	if st := v.do("POST", "/v1/master-key/rotate", tok, map[string]string{"new_master_key": newURI}, nil); st != 403 {
		t.Fatalf("rotate master with a tenant token = %d, want 403", st)
	}
	if st := v.do("POST", "/v1/master-key/rotate", v.srv.AdminToken(), map[string]string{"new_master_key": newURI}, nil); st != 200 {
		t.Fatalf("rotate master = %d", st)
	}
	// The running vault goes on, under the new master key.
	v.publish("tenant.mk.events", rec("s", event("m2", "s", "t.set", `{"b":2}`)))
	v.waitVersion("mk", tok, "s", 2)
	if n := len(v.audit("action=master.rotate").Records); n != 4 {
		t.Fatalf("master.rotate audit records = %d, want 4 (2 rejected, 1 denied, 1 ok)", n)
	}
	v.stop()

	// The old master key no longer opens the data dir ...
	old := &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0"}}
	err := old.Open(context.Background())
	old.Close()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "master") {
		t.Fatalf("Open with the old master key = %v, want a clear master key error", err)
	}
	// ... the new one does, and everything reads.
	v = mustStartWith(t, dir, "", func(c *server.Config) { c.MasterKey = newURI })
	if s := v.waitVersion("mk", tok, "s", 2); !strings.Contains(string(s.Data), `"b":2`) {
		t.Fatalf("state after master rotation and restart = %s", s.Data)
	}
	// The audit checkpoint signer was re-wrapped too: checkpoints still sign.
	if cp := string(v.get("/v1/audit/checkpoint")); !strings.HasPrefix(cp, "tenantvault/audit\n") {
		t.Fatalf("checkpoint after master rotation = %q", cp)
	}
}
