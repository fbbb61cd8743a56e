package keys

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/tenantvault/tenantvault/events"
)

func mustRotate(tb testing.TB, ks *Keystore, t events.TenantID) uint32 {
	tb.Helper()
	id, err := ks.Rotate(t)
	if err != nil {
		tb.Fatalf("Rotate(%s) = %v", t, err)
	}
	return id
}

func mustKeys(tb testing.TB, ks *Keystore, t events.TenantID) []KeyInfo {
	tb.Helper()
	k, err := ks.Keys(t)
	if err != nil {
		tb.Fatalf("Keys(%s) = %v", t, err)
	}
	return k
}

// TestRotate: the new primary is used at once by ciphers already handed
// out, old ciphertexts still open, ids are unique, and it all persists.
func TestRotate(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	first := a.PrimaryKeyID()
	ct1 := mustEncrypt(t, a, []byte("one"), []byte("ad"))
	hash := a.Hash("stream", []byte("s"))

	second := mustRotate(t, ks, "acme")
	third := mustRotate(t, ks, "acme")
	ids := []uint32{first, second, third, b.PrimaryKeyID()}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 4 {
		t.Errorf("key ids %x are not unique", ids)
	}
	if got := a.PrimaryKeyID(); got != third {
		t.Errorf("PrimaryKeyID of the cipher handed out before = 0x%08x, want 0x%08x", got, third)
	}
	ct3 := mustEncrypt(t, a, []byte("three"), []byte("ad"))
	if id, _ := KeyIDOf(ct3); id != third {
		t.Errorf("new ciphertext key id = 0x%08x, want the new primary 0x%08x", id, third)
	}
	for _, ct := range [][]byte{ct1, ct3} {
		if _, err := a.Decrypt(ct, []byte("ad")); err != nil {
			t.Errorf("Decrypt(key 0x%08x) after rotation = %v", must(KeyIDOf(ct)), err)
		}
	}
	if got := a.Hash("stream", []byte("s")); string(got) != string(hash) {
		t.Errorf("Hash changed with the AEAD rotation")
	}
	for _, id := range []uint32{first, second, third} {
		if owner, _ := ks.Owner(id); owner != "acme" {
			t.Errorf("Owner(0x%08x) = %q, want acme", id, owner)
		}
	}
	want := []KeyInfo{{ID: first, Status: KeyEnabled}, {ID: second, Status: KeyEnabled}, {ID: third, Primary: true, Status: KeyEnabled}}
	sortKeyInfo(want)
	if got := mustKeys(t, ks, "acme"); !slices.Equal(got, want) {
		t.Errorf("Keys(acme) = %+v, want %+v", got, want)
	}
	if _, err := b.Decrypt(ct3, []byte("ad")); !errors.As(err, new(*ForeignKeyError)) {
		t.Errorf("beta Decrypt(acme's new ciphertext) = %v, want *ForeignKeyError", err)
	}

	// Across a reopen.
	ks.Close()
	ks2 := mustOpenAt(t, dataDir(ks))
	if got := mustKeys(t, ks2, "acme"); !slices.Equal(got, want) {
		t.Errorf("Keys(acme) after reopen = %+v, want %+v", got, want)
	}
	a2, err := ks2.Cipher("acme")
	if err != nil {
		t.Fatal(err)
	}
	if a2.PrimaryKeyID() != third {
		t.Errorf("PrimaryKeyID after reopen = 0x%08x, want 0x%08x", a2.PrimaryKeyID(), third)
	}
	for _, ct := range [][]byte{ct1, ct3} {
		if _, err := a2.Decrypt(ct, []byte("ad")); err != nil {
			t.Errorf("Decrypt(key 0x%08x) after reopen = %v", must(KeyIDOf(ct)), err)
		}
	}
	if owner, _ := ks2.Owner(second); owner != "acme" {
		t.Errorf("Owner(0x%08x) after reopen = %q, want acme", second, owner)
	}
}

func must[T any](v T, _ bool) T { return v }

