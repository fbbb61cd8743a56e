package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/core/registry"

	"github.com/tenantvault/tenantvault/events"
)

// masterFixture is a keystore with two tenants, an audit signer and what to
// check that a reopened keystore still holds the same keys.
type masterFixture struct {
	data    string
	oldURI  string
	newURI  string
	kms     *testKMS
	ct      map[events.TenantID][]byte
	hash    []byte
	vhash   []byte // the vault's AuditHash of "t"
	vkey    string
	destroy uint32 // a destroyed key id of acme
}

func newMasterFixture(t *testing.T, newURI string) (*masterFixture, *Keystore) {
	t.Helper()
	f := &masterFixture{data: t.TempDir(), newURI: newURI, kms: newTestKMS(), ct: map[events.TenantID][]byte{}}
	f.oldURI = masterURI(f.data)
	ks := f.open(t, f.oldURI)
	for _, id := range []events.TenantID{"acme", "beta"} {
		mustCreate(t, ks, id)
	}
	f.destroy = mustKeys(t, ks, "acme")[0].ID
	mustRotate(t, ks, "acme")
	mustDo(t, ks.DestroyKey("acme", f.destroy))
	for _, id := range []events.TenantID{"acme", "beta"} {
		f.ct[id] = mustEncrypt(t, mustCipher(t, ks, id), []byte("data of "+string(id)), []byte(id))
	}
	f.hash = mustCipher(t, ks, "acme").Hash("stream", []byte("s"))
	f.vkey = mustAuditSigner(t, ks, testOrigin).VerifierKey()
	var err error
	if f.vhash, err = ks.AuditHash("tenant", []byte("t")); err != nil {
		t.Fatalf("AuditHash = %v", err)
	}
	return f, ks
}

func (f *masterFixture) config(uri string) Config {
	return Config{Dir: filepath.Join(f.data, "keys"), MasterKeyURI: uri, KMSClients: []registry.KMSClient{f.kms}}
}

func (f *masterFixture) open(t *testing.T, uri string) *Keystore {
	t.Helper()
	return mustOpen(t, f.config(uri))
}

// check verifies that ks holds the fixture's keys.
func (f *masterFixture) check(t *testing.T, ks *Keystore) {
	t.Helper()
	for id, ct := range f.ct {
		c, err := ks.Cipher(id)
		if err != nil {
			t.Fatalf("Cipher(%s) = %v", id, err)
		}
		if pt, err := c.Decrypt(ct, []byte(id)); err != nil || string(pt) != "data of "+string(id) {
			t.Errorf("Decrypt(%s's ciphertext) = %q, %v", id, pt, err)
		}
	}
	if h := mustCipher(t, ks, "acme").Hash("stream", []byte("s")); !bytes.Equal(h, f.hash) {
		t.Errorf("Hash changed: %x, want %x", h, f.hash)
	}
	if owner, _ := ks.Owner(f.destroy); owner != "acme" {
		t.Errorf("Owner(destroyed key) = %q, want acme", owner)
	}
	if vk, err := ks.AuditVerifierKey(); err != nil || vk != f.vkey {
		t.Errorf("AuditVerifierKey() = %q, %v, want %q", vk, err, f.vkey)
	}
	if h, err := ks.AuditHash("tenant", []byte("t")); err != nil || !bytes.Equal(h, f.vhash) {
		t.Errorf("AuditHash = %x, %v, want %x (the same key)", h, err, f.vhash)
	}
	if _, err := os.Stat(filepath.Join(ks.dir, stagingDir)); err == nil {
		t.Errorf("staging directory left behind")
	}
}

// TestRotateMaster: from a local master key to a new local one, a fake KMS
// key, and a {tenant} KMS template; everything opens with the new URI, and
// no longer with the old one.
func TestRotateMaster(t *testing.T) {
	fakeURI, fakeClient := mustFakeKMS(t)
	tests := []struct {
		name   string
		newURI func(data string) string
		extra  registry.KMSClient
	}{
		{"local to local", func(data string) string { return "local://" + filepath.Join(data, "new-master.key") }, nil},
		{"local to fake KMS", func(string) string { return fakeURI }, fakeClient},
		{"local to KMS per tenant", func(string) string { return "test-kms://tv/{tenant}" }, nil},
		{"local to local per tenant", func(data string) string { return "local://" + filepath.Join(data, "kek", "{tenant}.key") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ks := newMasterFixture(t, "")
			f.newURI = tt.newURI(f.data)
			if tt.extra != nil {
				ks.extras = append(ks.extras, tt.extra)
			}
			if err := ks.RotateMaster(context.Background(), f.newURI); err != nil {
				t.Fatalf("RotateMaster = %v", err)
			}
			f.check(t, ks) // the running keystore uses the new master
			mustCreate(t, ks, "gamma")
			ks.Close()

			cfg := f.config(f.newURI)
			if tt.extra != nil {
				cfg.KMSClients = append(cfg.KMSClients, tt.extra)
			}
			ks2 := mustOpen(t, cfg)
			f.check(t, ks2)
			if _, err := ks2.Cipher("gamma"); err != nil {
				t.Errorf("Cipher(gamma) = %v", err)
			}
			ks2.Close()
			if _, err := Open(f.config(f.oldURI)); err == nil || !strings.Contains(err.Error(), "different master key") {
				t.Errorf("Open with the old master key after RotateMaster = %v, want 'different master key'", err)
			}
		})
	}
}

