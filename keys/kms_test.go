package keys

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/testing/fakekms"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/api/option"

	"github.com/tenantvault/tenantvault/events"
)

// testKMS is a KMS for "test-kms://" URIs built on Tink's fake KMS: each URI
// gets its own fakekms key on first use. A key can be deleted (the KMS then
// refuses it, as a real one refuses a key pending deletion) and the whole
// KMS taken down (connection refused). It counts calls per URI.
type testKMS struct {
	mu      sync.Mutex
	keys    map[string]tink.AEAD
	deleted map[string]bool
	calls   map[string]int
	down    atomic.Bool
}

const testKMSPrefix = "test-kms://"

func newTestKMS() *testKMS {
	return &testKMS{keys: map[string]tink.AEAD{}, deleted: map[string]bool{}, calls: map[string]int{}}
}

func (k *testKMS) Supported(uri string) bool { return strings.HasPrefix(uri, testKMSPrefix) }

func (k *testKMS) GetAEAD(uri string) (tink.AEAD, error) {
	if !k.Supported(uri) {
		return nil, fmt.Errorf("unsupported URI %s", uri)
	}
	return &testKMSKey{kms: k, uri: uri}, nil
}

// key returns uri's fake KMS key, creating it on first use.
func (k *testKMS) key(uri string) (tink.AEAD, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[uri]++
	if k.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	if k.deleted[uri] {
		return nil, fmt.Errorf("KMSInvalidStateException: key %s is pending deletion", uri)
	}
	if a, ok := k.keys[uri]; ok {
		return a, nil
	}
	fake, err := fakekms.NewKeyURI()
	if err != nil {
		return nil, err
	}
	a, err := fakekms.NewAEAD(fake)
	if err != nil {
		return nil, err
	}
	k.keys[uri] = a
	return a, nil
}

// delete makes uri's key unusable, for good.
func (k *testKMS) delete(uri string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.deleted[uri] = true
}

// callsTo returns how many calls uri's key received.
func (k *testKMS) callsTo(uri string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[uri]
}

type testKMSKey struct {
	kms *testKMS
	uri string
}

func (a *testKMSKey) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	k, err := a.kms.key(a.uri)
	if err != nil {
		return nil, err
	}
	return k.Encrypt(plaintext, associatedData)
}

func (a *testKMSKey) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	k, err := a.kms.key(a.uri)
	if err != nil {
		return nil, err
	}
	return k.Decrypt(ciphertext, associatedData)
}

// mustOpen opens a keystore with cfg (Dir defaulting to a fresh directory)
// and closes it at cleanup.
func mustOpen(tb testing.TB, cfg Config) *Keystore {
	tb.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(tb.TempDir(), "keys")
	}
	ks, err := Open(cfg)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", describeURI(cfg.MasterKeyURI), err)
	}
	tb.Cleanup(func() { ks.Close() })
	return ks
}

func mustFakeKMS(tb testing.TB) (uri string, client registry.KMSClient) {
	tb.Helper()
	uri, err := fakekms.NewKeyURI()
	if err != nil {
		tb.Fatal(err)
	}
	client, err = fakekms.NewClient("fake-kms://")
	if err != nil {
		tb.Fatal(err)
	}
	return uri, client
}

// TestFakeKMSMaster: a fake-kms:// master key through Config.KMSClients:
// everything works as with a local key, across a reopen, and the URI (which
// holds the fake key) never shows.
func TestFakeKMSMaster(t *testing.T) {
	uri, client := mustFakeKMS(t)
	dir := filepath.Join(t.TempDir(), "keys")
	cfg := Config{Dir: dir, MasterKeyURI: uri, KMSClients: []registry.KMSClient{client}}
	ks := mustOpen(t, cfg)
	a := mustCreate(t, ks, "acme")
	ct := mustEncrypt(t, a, []byte("sealed"), []byte("ad"))
	signer := mustAuditSigner(t, ks, testOrigin)
	secret := strings.TrimPrefix(uri, "fake-kms://")
	for _, s := range []string{ks.String(), fmt.Sprintf("%#v", ks), ks.master.String()} {
		if strings.Contains(s, secret[:16]) {
			t.Errorf("%q shows the fake-kms URI, which is key material", s)
		}
	}
	ks.Close()

	ks2 := mustOpen(t, cfg)
	a2, err := ks2.Cipher("acme")
	if err != nil {
		t.Fatalf("Cipher(acme) after reopen = %v", err)
	}
	if pt, err := a2.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "sealed" {
		t.Errorf("Decrypt after reopen = %q, %v, want %q", pt, err, "sealed")
	}
	if vk, err := ks2.AuditVerifierKey(); err != nil || vk != signer.VerifierKey() {
		t.Errorf("AuditVerifierKey after reopen = %q, %v, want %q", vk, err, signer.VerifierKey())
	}
	ks2.Close()

	// Another fake key does not open it; the error names the check and
	// does not quote either URI.
	other, _ := mustFakeKMS(t)
	_, err = Open(Config{Dir: dir, MasterKeyURI: other, KMSClients: []registry.KMSClient{client}})
	if !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "different master key") {
		t.Errorf("Open with another fake KMS key = %v, want ErrWrongMasterKey, 'different master key'", err)
	}
	if err != nil && (strings.Contains(err.Error(), secret[:16]) || strings.Contains(err.Error(), strings.TrimPrefix(other, "fake-kms://")[:16])) {
		t.Errorf("Open error %q quotes a fake-kms URI", err)
	}
}

