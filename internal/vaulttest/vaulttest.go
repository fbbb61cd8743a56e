package vaulttest

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// AdminToken is the admin credential of every harness vault.
const AdminToken = "admin-token-0123456789abcdef"

// Harness is a vault and what it was opened on. Its fields are set by
// MustOpen and must not be changed.
type Harness struct {
	Dir    string              // the data directory: keys/, tenants/, audit/, master.key
	Keys   *keys.Keystore      // the tenants' keysets under Dir/keys
	Stores *projections.Stores // the tenant stores under Dir/tenants
	Audit  *audit.Log          // the audit log under Dir/audit
	Vault  *vault.Vault
	// Config is what vault.Open was given, after every Config option.
	Config vault.Config

	closeOnce sync.Once
}

// Option changes how MustOpen opens a vault.
type Option func(*options)

type options struct {
	dir    string
	origin string // audit checkpoint origin; "" for no signer
	edits  []func(*vault.Config)
}

// Movable gives the vault what export and import need: an audit log
// signed by the keystore's audit key under origin (checkpoints, the
// bundle's signature) and the keystore as its KeyMover.
func Movable(origin string) Option { return func(o *options) { o.origin = origin } }

// Dir opens the vault on dir (which may hold a vault already) instead of a
// new tb.TempDir().
func Dir(dir string) Option { return func(o *options) { o.dir = dir } }

// Config has edit change the vault's config before vault.Open; edits run
// in the order given, after the harness has filled every field it sets.
func Config(edit func(*vault.Config)) Option {
	return func(o *options) {
		if edit != nil {
			o.edits = append(o.edits, edit)
		}
	}
}

// MustOpen opens a vault on real keys, stores and audit log in one
// directory (a new tb.TempDir() unless Dir is given), with AdminToken as
// its admin credential, a discarding logger and Topics that accept every
// topic (unless a Config option sets them). The vault and what it was
// opened on are closed when the test ends, or earlier by Close.
func MustOpen(tb testing.TB, opts ...Option) *Harness {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.dir == "" {
		o.dir = tb.TempDir()
	}
	discard := slog.New(slog.DiscardHandler)
	h := &Harness{Dir: o.dir}
	var err error
	h.Keys, err = keys.OpenKeystore(filepath.Join(o.dir, "keys"), "local://"+filepath.Join(o.dir, "master.key"), discard)
	if err != nil {
		tb.Fatalf("OpenKeystore: %v", err)
	}
	h.Stores, err = projections.OpenStores(projections.Config{Dir: filepath.Join(o.dir, "tenants"), NoSync: true, Logger: discard})
	if err != nil {
		h.Keys.Close()
		tb.Fatalf("OpenStores: %v", err)
	}
	aopts := audit.Options{Dir: filepath.Join(o.dir, "audit"), Logger: discard}
	var signer *keys.CheckpointSigner
	if o.origin != "" {
		if signer, err = h.Keys.AuditSigner(o.origin); err != nil {
			tb.Fatalf("AuditSigner: %v", err)
		}
		aopts.Signer, aopts.VerifierKey = signer, signer.VerifierKey()
	}
	h.Audit, err = audit.Open(aopts)
	if err != nil {
		h.Stores.Close()
		h.Keys.Close()
		tb.Fatalf("audit.Open: %v", err)
	}
	tb.Cleanup(func() { h.Close(tb) })
	h.Config = vault.Config{
		DataDir: o.dir, Keys: vault.KeysOf(h.Keys), Stores: h.Stores, Audit: h.Audit, Topics: nopTopics{},
		AdminToken: AdminToken, Logger: discard,
	}
	if signer != nil {
		h.Config.Mover = KeyMover{h.Keys}
		h.Config.SignNote = func(text string) ([]byte, error) { return note.Sign(&note.Note{Text: text}, signer) }
	}
	for _, edit := range o.edits {
		edit(&h.Config)
	}
	if h.Vault, err = vault.Open(h.Config); err != nil {
		tb.Fatalf("vault.Open: %v", err)
	}
	return h
}

// nopTopics accepts every topic.
type nopTopics struct{}

func (nopTopics) CreateTopic(context.Context, string, int) error { return nil }

var _ vault.Topics = nopTopics{}

// Close stops the vault's background jobs and closes the stores, the audit
// log and the keystore, reporting a failure to tb; later calls do nothing.
// Anything still using a store (an HTTP server, a session) must be closed
// first.
func (h *Harness) Close(tb testing.TB) {
	tb.Helper()
	h.closeOnce.Do(func() {
		var errs []error
		if h.Vault != nil {
			errs = append(errs, h.Vault.Close())
		}
		errs = append(errs, h.Stores.Close(), h.Audit.Close(), h.Keys.Close())
		if err := errors.Join(errs...); err != nil {
			tb.Errorf("close vault: %v", err)
		}
	})
}

// MustAuthenticate returns the principal of token, failing tb if the vault
// refuses it.
func (h *Harness) MustAuthenticate(tb testing.TB, token string) vault.Principal {
	tb.Helper()
	p, err := h.Vault.Authenticate(context.Background(), token, "test.auth", "test")
	if err != nil {
		tb.Fatalf("Authenticate: %v", err)
	}
	return p
}

// Admin returns the admin principal.
func (h *Harness) Admin(tb testing.TB) vault.Principal {
	tb.Helper()
	return h.MustAuthenticate(tb, AdminToken)
}

// MustCreateTenant creates tenant id as the admin and returns its token.
func (h *Harness) MustCreateTenant(tb testing.TB, id string) string {
	tb.Helper()
	_, token, err := h.Vault.CreateTenant(context.Background(), h.Admin(tb), id)
	if err != nil {
		tb.Fatalf("CreateTenant(%q): %v", id, err)
	}
	return token
}

// Cipher returns tenant t's cipher as the vault sees it.
func (h *Harness) Cipher(tb testing.TB, t string) *keys.TenantCipher {
	tb.Helper()
	c, err := h.Keys.Cipher(events.TenantID(t))
	if err != nil {
		tb.Fatalf("Cipher(%q): %v", t, err)
	}
	return c
}
