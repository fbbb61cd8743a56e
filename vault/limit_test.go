package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// TestMaxTenants: a create past MaxTenants is refused (ECONFLICT, saying
// why), audited, and leaves nothing behind; a shredded tenant frees its
// place.
func TestMaxTenants(t *testing.T) {
	ctx := context.Background()
	tv := MustOpenVault(t, func(c *vault.Config) { c.MaxTenants = 2 })
	admin := tv.admin(t)
	tv.mustCreateTenant(t, "one")
	tv.mustCreateTenant(t, "two")
	n := tv.audit.Size()
	_, _, err := tv.v.CreateTenant(ctx, admin, "three")
	if events.ErrorCode(err) != events.ECONFLICT || !strings.Contains(err.Error(), "tenant limit reached") {
		t.Fatalf("CreateTenant past MaxTenants = %v, want %s naming the tenant limit", err, events.ECONFLICT)
	}
	rec := tv.onlyRecord(t, n)
	if rec.Action != audit.ActionTenantCreate || rec.Outcome != audit.OutcomeRejected || rec.Tenant != "three" || rec.Reason != "tenant limit reached" {
		t.Errorf("audit record of the refused create = %+v, want tenant.create rejected for three, reason tenant limit reached", rec)
	}
	infos, err := tv.v.ListTenants(ctx, admin)
	if err != nil || len(infos) != 2 {
		t.Fatalf("ListTenants = %v, %v; want the 2 tenants only", infos, err)
	}
	if _, err := tv.v.Shred(ctx, admin, "two", "two"); err != nil {
		t.Fatalf("Shred(two): %v", err)
	}
	if _, _, err := tv.v.CreateTenant(ctx, admin, "three"); err != nil {
		t.Errorf("CreateTenant after a shred freed a place = %v, want nil", err)
	}
}