// TestTenantTemplate: with {tenant} in the URI each tenant's keyset is
// wrapped by its own KMS key; the audit signer and master.check by the
// "_vault" one. Deleting one tenant's KMS key makes only that tenant
// unreadable, once its keys leave the cache; a KMS that is down is told
// apart from a key that is refused.
func TestTenantTemplate(t *testing.T) {
	kms := newTestKMS()
	ks := mustOpen(t, Config{MasterKeyURI: "test-kms://tenants/{tenant}", KMSClients: []registry.KMSClient{kms}})
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	mustAuditSigner(t, ks, testOrigin)
	ctA := mustEncrypt(t, a, []byte("a"), nil)
	ctB := mustEncrypt(t, b, []byte("b"), nil)
	for _, uri := range []string{"test-kms://tenants/acme", "test-kms://tenants/beta", "test-kms://tenants/_vault"} {
		if kms.callsTo(uri) == 0 {
			t.Errorf("KMS key %s was never used", uri)
		}
	}

	kms.delete("test-kms://tenants/acme")
	// Still in the cache: the deletion bites at the next unwrap.
	if _, err := a.Decrypt(ctA, nil); err != nil {
		t.Errorf("acme Decrypt with its keys cached = %v, want success", err)
	}
	ks.DropCache()
	_, err := a.Decrypt(ctA, nil)
	if !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "tenant acme") {
		t.Errorf("acme Decrypt after its KMS key was deleted = %v, want ErrWrongMasterKey naming tenant acme", err)
	}
	var mke *MasterKeyError
	if !errors.As(err, &mke) || mke.Tenant != "acme" || mke.Unreachable {
		t.Errorf("acme Decrypt error = %#v, want *MasterKeyError{Tenant: acme, Unreachable: false}", err)
	}
	if _, err := ks.Cipher("acme"); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Cipher(acme) after its KMS key was deleted = %v, want ErrWrongMasterKey", err)
	}
	if pt, err := b.Decrypt(ctB, nil); err != nil || string(pt) != "b" {
		t.Errorf("beta Decrypt after acme's KMS key was deleted = %q, %v, want b", pt, err)
	}

	kms.down.Store(true)
	ks.DropCache()
	_, err = b.Decrypt(ctB, nil)
	if !errors.Is(err, ErrKMSUnavailable) || events.ErrorCode(err) != events.EUNAVAILABLE || !strings.Contains(err.Error(), "tenant beta") {
		t.Errorf("beta Decrypt with the KMS down = %v (code %s), want ErrKMSUnavailable, EUNAVAILABLE, naming tenant beta", err, events.ErrorCode(err))
	}
	if _, err := b.Encrypt([]byte("x"), nil); !errors.Is(err, ErrKMSUnavailable) {
		t.Errorf("beta Encrypt with the KMS down = %v, want ErrKMSUnavailable", err)
	}
	kms.down.Store(false)
	if pt, err := b.Decrypt(ctB, nil); err != nil || string(pt) != "b" {
		t.Errorf("beta Decrypt with the KMS back = %q, %v, want b", pt, err)
	}
	ks.Close()

	// Reopening needs only the _vault key; acme stays unreadable, beta works.
	ks2 := mustOpen(t, Config{Dir: ks.dir, MasterKeyURI: "test-kms://tenants/{tenant}", KMSClients: []registry.KMSClient{kms}})
	if _, err := ks2.Cipher("acme"); !errors.Is(err, ErrWrongMasterKey) {
		t.Errorf("Cipher(acme) after reopen = %v, want ErrWrongMasterKey", err)
	}
	if _, err := ks2.Cipher("beta"); err != nil {
		t.Errorf("Cipher(beta) after reopen = %v", err)
	}
	kms.down.Store(true)
	_, err = Open(Config{Dir: ks.dir, MasterKeyURI: "test-kms://tenants/{tenant}", KMSClients: []registry.KMSClient{kms}})
	if !errors.Is(err, ErrKMSUnavailable) || !strings.Contains(err.Error(), "master key check") {
		t.Errorf("Open with the KMS down = %v, want ErrKMSUnavailable about the master key check", err)
	}
}