func sortKeyInfo(k []KeyInfo) {
	slices.SortFunc(k, func(a, b KeyInfo) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
}

// TestRotateKeyIDCollision: a new key whose id another tenant owns is
// regenerated.
func TestRotateKeyIDCollision(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	calls := 0
	ks.newAEADKeyset = func() (*keyset.Handle, error) {
		calls++
		if calls == 1 {
			return keysOf(t, b).aeadHandle, nil // beta's key id
		}
		return keyset.NewHandle(aead.AES256GCMKeyTemplate())
	}
	id := mustRotate(t, ks, "acme")
	if calls != 2 || id == b.PrimaryKeyID() || id == 0 {
		t.Errorf("Rotate with a colliding first key: %d generations, id 0x%08x, want 2 and not beta's 0x%08x", calls, id, b.PrimaryKeyID())
	}
	if owner, _ := ks.Owner(b.PrimaryKeyID()); owner != "beta" {
		t.Errorf("Owner(beta's key) = %q, want beta", owner)
	}
	ks.newAEADKeyset = func() (*keyset.Handle, error) { return keysOf(t, a).aeadHandle, nil }
	if _, err := ks.Rotate("acme"); err == nil {
		t.Errorf("Rotate with only colliding keys = nil error, want one")
	}
}

// TestRetireKeys: DisableKey, EnableKey and DestroyKey, on the table of
// what they refuse and what old ciphertexts do after each.
func TestRetireKeys(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	beta := mustCreate(t, ks, "beta")
	old := a.PrimaryKeyID()
	oldKeyBytes := rawKeys(t, keysOf(t, a).aeadHandle)
	ctOld := mustEncrypt(t, a, []byte("old"), nil)
	primary := mustRotate(t, ks, "acme")
	ctNew := mustEncrypt(t, a, []byte("new"), nil)

	refusals := []struct {
		name string
		op   func() error
		code string
	}{
		{"disable primary", func() error { return ks.DisableKey("acme", primary) }, events.ECONFLICT},
		{"destroy primary", func() error { return ks.DestroyKey("acme", primary) }, events.ECONFLICT},
		{"disable unknown", func() error { return ks.DisableKey("acme", 42) }, events.ENOTFOUND},
		{"destroy unknown", func() error { return ks.DestroyKey("acme", 42) }, events.ENOTFOUND},
		{"disable another tenant's key", func() error { return ks.DisableKey("acme", beta.PrimaryKeyID()) }, events.ENOTFOUND},
		{"rotate unknown tenant", func() error { _, err := ks.Rotate("nobody"); return err }, events.ENOTFOUND},
		{"disable for unknown tenant", func() error { return ks.DisableKey("nobody", old) }, events.ENOTFOUND},
		{"invalid tenant", func() error { return ks.DestroyKey("../x", old) }, events.EINVALID},
	}
	for _, r := range refusals {
		if err := r.op(); events.ErrorCode(err) != r.code {
			t.Errorf("%s = %v, want code %s", r.name, err, r.code)
		}
	}

	steps := []struct {
		name    string
		op      func() error
		wantOld error // nil: opens
		status  string
	}{
		{"disable", func() error { return ks.DisableKey("acme", old) }, ErrKeyDisabled, KeyDisabled},
		{"disable again", func() error { return ks.DisableKey("acme", old) }, ErrKeyDisabled, KeyDisabled},
		{"enable", func() error { return ks.EnableKey("acme", old) }, nil, KeyEnabled},
		{"destroy", func() error { return ks.DestroyKey("acme", old) }, ErrKeyDestroyed, KeyDestroyed},
		{"destroy again", func() error { return ks.DestroyKey("acme", old) }, ErrKeyDestroyed, KeyDestroyed},
	}
	for _, s := range steps {
		if err := s.op(); err != nil {
			t.Fatalf("%s = %v", s.name, err)
		}
		pt, err := a.Decrypt(ctOld, nil)
		switch {
		case s.wantOld == nil && (err != nil || string(pt) != "old"):
			t.Errorf("after %s: Decrypt(old) = %q, %v, want old", s.name, pt, err)
		case s.wantOld != nil && (!errors.Is(err, s.wantOld) || !errors.Is(err, ErrDecrypt)):
			t.Errorf("after %s: Decrypt(old) = %v, want %v and %v", s.name, err, s.wantOld, ErrDecrypt)
		}
		if pt, err := a.Decrypt(ctNew, nil); err != nil || string(pt) != "new" {
			t.Errorf("after %s: Decrypt(new) = %q, %v, want new", s.name, pt, err)
		}
		keys := mustKeys(t, ks, "acme")
		if i := slices.IndexFunc(keys, func(k KeyInfo) bool { return k.ID == old }); i < 0 || keys[i].Status != s.status {
			t.Errorf("after %s: Keys(acme) = %+v, want key 0x%08x %s", s.name, keys, old, s.status)
		}
	}
	if err := ks.DisableKey("acme", old); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("DisableKey(destroyed) = %v, want %v", err, ErrKeyDestroyed)
	}
	if owner, _ := ks.Owner(old); owner != "acme" {
		t.Errorf("Owner(destroyed key) = %q, want acme", owner)
	}
	// The destroyed key's bytes are in no file, current or replaced.
	assertNotOnDisk(t, dataDir(ks), oldKeyBytes)

	// Across a reopen.
	ks.Close()
	ks2 := mustOpenAt(t, dataDir(ks))
	a2, err := ks2.Cipher("acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Decrypt(ctOld, nil); !errors.Is(err, ErrKeyDestroyed) {
		t.Errorf("Decrypt(old) after reopen = %v, want %v", err, ErrKeyDestroyed)
	}
	if owner, _ := ks2.Owner(old); owner != "acme" {
		t.Errorf("Owner(destroyed key) after reopen = %q, want acme", owner)
	}
	if got := mustKeys(t, ks2, "acme"); len(got) != 2 {
		t.Errorf("Keys(acme) after reopen = %+v, want the primary and the destroyed key", got)
	}
}

func BenchmarkRotate(b *testing.B) {
	ks := MustOpenKeystore(b)
	n := 0
	tenant := events.TenantID("")
	for b.Loop() {
		if n%16 == 0 { // keep keysets at a realistic size
			b.StopTimer()
			tenant = events.TenantID(fmt.Sprintf("t-%d", n))
			mustCreate(b, ks, tenant)
			b.StartTimer()
		}
		if _, err := ks.Rotate(tenant); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// TestKeysetRolledBack: a keyset file replaced, while the keystore runs, by
// an older copy of itself (authentic, but not what the index holds) is
// refused at the next unwrap.
func TestKeysetRolledBack(t *testing.T) {
	ks := MustOpenKeystore(t)
	mustCreate(t, ks, "acme")
	old, err := os.ReadFile(ks.path("acme"))
	mustDo(t, err)
	mustRotate(t, ks, "acme")
	mustWrite(t, ks.path("acme"), old)
	ks.DropCache()
	if _, err := ks.Cipher("acme"); err == nil || !strings.Contains(err.Error(), "changed on disk") {
		t.Errorf("Cipher(acme) after its keyset was rolled back = %v, want 'changed on disk'", err)
	}
}
