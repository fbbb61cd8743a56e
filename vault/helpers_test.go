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
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// testAdminToken is the admin credential of every test vault.
const testAdminToken = "admin-token-0123456789abcdef"

// fakeTopics records the topics the vault creates.
type fakeTopics struct {
	mu      sync.Mutex
	created []createdTopic
	err     error // returned by CreateTopic when set
	// onCreate, when set, is told of every topic created (a fakeProducers
	// gives it an id); called without mu held.
	onCreate func(topic string)
}

type createdTopic struct {
	Topic      string
	Partitions int
}

func (f *fakeTopics) CreateTopic(_ context.Context, topic string, partitions int) error {
	f.mu.Lock()
	if f.err != nil {
		err := f.err
		f.mu.Unlock()
		return err
	}
	f.created = append(f.created, createdTopic{topic, partitions})
	onCreate := f.onCreate
	f.mu.Unlock()
	if onCreate != nil {
		onCreate(topic)
	}
	return nil
}

func (f *fakeTopics) calls() []createdTopic {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.created)
}

// fakeProducers is the brokers' side of the tenants' producers (SCRAM
// users and their ACLs) and of the topics' ids, in memory. It records each
// user with its secret and the topic its ACLs name, can be told to fail a
// method, and hands out an id per topic the first time the topic is created
// (through fakeTopics.onCreate); a test changes an id (recreatedBySomeoneElse)
// or drops it (deleteTopic) to play a broker that another party touched.
type fakeProducers struct {
	mu      sync.Mutex
	secrets map[string]string // user -> secret (its SCRAM credential)
	acls    map[string]string // user -> topic its ACLs let it produce to
	allowed []string          // users of AllowProducer calls, in order
	removed []string          // users of RemoveProducer calls, in order
	ids     map[string]string // topic -> id; absent: the topic is missing
	nextID  int
	fail    map[string]error // method name -> error it returns
}

// producer is what the brokers hold of one user.
type producer struct {
	Secret string
	Topic  string // named by its ACLs; "" without ACLs
}

func newFakeProducers() *fakeProducers {
	return &fakeProducers{secrets: map[string]string{}, acls: map[string]string{}, ids: map[string]string{}, fail: map[string]error{}}
}

// failOn makes method (e.g. "RemoveProducer") return err; nil clears it.
func (f *fakeProducers) failOn(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, method)
		return
	}
	f.fail[method] = err
}

func (f *fakeProducers) SetProducer(_ context.Context, user, secret, topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["SetProducer"]; err != nil {
		return err
	}
	f.secrets[user], f.acls[user] = secret, topic
	return nil
}

func (f *fakeProducers) AllowProducer(_ context.Context, user, topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["AllowProducer"]; err != nil {
		return err
	}
	f.acls[user] = topic
	f.allowed = append(f.allowed, user)
	return nil
}

func (f *fakeProducers) RemoveProducer(_ context.Context, user string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["RemoveProducer"]; err != nil {
		return err
	}
	delete(f.secrets, user)
	delete(f.acls, user)
	f.removed = append(f.removed, user)
	return nil
}

func (f *fakeProducers) HasProducer(_ context.Context, user string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["HasProducer"]; err != nil {
		return false, err
	}
	_, ok := f.secrets[user]
	return ok, nil
}

func (f *fakeProducers) TopicID(_ context.Context, topic string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["TopicID"]; err != nil {
		return "", err
	}
	id, ok := f.ids[topic]
	if !ok {
		return "", fmt.Errorf("topic %s: %w", topic, vault.ErrTopicMissing)
	}
	return id, nil
}

// topicCreated gives a topic that has none a new id (CreateTopic of an
// existing topic changes nothing).
func (f *fakeProducers) topicCreated(topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ids[topic]; !ok {
		f.ids[topic] = f.newIDLocked()
	}
}

