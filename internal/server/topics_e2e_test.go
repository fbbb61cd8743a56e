package server_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

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

// The broker accepts somewhat more than --max-event-bytes, so an event
// over the limit reaches the vault and is quarantined too_large (with an
// audit record); one far over it is refused by the broker at produce.
func TestTooLargeBothSides(t *testing.T) {
	v := mustStart(t, t.TempDir(), "") // --max-event-bytes maxEventBytes
	tok := v.createTenant("acme")
	a, _ := v.producer("acme")
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.brokers()...), kgoAuth(a), kgo.ProducerBatchMaxBytes(16<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	padded := func(id string, n int) []byte {
		return event(id, "big-1", "blob.put", `{"pad":"`+strings.Repeat("x", n)+`"}`)
	}
	over := padded("big-over", maxEventBytes+maxEventBytes/8) // over the vault's limit, under the broker's
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tenant.acme.events", Key: []byte("big-1"), Value: over}).FirstErr(); err != nil {
		t.Fatalf("produce an event of %d bytes (over --max-event-bytes %d) = %v, want accepted by the broker", len(over), maxEventBytes, err)
	}
	huge := padded("big-huge", 2*maxEventBytes+128<<10) // over the broker's limit too
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tenant.acme.events", Key: []byte("big-1"), Value: huge}).FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("produce an event of %d bytes = %v, want %v", len(huge), err, kerr.MessageTooLarge)
	}
	var q struct {
		Quarantine []struct{ Code, Reason string }
	}
	waitFor(t, 30*time.Second, "the event over the limit quarantined", func() bool {
		v.do("GET", "/v1/tenants/acme/quarantine", tok, nil, &q)
		return len(q.Quarantine) > 0
	})
	if len(q.Quarantine) != 1 || q.Quarantine[0].Code != events.ETOOLARGE {
		t.Errorf("quarantine = %+v, want one entry of code %s", q.Quarantine, events.ETOOLARGE)
	}
	found := false
	for _, r := range v.audit("tenant=acme").Records {
		if r.Reason == events.ReasonTooLarge {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit record of tenant acme with reason %s", events.ReasonTooLarge)
	}
}