// TestRotateMasterCrash: a crash at each step leaves a keystore that opens
// with exactly one of the two master keys (the old one before the commit
// point, the new one after), and the rotation can be finished.
func TestRotateMasterCrash(t *testing.T) {
	steps := []struct {
		step      string
		committed bool
	}{
		{stepStaged + "acme.keyset", false},
		{stepStaged + "beta.keyset", false},
		{stepStaged + auditSignerFile, false},
		{stepStaged + auditHashFile, false},
		{stepStaged + checkFile, false},
		{stepCommitted, true},
		{stepSwapped + "acme.keyset", true},
		{stepSwapped + auditSignerFile, true},
		{stepSwapped + auditHashFile, true},
		{stepSwapped + checkFile, true},
	}
	for _, s := range steps {
		t.Run(s.step, func(t *testing.T) {
			f, ks := newMasterFixture(t, "test-kms://tv/{tenant}")
			crash := errors.New("simulated crash")
			seen := false
			ks.testHook = func(step string) error {
				if step == s.step {
					seen = true
					return crash
				}
				return nil
			}
			if err := ks.RotateMaster(context.Background(), f.newURI); !errors.Is(err, crash) || !seen {
				t.Fatalf("RotateMaster = %v (step seen: %v), want the simulated crash", err, seen)
			}
			ks.Close()

			wrong, right := f.newURI, f.oldURI
			wantErr := "interrupted before it committed"
			if s.committed {
				wrong, right = f.oldURI, f.newURI
				wantErr = "committed but not finished"
			}
			if _, err := Open(f.config(wrong)); err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("Open with the %s master key = %v, want an error containing %q",
					map[bool]string{true: "old", false: "new"}[s.committed], err, wantErr)
			}
			ks2 := f.open(t, right)
			f.check(t, ks2)
			if !s.committed {
				// Run it again, to the end.
				if err := ks2.RotateMaster(context.Background(), f.newURI); err != nil {
					t.Fatalf("RotateMaster again = %v", err)
				}
			}
			ks2.Close()
			ks3 := f.open(t, f.newURI)
			f.check(t, ks3)
		})
	}
}

// TestRotateMasterFailure: a tenant whose keyset does not unwrap, or a
// cancelled context, stops the rotation before the commit point with
// nothing changed.
func TestRotateMasterFailure(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, ks *Keystore) context.Context
		wantErr string
	}{
		{"a keyset that does not unwrap", func(t *testing.T, ks *Keystore) context.Context {
			var a, b keysetFile
			readJSON(t, ks.path("acme"), &a)
			readJSON(t, ks.path("beta"), &b)
			b.PRF = a.PRF // sealed for acme: beta's does not open
			out := mustJSON(t, b)
			mustWrite(t, ks.path("beta"), out)
			return context.Background()
		}, "cannot unwrap the PRF keyset of tenant beta"},
		{"cancelled", func(t *testing.T, ks *Keystore) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, "context canceled"},
		{"KMS down", func(t *testing.T, ks *Keystore) context.Context {
			return context.Background()
		}, "KMS is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ks := newMasterFixture(t, "test-kms://tv/{tenant}")
			ctx := tt.prepare(t, ks)
			if tt.name == "KMS down" {
				f.kms.down.Store(true)
			}
			before := listTree(t, ks.dir)
			beforeBeta, _ := os.ReadFile(ks.path("beta"))
			err := ks.RotateMaster(ctx, f.newURI)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("RotateMaster = %v, want an error containing %q", err, tt.wantErr)
			}
			if after := listTree(t, ks.dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("files after a failed RotateMaster = %v, want %v", after, before)
			}
			if afterBeta, _ := os.ReadFile(ks.path("beta")); !bytes.Equal(afterBeta, beforeBeta) {
				t.Errorf("beta's keyset changed")
			}
			f.kms.down.Store(false)
			ks.Close()
			ks2 := f.open(t, f.oldURI) // still the old master's
			if _, err := ks2.Cipher("acme"); err != nil {
				t.Errorf("Cipher(acme) after a failed RotateMaster = %v", err)
			}
		})
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustCipher(tb testing.TB, ks *Keystore, t events.TenantID) *TenantCipher {
	tb.Helper()
	c, err := ks.Cipher(t)
	if err != nil {
		tb.Fatalf("Cipher(%s) = %v", t, err)
	}
	return c
}

// TestRotateMasterConcurrentReads: readers that keep unwrapping (the cache
// dropped each time) never fail while the master key rotates under them.
func TestRotateMasterConcurrentReads(t *testing.T) {
	f, ks := newMasterFixture(t, "test-kms://tv/{tenant}")
	c := mustCipher(t, ks, "beta")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ks.DropCache()
				if _, err := c.Decrypt(f.ct["beta"], []byte("beta")); err != nil {
					t.Errorf("Decrypt during RotateMaster = %v", err)
					return
				}
			}
		})
	}
	err := ks.RotateMaster(context.Background(), f.newURI)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("RotateMaster = %v", err)
	}
	f.check(t, ks)
}