// TestLocalTenantTemplate: local://DIR/{tenant}.key gives each tenant a key
// file of its own (development); Destroy shreds it with the keyset.
func TestLocalTenantTemplate(t *testing.T) {
	data := t.TempDir()
	uri := "local://" + filepath.Join(data, "kek", "{tenant}.key")
	ks := mustOpen(t, Config{Dir: filepath.Join(data, "keys"), MasterKeyURI: uri})
	a := mustCreate(t, ks, "acme")
	mustCreate(t, ks, "beta")
	ct := mustEncrypt(t, a, []byte("x"), nil)
	for _, f := range []string{"acme.key", "beta.key", "_vault.key"} {
		assertExists(t, filepath.Join(data, "kek", f), true)
	}
	ks.Close()
	ks = mustOpen(t, Config{Dir: filepath.Join(data, "keys"), MasterKeyURI: uri})
	a, err := ks.Cipher("acme")
	if err != nil {
		t.Fatalf("Cipher(acme) after reopen = %v", err)
	}
	if _, err := a.Decrypt(ct, nil); err != nil {
		t.Errorf("Decrypt after reopen = %v", err)
	}
	if _, err := ks.Destroy("acme"); err != nil {
		t.Fatalf("Destroy(acme) = %v", err)
	}
	assertExists(t, filepath.Join(data, "kek", "acme.key"), false)
	assertExists(t, filepath.Join(data, "kek", "beta.key"), true)

	// Deleting a tenant's key file is as good as deleting its KMS key.
	mustDo(t, os.Remove(filepath.Join(data, "kek", "beta.key")))
	ks.DropCache()
	if _, err := ks.Cipher("beta"); !errors.Is(err, ErrWrongMasterKey) || !strings.Contains(err.Error(), "tenant beta") {
		t.Errorf("Cipher(beta) without its key file = %v, want ErrWrongMasterKey naming tenant beta", err)
	}
}

