package vault_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

func TestConfigValidate(t *testing.T) {
	full := MustOpenVault(t, nil)
	valid := vault.Config{
		DataDir: full.dir, Keys: full.h.Config.Keys, Stores: full.stores, Audit: full.audit,
		Topics: full.topics, AdminToken: testAdminToken,
	}
	tests := []struct {
		name string
		edit func(*vault.Config)
		want []string // every problem must be named; nil: valid
	}{
		{"valid", func(*vault.Config) {}, nil},
		{"zero", func(c *vault.Config) { *c = vault.Config{} }, []string{
			"DataDir is required", "Keys is required", "Stores is required", "Audit is required",
			"Topics is required", "AdminToken of at least 16 characters",
		}},
		{"short admin token and negative size", func(c *vault.Config) {
			c.AdminToken = "0123456789abcde" // 15
			c.MaxEventBytes = -1
		}, []string{"AdminToken of at least 16 characters", "MaxEventBytes must not be negative"}},
		{"admin token of 16", func(c *vault.Config) { c.AdminToken = "0123456789abcdef" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tt.want) {
				t.Errorf("Validate() reports %d problems, want %d: %q", got, len(tt.want), err)
			}
			if _, oerr := vault.Open(cfg); oerr == nil {
				t.Errorf("Open(invalid config) = nil error, want %v", err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	tv := MustOpenVault(t, nil)
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()

	tests := []struct {
		name       string
		token      string
		wantAdmin  bool
		wantTenant events.TenantID
		wantCode   string
		wantReason string // of the audit record of a denial
	}{
		{name: "admin", token: testAdminToken, wantAdmin: true},
		{name: "tenant", token: acme, wantTenant: "acme"},
		{name: "empty", token: "", wantCode: events.EUNAUTHORIZED, wantReason: "missing credential"},
		{name: "unknown", token: "tvt_not-a-token-of-anyone", wantCode: events.EUNAUTHORIZED, wantReason: "unknown credential"},
		{name: "admin token prefix", token: testAdminToken[:len(testAdminToken)-1], wantCode: events.EUNAUTHORIZED, wantReason: "unknown credential"},
		{name: "tenant token with space", token: acme + " ", wantCode: events.EUNAUTHORIZED, wantReason: "unknown credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tv.audit.Size()
			denied := tv.v.Stats().Denied.Load()
			p, err := tv.v.Authenticate(ctx, tt.token, "stream.list", "streams")
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("Authenticate(%q) = %v, want code %q", tt.token, err, tt.wantCode)
			}
			if tt.wantCode == "" {
				if p.IsAdmin() != tt.wantAdmin || p.Tenant() != tt.wantTenant {
					t.Errorf("Authenticate(%q) = admin %v tenant %q, want admin %v tenant %q", tt.token, p.IsAdmin(), p.Tenant(), tt.wantAdmin, tt.wantTenant)
				}
				if recs := tv.recordsSince(t, n); len(recs) != 0 {
					t.Errorf("Authenticate(%q) wrote %d audit records, want 0 (a success is audited by the action)", tt.token, len(recs))
				}
				return
			}
			if p.IsAdmin() || p.Tenant() != "" || p.String() != "anonymous" {
				t.Errorf("Authenticate(%q) principal = %v, want anonymous", tt.token, p)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Principal != "anonymous" || rec.Action != "stream.list" || rec.Resource != "streams" || rec.Outcome != audit.OutcomeDenied || rec.Reason != tt.wantReason {
				t.Errorf("audit record = %s, want anonymous stream.list streams denied %q", dump(rec), tt.wantReason)
			}
			if tt.token != "" {
				b, _ := json.Marshal(rec)
				if strings.Contains(string(b), tt.token) {
					t.Errorf("audit record %s holds the presented token", b)
				}
			}
			if got := tv.v.Stats().Denied.Load(); got != denied+1 {
				t.Errorf("Stats().Denied = %d, want %d", got, denied+1)
			}
		})
	}
}

func TestCreateTenantAdminOnly(t *testing.T) {
	tv := MustOpenVault(t, nil)
	acme := tv.mustAuth(t, tv.mustCreateTenant(t, "acme"))
	n := tv.audit.Size()
	_, tok, err := tv.v.CreateTenant(context.Background(), acme, "globex")
	if codeOf(err) != events.EFORBIDDEN || tok != "" {
		t.Fatalf("CreateTenant(tenant principal, %q) = %q, %v, want code %q", "globex", tok, err, events.EFORBIDDEN)
	}
	rec := tv.onlyRecord(t, n)
	if rec.Principal != "tenant:acme" || rec.Action != "tenant.create" || rec.Outcome != audit.OutcomeDenied {
		t.Errorf("audit record = %s, want tenant:acme tenant.create denied", dump(rec))
	}
	if got := tv.v.Tenants(); !slices.Equal(got, []events.TenantID{"acme"}) {
		t.Errorf("Tenants() = %v, want [acme]", got)
	}
	if _, err := tv.v.ListTenants(context.Background(), acme); codeOf(err) != events.EFORBIDDEN {
		t.Errorf("ListTenants(tenant principal) = %v, want code %q", err, events.EFORBIDDEN)
	}
	if _, err := tv.v.Audit(context.Background(), acme, audit.Filter{}); codeOf(err) != events.EFORBIDDEN {
		t.Errorf("Audit(tenant principal) = %v, want code %q", err, events.EFORBIDDEN)
	}
}

func TestCreateTenantInvalid(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	admin := tv.admin(t)
	tests := []struct {
		id       string
		wantCode string
		reason   string
	}{
		{"../x", events.EINVALID, "invalid tenant id"},
		{"A", events.EINVALID, "invalid tenant id"},
		{"", events.EINVALID, "invalid tenant id"},
		{"a", events.EINVALID, "invalid tenant id"},
		{"-ab", events.EINVALID, "invalid tenant id"},
		{"Acme", events.EINVALID, "invalid tenant id"},
		{"acme/../../etc", events.EINVALID, "invalid tenant id"},
		{strings.Repeat("a", 64), events.EINVALID, "invalid tenant id"},
		{"acme", events.ECONFLICT, "tenant exists"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			n := tv.audit.Size()
			topics := len(tv.topics.calls())
			info, tok, err := tv.v.CreateTenant(context.Background(), admin, tt.id)
			if codeOf(err) != tt.wantCode || tok != "" || info.ID != "" {
				t.Fatalf("CreateTenant(%q) = %+v, %q, %v, want code %q", tt.id, info, tok, err, tt.wantCode)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Principal != "admin" || rec.Action != "tenant.create" || rec.Outcome != audit.OutcomeRejected || rec.Reason != tt.reason {
				t.Errorf("audit record = %s, want admin tenant.create rejected %q", dump(rec), tt.reason)
			}
			if rec.Tenant != audit.NormalizeTenant(tt.id) {
				t.Errorf("audit record tenant = %q, want %q", rec.Tenant, audit.NormalizeTenant(tt.id))
			}
			if got := len(tv.topics.calls()); got != topics {
				t.Errorf("CreateTenant(%q) created %d topics, want 0", tt.id, got-topics)
			}
			if got := tv.v.Tenants(); !slices.Equal(got, []events.TenantID{"acme"}) {
				t.Errorf("Tenants() = %v, want [acme]", got)
			}
		})
	}
	// Nothing named after an invalid id reached the disk.
	for _, p := range []string{filepath.Join(tv.dir, "x"), filepath.Join(tv.dir, "tenants", "A"), filepath.Join(tv.dir, "keys", "A.keyset")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("Stat(%s) = %v, want not exist", p, err)
		}
	}
}

func TestCreateTenant(t *testing.T) {
	dir := t.TempDir()
	tv := MustOpenVaultAt(t, dir, func(c *vault.Config) { c.Partitions = 3 })
	ctx := context.Background()
	admin := tv.admin(t)
	long := strings.Repeat("a", events.MaxTenantIDLen) // the longest valid id
	tokens := map[string]string{}
	for _, id := range []string{"acme", "globex", "a1", long} {
		n := tv.audit.Size()
		info, token, err := tv.v.CreateTenant(ctx, admin, id)
		if err != nil {
			t.Fatalf("CreateTenant(%q) = %v, want nil", id, err)
		}
		tokens[id] = token
		if info.ID != events.TenantID(id) || info.Topic != "tenant."+id+".events" || info.Created.IsZero() {
			t.Errorf("CreateTenant(%q) info = %+v", id, info)
		}
		if !strings.HasPrefix(token, "tvt_") || len(token) < 40 {
			t.Errorf("CreateTenant(%q) token = %q, want tvt_ and 256 bits", id, token)
		}
		rec := tv.onlyRecord(t, n)
		primary := tv.cipher(t, id).PrimaryKeyID()
		if rec.Principal != "admin" || rec.Action != "tenant.create" || rec.Tenant != id || rec.Outcome != audit.OutcomeOK || rec.Flagged ||
			!slices.Equal(rec.KeyIDs, []uint32{primary}) {
			t.Errorf("audit record = %s, want admin tenant.create %s ok, key ids [%d]", dump(rec), id, primary)
		}
		if b, _ := json.Marshal(rec); strings.Contains(string(b), token) {
			t.Errorf("audit record %s holds the token", b)
		}
	}
	if tokens["acme"] == tokens["globex"] {
		t.Errorf("two tenants got the same token %q", tokens["acme"])
	}

	wantTopics := []createdTopic{{"tenant.acme.events", 3}, {"tenant.globex.events", 3}, {"tenant.a1.events", 3}, {"tenant." + long + ".events", 3}}
	if got := tv.topics.calls(); !slices.Equal(got, wantTopics) {
		t.Errorf("CreateTopic calls = %v, want %v", got, wantTopics)
	}
	if got, want := tv.onCreated(), []events.TenantID{"acme", "globex", "a1", events.TenantID(long)}; !slices.Equal(got, want) {
		t.Errorf("OnTenantCreated calls = %v, want %v", got, want)
	}

	// The registry holds only the SHA-256 of each token.
	b, err := os.ReadFile(filepath.Join(dir, "tenants.json"))
	if err != nil {
		t.Fatal(err)
	}
	for id, tok := range tokens {
		if strings.Contains(string(b), tok) || strings.Contains(string(b), strings.TrimPrefix(tok, "tvt_")) {
			t.Errorf("tenants.json holds the token of %s:\n%s", id, b)
		}
		h := sha256.Sum256([]byte(tok))
		if !strings.Contains(string(b), hex.EncodeToString(h[:])) {
			t.Errorf("tenants.json lacks the SHA-256 of the token of %s:\n%s", id, b)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "tenants.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tenants.json mode = %v, %v, want 0600", fi.Mode().Perm(), err)
	}

	list, err := tv.v.ListTenants(ctx, admin)
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	ids := make([]events.TenantID, len(list))
	for i, ti := range list {
		ids[i] = ti.ID
	}
	wantIDs := []events.TenantID{"a1", events.TenantID(long), "acme", "globex"}
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("ListTenants() ids = %v, want %v", ids, wantIDs)
	}
	if lb, _ := json.Marshal(list); strings.Contains(string(lb), tokens["acme"]) {
		t.Errorf("ListTenants() = %s, holds a token", lb)
	}

	// Re-open from the same directory: tenants and tokens survive.
	tv.close(t)
	tv2 := MustOpenVaultAt(t, dir, nil)
	if got := tv2.v.Tenants(); !slices.Equal(got, wantIDs) {
		t.Errorf("Tenants() after re-open = %v, want %v", got, wantIDs)
	}
	for id, tok := range tokens {
		p, err := tv2.v.Authenticate(ctx, tok, "test", "test")
		if err != nil || p.Tenant() != events.TenantID(id) {
			t.Errorf("Authenticate(token of %s) after re-open = %v, %v, want tenant %s", id, p, err, id)
		}
	}
	s := tv2.mustSession(t, tokens["acme"], "acme")
	if _, _, err := s.Streams(ctx, "", 10); err != nil {
		t.Errorf("Streams after re-open = %v, want nil", err)
	}
	if _, _, err := tv2.v.CreateTenant(ctx, tv2.admin(t), "acme"); codeOf(err) != events.ECONFLICT {
		t.Errorf("CreateTenant(%q) after re-open = %v, want code %q", "acme", err, events.ECONFLICT)
	}
	if err := tv2.v.EnsureBroker(ctx); err != nil {
		t.Fatalf("EnsureBroker: %v", err)
	}
	if got := len(tv2.topics.calls()); got != len(wantIDs) {
		t.Errorf("EnsureBroker created %d topics, want %d", got, len(wantIDs))
	}
}

func TestCreateTenantTopicFailure(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.topics.err = events.Errorf(events.EUNAVAILABLE, "broker down")
	ctx := context.Background()
	n := tv.audit.Size()
	if _, tok, err := tv.v.CreateTenant(ctx, tv.admin(t), "acme"); err == nil || tok != "" {
		t.Fatalf("CreateTenant with a failing broker = %q, %v, want an error", tok, err)
	}
	rec := tv.onlyRecord(t, n)
	if rec.Action != "tenant.create" || rec.Outcome != audit.OutcomeError {
		t.Errorf("audit record = %s, want tenant.create error", dump(rec))
	}
	if got := tv.v.Tenants(); len(got) != 0 {
		t.Errorf("Tenants() = %v, want none", got)
	}
	// The create is repeatable once the broker is back (keys are reused).
	tv.topics.mu.Lock()
	tv.topics.err = nil
	tv.topics.mu.Unlock()
	if _, _, err := tv.v.CreateTenant(ctx, tv.admin(t), "acme"); err != nil {
		t.Fatalf("CreateTenant after the broker is back = %v, want nil", err)
	}
	_, release, err := tv.stores.Acquire("acme")
	if err != nil {
		t.Fatalf("store of acme: %v", err)
	}
	release()
}

// Compile-time check that the projections store accepts the adapter.
var _ projections.Cipher = (*keys.TenantCipher)(nil)

// Compile-time check that the projections store accepts the vault's cipher.
var _ projections.Cipher = vault.Cipher(nil)
