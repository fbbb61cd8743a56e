package server_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// A topic on the embedded broker whose name collides with a tenant's topic
// ('.' and '_' read alike) makes the tenant's create fail with 409 and a
// reason, leaving nothing of it: no keyset, no store, no registry entry,
// no producer principal. Once that topic is gone, the create succeeds.
func TestTenantCreateTopicCollision(t *testing.T) {
	dir := t.TempDir()
	v := mustStart(t, dir, "")
	adm, err := kafka.NewAdmin(v.brokers(), v.srv.KafkaAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	if err := adm.CreateTopic(ctx, "tenant_echo_events", 1); err != nil {
		t.Fatal(err)
	}
	for range 2 { // not once: every time
		var out struct {
			Error struct{ Code, Reason, Message string }
		}
		if st := v.do("POST", "/v1/tenants", v.srv.AdminToken(), map[string]string{"id": "echo"}, &out); st != 409 || out.Error.Code != events.ECONFLICT {
			t.Fatalf("POST /v1/tenants echo with tenant_echo_events on the broker = %d %+v, want 409 %s", st, out, events.ECONFLICT)
		}
		t.Logf("409: %+v", out.Error)
	}
	for _, p := range []string{filepath.Join(dir, "keys", "echo.keyset"), filepath.Join(dir, "tenants", "echo")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%s) = %v, want not exist: the failed create left it", p, err)
		}
	}
	var list struct{ Tenants []struct{ ID string } }
	v.do("GET", "/v1/tenants", v.srv.AdminToken(), nil, &list)
	if len(list.Tenants) != 0 {
		t.Errorf("GET /v1/tenants = %+v, want none", list.Tenants)
	}
	if has, err := adm.HasSCRAM(ctx, events.ProducerPrincipal("echo")); err != nil || has {
		t.Errorf("HasSCRAM(tenant-echo) = %v, %v, want false", has, err)
	}
	if acls, err := adm.ACLsOf(ctx, events.ProducerPrincipal("echo")); err != nil || len(acls) != 0 {
		t.Errorf("ACLsOf(tenant-echo) = %v, %v, want none", acls, err)
	}
	recs := v.audit("action=tenant.create&tenant=echo").Records
	if len(recs) != 2 || recs[0].Outcome != "error" || recs[0].Reason == "" {
		t.Errorf("audit records of echo's creates = %+v, want 2 errors with a reason", recs)
	}

	if err := adm.DeleteTopic(ctx, "tenant_echo_events"); err != nil {
		t.Fatal(err)
	}
	v.createTenant("echo")
}

// Records on the topic of a tenant the vault does not have are audited
// (ingest.skip) and then deleted from the broker: none stays there in
// plaintext.
func TestUnknownTenantTopicEmptied(t *testing.T) {
	v := mustStart(t, t.TempDir(), "")
	const topic = "tenant.ghost.events"
	v.superPublish(topic,
		rec("g-1", event("g1", "g-1", "person.created", `{"ssn":"GHOST-SECRET"}`)),
		rec("g-2", event("g2", "g-2", "person.created", `{"ssn":"GHOST-SECRET"}`)),
		rec("g-3", event("g3", "g-3", "person.created", `{"ssn":"GHOST-SECRET"}`)))
	adm, err := kafka.NewAdmin(v.brokers(), v.srv.KafkaAuth())
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ctx := context.Background()
	waitFor(t, 30*time.Second, "the unknown tenant's records deleted", func() bool {
		starts, err := adm.LogStartOffsets(ctx, topic)
		return err == nil && starts[0] >= 3
	})
	skips := 0
	for _, r := range v.audit("action=ingest.skip").Records {
		if r.Reason == events.ReasonTenantUnknown {
			skips++
		}
	}
	if skips == 0 {
		t.Errorf("no ingest.skip record of reason %s: the records were deleted unaudited", events.ReasonTenantUnknown)
	}
}