// TestBuiltinKMSURIs: each built-in scheme's URI makes the right Tink
// client, without contacting anything (the clients connect lazily; the
// Google client is told not to look for credentials).
func TestBuiltinKMSURIs(t *testing.T) {
	noGCPCredentials(t)
	t.Setenv("VAULT_ADDR", "")
	tests := []struct {
		uri, wantClient string
	}{
		{"hcvault://127.0.0.1:1/transit/keys/tv", "*hcvault.vaultClient"},
		{"hcvault://127.0.0.1:1/secret/transit/keys/tv-acme", "*hcvault.vaultClient"},
		{"aws-kms://arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "*awskms.awsClient"},
		{"aws-kms://arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/tv-acme", "*awskms.awsClient"},
		{"gcp-kms://projects/p/locations/global/keyRings/r/cryptoKeys/k", "*gcpkms.Client"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			scheme, _, _ := strings.Cut(tt.uri, "://")
			p, err := newKMSProvider(scheme, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			c, err := p.client(tt.uri)
			if err != nil {
				t.Fatalf("client(%s) = %v", tt.uri, err)
			}
			if got := fmt.Sprintf("%T", c); got != tt.wantClient {
				t.Errorf("client(%s) is %s, want %s", tt.uri, got, tt.wantClient)
			}
			k, err := p.kek(tt.uri, false)
			if err != nil {
				t.Fatalf("kek(%s) = %v", tt.uri, err)
			}
			if _, ok := k.(*kmsMasterKey); !ok || k.String() != tt.uri {
				t.Errorf("kek(%s) = %T %s, want *kmsMasterKey printing the URI", tt.uri, k, k)
			}
			if again, _ := p.client(tt.uri); again != c {
				t.Errorf("client(%s) made a second client, want one per prefix", tt.uri)
			}
		})
	}
}

// TestMasterKeyURIErrors: bad URIs fail at Open with a clear error, before
// any KMS is contacted.
func TestMasterKeyURIErrors(t *testing.T) {
	noGCPCredentials(t)
	tests := []struct{ uri, wantErr string }{
		{"hcvault://127.0.0.1:1", "is not hcvault://HOST[:PORT]/MOUNT/keys/NAME"},
		{"hcvault:///transit/keys/tv", "is not hcvault://HOST[:PORT]/MOUNT/keys/NAME"},
		{"hcvault://127.0.0.1:1/keys/tv", "is not hcvault://HOST[:PORT]/MOUNT/keys/NAME"},
		{"hcvault://127.0.0.1:1/transit/keys/", "is not hcvault://HOST[:PORT]/MOUNT/keys/NAME"},
		{"hcvault://127.0.0.1:1/transit/keys/tv?token=s3cr3t", "is not hcvault://"},
		{"aws-kms://arn:aws:kms:eu-west-1:123456789012:key/", "is not aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID"},
		{"aws-kms://arn:aws:s3:eu-west-1:123456789012:key/k", "is not aws-kms://"},
		{"aws-kms://kms.eu-west-1.amazonaws.com/k", "is not aws-kms://"},
		{"gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", "is not gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K"},
		{"gcp-kms://p/l/r/k", "is not gcp-kms://"},
		{"azure-kv://vault/key", `unknown master key scheme "azure-kv"`},
		{"local://", "has no path"},
		{"", "master key URI is empty"},
		{"no-scheme", "has no scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			ks, err := Open(Config{Dir: dir, MasterKeyURI: tt.uri})
			if err == nil {
				ks.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.uri)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || events.ErrorCode(err) != events.EINVALID {
				t.Errorf("Open(%q) = %v (code %s), want an %s error containing %q", tt.uri, err, events.ErrorCode(err), events.EINVALID, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("Open(%q) error quotes the URI's query", tt.uri)
			}
		})
	}
}

// TestHCVaultUnreachable: a Vault server that is not there is reported as
// an unreachable KMS, naming what could not be sealed. (Only loopback is
// dialled, and refused at once.)
func TestHCVaultUnreachable(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	t.Setenv("VAULT_TOKEN", "test-token")
	_, err := Open(Config{Dir: filepath.Join(t.TempDir(), "keys"), MasterKeyURI: "hcvault://127.0.0.1:1/transit/keys/tv"})
	if !errors.Is(err, ErrKMSUnavailable) || !strings.Contains(err.Error(), "master key check") || !strings.Contains(err.Error(), "hcvault://127.0.0.1:1/transit/keys/tv") {
		t.Errorf("Open(hcvault on a closed port) = %v, want ErrKMSUnavailable naming the master key check and the key", err)
	}
	if err != nil && strings.Contains(err.Error(), "test-token") {
		t.Errorf("Open error %q shows the Vault token", err)
	}
}

func TestUnreachableClassification(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("wrapped: %w", syscall.ECONNRESET), true},
		{&net.DNSError{Err: "no such host", Name: "kms.example"}, true},
		{fmt.Errorf("call: %w", errors.Join(errors.New("x"), timeoutErr{})), true},
		{awsLikeError{code: "ThrottlingException"}, true},
		{awsLikeError{code: "KMSInternalException"}, true},
		{awsLikeError{code: "InvalidCiphertextException"}, false},
		{awsLikeError{code: "AccessDeniedException"}, false},
		{errors.New("aead.Decrypt: decryption failed"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := unreachable(tt.err); got != tt.want {
			t.Errorf("unreachable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// awsLikeError has the shape of aws-sdk-go's awserr.Error.
type awsLikeError struct{ code string }

func (e awsLikeError) Error() string   { return e.code + ": boom" }
func (e awsLikeError) Code() string    { return e.code }
func (e awsLikeError) Message() string { return "boom" }
func (e awsLikeError) OrigErr() error  { return nil }

// TestMain keeps every test of the package off the network as far as the
// Google Cloud client goes: no credential lookup (which may probe the GCE
// metadata server), and any connection to a closed loopback port.
func TestMain(m *testing.M) {
	gcpClientOptions = []option.ClientOption{option.WithoutAuthentication(), option.WithEndpoint("127.0.0.1:1")}
	os.Exit(m.Run())
}

// noGCPCredentials makes Google Cloud KMS clients skip the credential
// lookup (which may probe the GCE metadata server) and point any call at a
// closed loopback port.
func noGCPCredentials(tb testing.TB) {
	tb.Helper()
	saved := gcpClientOptions
	gcpClientOptions = []option.ClientOption{option.WithoutAuthentication(), option.WithEndpoint("127.0.0.1:1")}
	tb.Cleanup(func() { gcpClientOptions = saved })
}

// fakeClock is a monotonic clock the test moves.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// setClock makes ks use clock (before any concurrent use).
func setClock(ks *Keystore, clock *fakeClock) {
	clock.t.Store(ks.now())
	ks.cacheMu.Lock()
	ks.now = clock.now
	ks.cacheMu.Unlock()
}
