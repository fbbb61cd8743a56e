package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

// TestReplicatedKeyset: two keystores (two nodes) sharing per-tenant master
// keys (local://DIR/{tenant}.key, as they would share a KMS): a keyset
// created on one and installed on the other opens the first's ciphertexts;
// installs are checked before anything is written; an older copy, a
// tampered one, a shared master key and a destroyed tenant are refused;
// once the tenant's master key is destroyed no node can install it.
func TestReplicatedKeyset(t *testing.T) {
	kms := t.TempDir()
	uri := "local://" + filepath.Join(kms, TenantPlaceholder+".key")
	a := mustOpen(t, Config{Dir: t.TempDir(), MasterKeyURI: uri})
	b := mustOpen(t, Config{Dir: t.TempDir(), MasterKeyURI: uri})
	const acme = events.TenantID("acme")
	ca, err := a.Create(acme)
	if err != nil {
		t.Fatal(err)
	}
	ct1, err := ca.Encrypt([]byte("secret-one"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	w1, err := a.WrappedKeyset(acme)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w1, []byte("secret-one")) {
		t.Fatal("wrapped keyset holds plaintext")
	}

	// Refused before anything is written: tampered, another tenant's.
	bad := bytes.Clone(w1)
	i := bytes.Index(bad, []byte(`"encryptedKeyset"`))
	if i < 0 {
		t.Fatalf("no encryptedKeyset in %s", w1)
	}
	bad[i+30] ^= 1
	if _, _, err := b.InstallWrapped(acme, bad); err == nil {
		t.Fatal("a tampered keyset was installed")
	}
	if _, _, err := b.InstallWrapped("globex", w1); err == nil {
		t.Fatal("acme's keyset was installed as globex's")
	}
	if _, err := os.Stat(b.path(acme)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused install wrote %s: %v", b.path(acme), err)
	}

	cb, changed, err := b.InstallWrapped(acme, w1)
	if err != nil || !changed {
		t.Fatalf("InstallWrapped = %v, %v", changed, err)
	}
	if pt, err := cb.Decrypt(ct1, []byte("ad")); err != nil || string(pt) != "secret-one" {
		t.Fatalf("node b decrypts node a's ciphertext: %q, %v", pt, err)
	}
	if _, changed, err := b.InstallWrapped(acme, w1); err != nil || changed {
		t.Fatalf("installing the same copy again = %v, %v; want no change", changed, err)
	}

	// A rotation on a reaches b; the copy from before is then stale.
	if _, err := a.Rotate(acme); err != nil {
		t.Fatal(err)
	}
	ct2, err := ca.Encrypt([]byte("secret-two"), nil)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := a.WrappedKeyset(acme)
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := b.InstallWrapped(acme, w2); err != nil || !changed {
		t.Fatalf("installing the rotated keyset = %v, %v", changed, err)
	}
	if pt, err := cb.Decrypt(ct2, nil); err != nil || string(pt) != "secret-two" {
		t.Fatalf("after the rotation node b decrypts: %q, %v", pt, err)
	}
	if _, _, err := b.InstallWrapped(acme, w1); !errors.Is(err, ErrStaleKeyset) {
		t.Fatalf("installing the copy from before the rotation = %v, want ErrStaleKeyset", err)
	}

	// A shared master key does not replicate.
	shared := mustOpen(t, Config{Dir: t.TempDir(), MasterKeyURI: "local://" + filepath.Join(t.TempDir(), "master.key")})
	if _, _, err := shared.InstallWrapped(acme, w2); !errors.Is(err, ErrSharedMaster) {
		t.Fatalf("install under a shared master key = %v, want ErrSharedMaster", err)
	}
	if _, err := shared.Create("initech"); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.WrappedKeyset("initech"); !errors.Is(err, ErrSharedMaster) {
		t.Fatalf("WrappedKeyset under a shared master key = %v, want ErrSharedMaster", err)
	}

	// The shred: a destroys acme's keys, its master key among them. b
	// refuses a copy after destroying its own; a node that never had the
	// tenant cannot open the copy any more.
	mustDestroy(t, a, acme)
	mustDestroy(t, b, acme)
	if _, _, err := b.InstallWrapped(acme, w2); !errors.Is(err, ErrDestroyed) {
		t.Fatalf("install of a destroyed tenant = %v, want ErrDestroyed", err)
	}
	c := mustOpen(t, Config{Dir: t.TempDir(), MasterKeyURI: uri})
	if _, _, err := c.InstallWrapped(acme, w2); err == nil {
		t.Fatal("a keyset whose master key was destroyed was installed")
	}
	if _, err := c.Cipher(acme); err == nil {
		t.Fatal("node c has acme's keys after a refused install")
	}
}
