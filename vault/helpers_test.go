package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/keysvault"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// testAdminToken is the admin credential of every test vault.
const testAdminToken = "admin-token-0123456789abcdef"

// keyStore and tenantCipher are the adapter internal/server uses.
type (
	keyStore     = keysvault.Keys
	tenantCipher = keysvault.Cipher
)

// fakeTopics records the topics the vault creates.
type fakeTopics struct {
	mu      sync.Mutex
	created []createdTopic
	err     error // returned by CreateTopic when set
}

type createdTopic struct {
	Topic      string
	Partitions int
}

func (f *fakeTopics) CreateTopic(_ context.Context, topic string, partitions int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.created = append(f.created, createdTopic{topic, partitions})
	return nil
}

func (f *fakeTopics) calls() []createdTopic {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.created)
}

var (
	_ vault.Keys   = keyStore{}
	_ vault.Cipher = tenantCipher{}
	_ vault.Topics = (*fakeTopics)(nil)
)

// testVault is a vault on real keys, stores and audit log in a directory.
type testVault struct {
	dir     string
	ks      *keys.Keystore
	stores  *projections.Stores
	audit   *audit.Log
	topics  *fakeTopics
	created []events.TenantID // OnTenantCreated calls
	mu      sync.Mutex
	v       *vault.Vault

	closeOnce sync.Once
}

// MustOpenVault opens a vault on a new temporary directory.
func MustOpenVault(tb testing.TB, edit func(*vault.Config)) *testVault {
	tb.Helper()
	return MustOpenVaultAt(tb, tb.TempDir(), edit)
}

// MustOpenVaultAt opens a vault on dir (which may hold a vault already),
// closed at the end of the test; edit may change the config.
func MustOpenVaultAt(tb testing.TB, dir string, edit func(*vault.Config)) *testVault {
	tb.Helper()
	discard := slog.New(slog.DiscardHandler)
	tv := &testVault{dir: dir, topics: &fakeTopics{}}
	var err error
	tv.ks, err = keys.OpenKeystore(filepath.Join(dir, "keys"), "local://"+filepath.Join(dir, "master.key"), discard)
	if err != nil {
		tb.Fatalf("OpenKeystore: %v", err)
	}
	tv.stores, err = projections.OpenStores(projections.Config{Dir: filepath.Join(dir, "tenants"), NoSync: true, Logger: discard})
	if err != nil {
		tv.ks.Close()
		tb.Fatalf("OpenStores: %v", err)
	}
	tv.audit, err = audit.Open(audit.Options{Dir: filepath.Join(dir, "audit"), Logger: discard})
	if err != nil {
		tv.stores.Close()
		tv.ks.Close()
		tb.Fatalf("audit.Open: %v", err)
	}
	tb.Cleanup(func() { tv.close(tb) })
	cfg := vault.Config{
		DataDir: dir, Keys: keyStore{KS: tv.ks}, Stores: tv.stores, Audit: tv.audit, Topics: tv.topics,
		AdminToken: testAdminToken, Logger: discard,
		OnTenantCreated: func(t events.TenantID) {
			tv.mu.Lock()
			tv.created = append(tv.created, t)
			tv.mu.Unlock()
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	if tv.v, err = vault.Open(cfg); err != nil {
		tb.Fatalf("vault.Open: %v", err)
	}
	return tv
}

// close closes what the vault was opened on; later calls do nothing.
func (tv *testVault) close(tb testing.TB) {
	tb.Helper()
	tv.closeOnce.Do(func() {
		if err := errors.Join(tv.stores.Close(), tv.audit.Close(), tv.ks.Close()); err != nil {
			tb.Errorf("close vault: %v", err)
		}
	})
}

func (tv *testVault) onCreated() []events.TenantID {
	tv.mu.Lock()
	defer tv.mu.Unlock()
	return slices.Clone(tv.created)
}

// admin returns the admin principal.
func (tv *testVault) admin(tb testing.TB) vault.Principal {
	tb.Helper()
	return tv.mustAuth(tb, testAdminToken)
}

func (tv *testVault) mustAuth(tb testing.TB, token string) vault.Principal {
	tb.Helper()
	p, err := tv.v.Authenticate(context.Background(), token, "test.auth", "test")
	if err != nil {
		tb.Fatalf("Authenticate: %v", err)
	}
	return p
}

// mustCreateTenant creates tenant id and returns its token.
func (tv *testVault) mustCreateTenant(tb testing.TB, id string) string {
	tb.Helper()
	_, token, err := tv.v.CreateTenant(context.Background(), tv.admin(tb), id)
	if err != nil {
		tb.Fatalf("CreateTenant(%q): %v", id, err)
	}
	return token
}

// mustSession opens a session of tenant on token's principal.
func (tv *testVault) mustSession(tb testing.TB, token, tenant string) *vault.Session {
	tb.Helper()
	s, err := tv.v.Session(context.Background(), tv.mustAuth(tb, token), vault.Access{Tenant: tenant, Action: audit.ActionStreamRead, Resource: "streams"})
	if err != nil {
		tb.Fatalf("Session(%q): %v", tenant, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// cipher returns the cipher of tenant t, adapted as the vault sees it.
func (tv *testVault) cipher(tb testing.TB, t string) tenantCipher {
	tb.Helper()
	c, err := tv.ks.Cipher(events.TenantID(t))
	if err != nil {
		tb.Fatalf("Cipher(%q): %v", t, err)
	}
	return tenantCipher{TenantCipher: c}
}

// recordsSince returns the audit records appended after the log held n.
func (tv *testVault) recordsSince(tb testing.TB, n uint64) []audit.Record {
	tb.Helper()
	f := audit.Filter{Limit: audit.MaxListLimit}
	if n > 0 {
		after := n - 1
		f.After = &after
	}
	recs, err := tv.audit.List(context.Background(), f)
	if err != nil {
		tb.Fatalf("audit List: %v", err)
	}
	return recs
}

// onlyRecord returns the one audit record appended after the log held n.
func (tv *testVault) onlyRecord(tb testing.TB, n uint64) audit.Record {
	tb.Helper()
	recs := tv.recordsSince(tb, n)
	if len(recs) != 1 {
		tb.Fatalf("audit records since %d: got %d, want 1: %s", n, len(recs), dump(recs))
	}
	return recs[0]
}

func dump(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// structured returns a structured-mode CloudEvent as a record value.
func structured(tb testing.TB, attrs map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(attrs)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// event returns a valid structured event id on stream with data.
func event(tb testing.TB, id, stream, data string) []byte {
	tb.Helper()
	attrs := map[string]any{"specversion": "1.0", "id": id, "source": "test", "type": "test.event", "subject": stream}
	if data != "" {
		attrs["data"] = json.RawMessage(data)
	}
	return structured(tb, attrs)
}

// codeOf is events.ErrorCode, "" for nil.
func codeOf(err error) string { return events.ErrorCode(err) }
