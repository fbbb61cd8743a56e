package vaulttest_test

import (
	"context"
	"testing"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/vaulttest"
	"github.com/tenantvault/tenantvault/vault"
)

// recordingTopics records the topics the vault creates.
type recordingTopics struct{ created []string }

func (r *recordingTopics) CreateTopic(_ context.Context, topic string, _ int) error {
	r.created = append(r.created, topic)
	return nil
}

func TestMustOpen(t *testing.T) {
	topics := &recordingTopics{}
	var order []string
	h := vaulttest.MustOpen(t,
		vaulttest.Config(func(c *vault.Config) { c.Topics = topics; order = append(order, "first") }),
		vaulttest.Config(func(c *vault.Config) { order = append(order, "second"); c.Partitions = 3 }),
	)
	if got := h.Config.Partitions; got != 3 || len(order) != 2 || order[0] != "first" || order[1] != "second" {
		t.Fatalf("Config options: Partitions = %d, run %q; want 3, [first second]", got, order)
	}
	if h.Config.AdminToken != vaulttest.AdminToken || h.Config.DataDir != h.Dir {
		t.Errorf("Config = admin token %q, data dir %q; want %q, %q", h.Config.AdminToken, h.Config.DataDir, vaulttest.AdminToken, h.Dir)
	}
	if !h.Admin(t).IsAdmin() {
		t.Fatalf("Admin(t) is not the admin")
	}
	tok := h.MustCreateTenant(t, "acme")
	if want := events.TopicFor("acme"); len(topics.created) != 1 || topics.created[0] != want {
		t.Errorf("topics created = %q, want [%s]: the Config option's Topics are not the vault's", topics.created, want)
	}
	if p := h.MustAuthenticate(t, tok); p.Tenant() != "acme" || p.IsAdmin() {
		t.Errorf("MustAuthenticate(acme's token) = tenant %q admin %v, want tenant acme", p.Tenant(), p.IsAdmin())
	}
	c := h.Cipher(t, "acme")
	sealed, err := c.Encrypt([]byte("x"), []byte("ad"))
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if id, ok := c.KeyIDOf(sealed); !ok || id != c.PrimaryKeyID() {
		t.Errorf("KeyIDOf(sealed) = %d, %v; want the primary %d", id, ok, c.PrimaryKeyID())
	}
	if got := h.Vault.Tenants(); len(got) != 1 || got[0] != "acme" {
		t.Fatalf("Tenants() = %q, want [acme]", got)
	}
}

// TestMustOpenDir reopens a closed vault's directory: what the first vault
// wrote is there, and Close may be called again (the test's cleanup does).
func TestMustOpenDir(t *testing.T) {
	dir := t.TempDir()
	first := vaulttest.MustOpen(t, vaulttest.Dir(dir))
	tok := first.MustCreateTenant(t, "acme")
	primary := first.Cipher(t, "acme").PrimaryKeyID()
	first.Close(t)
	first.Close(t)

	again := vaulttest.MustOpen(t, vaulttest.Dir(dir))
	if again.Dir != dir {
		t.Errorf("Dir = %q, want %q", again.Dir, dir)
	}
	if p := again.MustAuthenticate(t, tok); p.Tenant() != "acme" {
		t.Errorf("reopened vault: acme's token authenticates tenant %q, want acme", p.Tenant())
	}
	if got := again.Cipher(t, "acme").PrimaryKeyID(); got != primary {
		t.Errorf("reopened vault: acme's primary key = %d, want %d", got, primary)
	}
}
