package keys

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/core/registry"

	"github.com/tenantvault/tenantvault/events"
)

// TestCacheTTL: keys stay in memory for CacheTTL after they were unwrapped;
// the first use after that unwraps them again, once, through the KMS.
func TestCacheTTL(t *testing.T) {
	kms := newTestKMS()
	ks := mustOpen(t, Config{MasterKeyURI: "test-kms://t/{tenant}", KMSClients: []registry.KMSClient{kms}, CacheTTL: time.Minute})
	clock := &fakeClock{}
	setClock(ks, clock)
	mustCreate(t, ks, "acme")
	ks.Close()
	ks = mustOpen(t, Config{Dir: ks.dir, MasterKeyURI: "test-kms://t/{tenant}", KMSClients: []registry.KMSClient{kms}, CacheTTL: time.Minute})
	setClock(ks, clock)
	const uri = "test-kms://t/acme"
	callsBefore := kms.callsTo(uri)

	steps := []struct {
		name        string
		advance     time.Duration
		wantUnwraps int64
	}{
		{"first use unwraps", 0, 1},
		{"within the TTL", 30 * time.Second, 1},
		{"just before expiry", 29 * time.Second, 1},
		{"at expiry", time.Second, 2},
		{"again within the TTL", 59 * time.Second, 2},
		{"expired again", time.Minute, 3},
	}
	c, err := ks.Cipher("acme")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		clock.advance(s.advance)
		for range 3 {
			if _, err := c.Encrypt([]byte("x"), nil); err != nil {
				t.Fatalf("%s: Encrypt = %v", s.name, err)
			}
		}
		if got := ks.unwraps.Load(); got != s.wantUnwraps {
			t.Errorf("%s: %d unwraps, want %d", s.name, got, s.wantUnwraps)
		}
	}
	// Each unwrap is two KMS calls (AEAD and PRF keysets).
	if got := kms.callsTo(uri) - callsBefore; got != 6 {
		t.Errorf("KMS calls for acme = %d, want 6 (3 unwraps)", got)
	}
}

// TestCacheSweep: an idle tenant's keys leave memory after the TTL, without
// being used.
func TestCacheSweep(t *testing.T) {
	ks := mustOpen(t, Config{Dir: filepath.Join(t.TempDir(), "keys"), MasterKeyURI: masterURI(t.TempDir()), CacheTTL: 20 * time.Millisecond})
	c := mustCreate(t, ks, "acme")
	if n := ks.cachedCount(); n != 1 {
		t.Fatalf("cached tenants after Create = %d, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ks.cachedCount() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := ks.cachedCount(); n != 0 {
		t.Fatalf("cached tenants long after the TTL = %d, want 0", n)
	}
	if s := c.slot.Load(); s.keys != nil {
		t.Errorf("the cipher still holds keys after the sweep")
	}
	if _, err := c.Encrypt([]byte("x"), nil); err != nil {
		t.Errorf("Encrypt after the sweep = %v", err)
	}
}

// TestCacheLRU: at most CacheSize tenants' keys are in memory; the least
// recently used go first.
func TestCacheLRU(t *testing.T) {
	ks := mustOpen(t, Config{Dir: filepath.Join(t.TempDir(), "keys"), MasterKeyURI: masterURI(t.TempDir()), CacheSize: 2})
	clock := &fakeClock{}
	setClock(ks, clock)
	use := func(c *TenantCipher) {
		t.Helper()
		clock.advance(time.Second)
		if _, err := c.Encrypt([]byte("x"), nil); err != nil {
			t.Fatalf("%v.Encrypt = %v", c, err)
		}
	}
	inMemory := func() map[events.TenantID]bool {
		out := map[events.TenantID]bool{}
		for _, id := range []events.TenantID{"t-a", "t-b", "t-c"} {
			c := ks.state.Load().ciphers[id]
			out[id] = c != nil && c.slot.Load().keys != nil
		}
		return out
	}
	a := mustCreate(t, ks, "t-a")
	clock.advance(time.Second)
	b := mustCreate(t, ks, "t-b")
	use(a) // b is now the least recently used
	clock.advance(time.Second)
	c := mustCreate(t, ks, "t-c")
	if got, want := inMemory(), map[events.TenantID]bool{"t-a": true, "t-b": false, "t-c": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("in memory after creating a third tenant = %v, want %v", got, want)
	}
	unwraps := ks.unwraps.Load()
	use(b) // unwraps b, evicts a
	if got, want := inMemory(), map[events.TenantID]bool{"t-a": false, "t-b": true, "t-c": true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("in memory after using t-b = %v, want %v", got, want)
	}
	if got := ks.unwraps.Load() - unwraps; got != 1 {
		t.Errorf("using an evicted tenant unwrapped %d times, want 1", got)
	}
	use(c)
	use(b)
	if n := ks.cachedCount(); n != 2 {
		t.Errorf("cached tenants = %d, want 2", n)
	}
}

// TestDropCache: every tenant's next use unwraps again; Close drops the
// keys and the ciphers handed out stop working.
func TestDropCache(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ks.DropCache()
	if n := ks.cachedCount(); n != 0 {
		t.Errorf("cached tenants after DropCache = %d, want 0", n)
	}
	before := ks.unwraps.Load()
	for _, c := range []*TenantCipher{a, b, a} {
		if _, err := c.Encrypt([]byte("x"), nil); err != nil {
			t.Fatalf("%v.Encrypt after DropCache = %v", c, err)
		}
	}
	if got := ks.unwraps.Load() - before; got != 2 {
		t.Errorf("unwraps after DropCache = %d, want 2", got)
	}
	ks.Close()
	if n := ks.cachedCount(); n != 0 {
		t.Errorf("cached tenants after Close = %d, want 0", n)
	}
	if _, err := a.Encrypt([]byte("x"), nil); !errors.Is(err, errClosed) || events.ErrorCode(err) != events.EUNAVAILABLE {
		t.Errorf("Encrypt after Close = %v, want the closed error (%s)", err, events.EUNAVAILABLE)
	}
}

func TestConfigValidate(t *testing.T) {
	err := (&Config{CacheTTL: -1, CacheSize: -1}).Validate()
	for _, want := range []string{"directory is empty", "master key URI is empty", "TTL -1ns is negative", "size -1 is negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	c := Config{Dir: "d", MasterKeyURI: "local://k"}
	c.setDefaults()
	if c.CacheTTL != DefaultCacheTTL || c.CacheSize != DefaultCacheSize || c.Logger == nil || c.Validate() != nil {
		t.Errorf("defaults = %+v, want TTL %v, size %d, a logger, valid", c, DefaultCacheTTL, DefaultCacheSize)
	}
}