func (f *fakeProducers) newIDLocked() string {
	f.nextID++
	return fmt.Sprintf("%032x", f.nextID)
}

// topicID is topic's current id on the fake brokers ("" when missing).
func (f *fakeProducers) topicID(topic string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ids[topic]
}

// recreatedBySomeoneElse deletes topic and creates it again past the
// vault: it gets a new id, which it returns.
func (f *fakeProducers) recreatedBySomeoneElse(topic string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids[topic] = f.newIDLocked()
	return f.ids[topic]
}

// deleteTopic makes topic missing on the brokers.
func (f *fakeProducers) deleteTopic(topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ids, topic)
}

// dropUser loses user's credential (a broker that lost its state), keeping
// its ACLs.
func (f *fakeProducers) dropUser(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.secrets, user)
}

// user returns what the brokers hold of user.
func (f *fakeProducers) user(user string) (producer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[user]
	return producer{Secret: s, Topic: f.acls[user]}, ok
}

func (f *fakeProducers) allowCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.allowed)
}

// withBroker wires fp as the vault's Producers and TopicIDs (and edit, when
// not nil, changes the config further).
func withBroker(fp *fakeProducers, edit func(*vault.Config)) func(*vault.Config) {
	return func(c *vault.Config) {
		c.Producers, c.TopicIDs = fp, fp
		if edit != nil {
			edit(c)
		}
	}
}

var (
	_ vault.TenantKeys[*keys.TenantCipher] = (*keys.Keystore)(nil)
	_ vault.KeyOwners                      = (*keys.Keystore)(nil)
	_ vault.KeyDestroyer                   = (*keys.Keystore)(nil)
	_ vault.KeyAdmin                       = (*keys.Keystore)(nil)
	_ vault.Cipher                         = (*keys.TenantCipher)(nil)
	_ vault.Topics                         = (*fakeTopics)(nil)
	_ vault.Producers                      = (*fakeProducers)(nil)
	_ vault.TopicIDs                       = (*fakeProducers)(nil)
)

// testVault is a vault on real keys, stores and audit log in a directory.
type testVault struct {
	dir    string
	ks     *keys.Keystore
	stores *projections.Stores
	audit  *audit.Log
	topics *fakeTopics
	// producers is the config's TopicIDs when it is a *fakeProducers (the
	// topics it is told of get ids); nil otherwise.
	producers *fakeProducers
	created   []events.TenantID // OnTenantCreated calls
	mu        sync.Mutex
	v         *vault.Vault

	closeOnce sync.Once
}

// MustOpenVault opens a vault on a new temporary directory.
func MustOpenVault(tb testing.TB, edit func(*vault.Config)) *testVault {
	tb.Helper()
	return MustOpenVaultAt(tb, tb.TempDir(), edit)
}

// MustOpenVaultAt opens a vault on dir (which may hold a vault already),
// closed at the end of the test; edit may change the config. A
// *fakeProducers set as the config's TopicIDs (see withBroker) is told of
// the topics created, to give them ids.
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
		DataDir: dir, Keys: vault.KeysOf(tv.ks), Stores: tv.stores, Audit: tv.audit, Topics: tv.topics,
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
	if fp, ok := cfg.TopicIDs.(*fakeProducers); ok && fp != nil {
		tv.producers = fp
		tv.topics.onCreate = fp.topicCreated
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
		var verr error
		if tv.v != nil {
			verr = tv.v.Close() // before the audit log: it writes the open aggregates
		}
		if err := errors.Join(verr, tv.stores.Close(), tv.audit.Close(), tv.ks.Close()); err != nil {
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

// cipher returns the cipher of tenant t, the one the vault sees.
func (tv *testVault) cipher(tb testing.TB, t string) *keys.TenantCipher {
	tb.Helper()
	c, err := tv.ks.Cipher(events.TenantID(t))
	if err != nil {
		tb.Fatalf("Cipher(%q): %v", t, err)
	}
	return c
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
