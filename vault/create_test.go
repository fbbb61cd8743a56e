package vault_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// purges records the tenants whose topic the vault had purged.
type purges struct {
	mu      sync.Mutex
	tenants []events.TenantID
}

func (p *purges) Stop(context.Context, events.TenantID) error { return nil }
func (p *purges) Purge(_ context.Context, t events.TenantID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tenants = append(p.tenants, t)
	return nil
}
func (p *purges) list() []events.TenantID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tenants)
}

var _ vault.Ingress = (*purges)(nil)

// assertNoTrace fails unless nothing of tenant id is left in tv: no
// registry entry, no keyset file, no store directory, no cipher.
func assertNoTrace(t *testing.T, tv *testVault, id string) {
	t.Helper()
	if got := tv.v.Tenants(); slices.Contains(got, events.TenantID(id)) {
		t.Errorf("Tenants() = %v, want no %s", got, id)
	}
	for _, p := range []string{filepath.Join(tv.dir, "keys", id+".keyset"), filepath.Join(tv.dir, "tenants", id)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%s) = %v, want not exist: a failed create left it", p, err)
		}
	}
	if _, err := tv.h.Keys.Cipher(events.TenantID(id)); err == nil {
		t.Errorf("keystore has keys of %s after a failed create", id)
	}
}

// A create whose topic name collides with a topic on the brokers fails
// with ECONFLICT (reason topic_collision) before anything is made, and
// the audit record says why; a create whose later step fails undoes the
// steps before it. Either way nothing of the tenant is left, and the
// create succeeds once the cause is gone.
func TestCreateTenantAtomic(t *testing.T) {
	fp := newFakeProducers()
	ing := &purges{}
	tv := MustOpenVault(t, withBroker(fp, func(c *vault.Config) { c.Ingress = ing }))
	ctx := context.Background()

	tv.topics.mu.Lock()
	tv.topics.err = fmt.Errorf("create topic tenant.echo.events: %w", vault.ErrTopicCollision)
	tv.topics.mu.Unlock()
	n := tv.audit.Size()
	_, tok, err := tv.v.CreateTenant(ctx, tv.admin(t), "echo")
	if events.ErrorCode(err) != events.ECONFLICT || events.ErrorReason(err) != events.ReasonTopicCollision || tok != "" {
		t.Fatalf("CreateTenant(echo) with a colliding topic = %q, %v (code %s, reason %s), want %s, reason %s",
			tok, err, events.ErrorCode(err), events.ErrorReason(err), events.ECONFLICT, events.ReasonTopicCollision)
	}
	rec := tv.onlyRecord(t, n)
	if rec.Action != audit.ActionTenantCreate || rec.Outcome != audit.OutcomeError || rec.Tenant != "echo" || rec.Reason == "" {
		t.Errorf("audit record = %s, want tenant.create error of echo with a reason", dump(rec))
	}
	assertNoTrace(t, tv, "echo")
	if _, ok := fp.user("tenant-echo"); ok {
		t.Errorf("broker user tenant-echo exists after a collision")
	}
	if got := ing.list(); len(got) != 0 {
		t.Errorf("topics purged after a collision = %v, want none (the colliding topic is not the vault's)", got)
	}

	tv.topics.mu.Lock()
	tv.topics.err = nil
	tv.topics.mu.Unlock()
	for _, step := range []string{"SetProducer", "TopicID"} {
		t.Run(step, func(t *testing.T) {
			fp.failOn(step, events.Errorf(events.EUNAVAILABLE, "broker down"))
			_, _, err := tv.v.CreateTenant(ctx, tv.admin(t), "echo")
			fp.failOn(step, nil)
			if err == nil {
				t.Fatalf("CreateTenant(echo) with %s failing = nil, want an error", step)
			}
			assertNoTrace(t, tv, "echo")
			if _, ok := fp.user("tenant-echo"); ok {
				t.Errorf("broker user tenant-echo left after %s failed", step)
			}
			if got := ing.list(); len(got) == 0 || got[len(got)-1] != "echo" {
				t.Errorf("topics purged = %v, want echo's (created by the failed create)", got)
			}
		})
	}
	if _, _, err := tv.v.CreateTenant(ctx, tv.admin(t), "echo"); err != nil {
		t.Fatalf("CreateTenant(echo) once the broker is fine = %v, want nil", err)
	}
}
