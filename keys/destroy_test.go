package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// mustDestroy destroys t's keys and returns the report of it (Destroyed),
// checking that Destroy returned the report's key ids.
func mustDestroy(tb testing.TB, ks *Keystore, t events.TenantID) DestroyReport {
	tb.Helper()
	ids, err := ks.Destroy(t)
	if err != nil {
		tb.Fatalf("Destroy(%s) = %v", t, err)
	}
	rep, ok := ks.Destroyed(t)
	if !ok || !slices.Equal(ids, rep.KeyIDs) {
		tb.Fatalf("Destroy(%s) = %x, then Destroyed = %+v, %v, want the same ids", t, ids, rep, ok)
	}
	return rep
}

// assertNotOnDisk reads every file under root and fails if one holds one
// of secrets in any common encoding.
func assertNotOnDisk(tb testing.TB, root string, secrets [][]byte) {
	tb.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, s := range secrets {
			if containsAny(b, encodings(s)) {
				tb.Errorf("%s holds secret key %d", path, i)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func assertExists(tb testing.TB, path string, want bool) {
	tb.Helper()
	_, err := os.Stat(path)
	if got := err == nil; got != want {
		tb.Errorf("Stat(%s) = %v, want exists=%v", path, err, want)
	}
}

// TestDestroy: after Destroy the tenant's keys are gone from memory (the
// cipher handed out fails), from disk (no file holds their bytes), and the
// tenant is tombstoned; others are untouched.
func TestDestroy(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ad := []byte("acme|s|1")
	ctA := mustEncrypt(t, a, []byte("acme's data"), ad)
	mustRotate(t, ks, "acme")
	ctA2 := mustEncrypt(t, a, []byte("acme's newer data"), ad)
	ctB := mustEncrypt(t, b, []byte("beta's data"), nil)
	secrets := tenantKeyBytes(t, a) // two AEAD keys and the PRF key
	if len(secrets) != 3 {
		t.Fatalf("acme has %d keys, want 3", len(secrets))
	}
	ids := []uint32{must(KeyIDOf(ctA)), must(KeyIDOf(ctA2))}
	slices.Sort(ids)

	rep := mustDestroy(t, ks, "acme")
	if rep.Tenant != "acme" || !slices.Equal(rep.KeyIDs, ids) || rep.At.IsZero() {
		t.Errorf("Destroy(acme) = %+v, want tenant acme, ids %x, a time", rep, ids)
	}

	gone := []struct {
		name string
		err  error
	}{
		{"cipher.Encrypt", second(a.Encrypt([]byte("x"), ad))},
		{"cipher.Decrypt", second(a.Decrypt(ctA, ad))},
		{"cipher.Decrypt newer", second(a.Decrypt(ctA2, ad))},
		{"cipher.TryHash", second(a.TryHash("stream", []byte("s")))},
		{"Cipher", second(ks.Cipher("acme"))},
		{"Create", second(ks.Create("acme"))},
		{"Keys", second(ks.Keys("acme"))},
		{"Rotate", second(ks.Rotate("acme"))},
		{"DestroyKey", ks.DestroyKey("acme", ids[0])},
	}
	for _, g := range gone {
		if !errors.Is(g.err, ErrDestroyed) || events.ErrorCode(g.err) != events.EGONE {
			t.Errorf("%s after Destroy = %v, want %v (code %s)", g.name, g.err, ErrDestroyed, events.EGONE)
		}
	}
	if h := a.Hash("stream", []byte("s")); h != nil || a.PrimaryKeyID() != 0 {
		t.Errorf("after Destroy: Hash = %x, PrimaryKeyID = 0x%08x, want nil and 0", h, a.PrimaryKeyID())
	}
	for _, id := range ids {
		if owner, ok := ks.Owner(id); owner != "acme" || !ok {
			t.Errorf("Owner(0x%08x) after Destroy = %q, %v, want acme", id, owner, ok)
		}
	}
	if _, err := b.Decrypt(ctA, ad); !errors.As(err, new(*ForeignKeyError)) {
		t.Errorf("beta Decrypt(acme's ciphertext) after Destroy = %v, want *ForeignKeyError (owner acme)", err)
	}
	if pt, err := b.Decrypt(ctB, nil); err != nil || string(pt) != "beta's data" {
		t.Errorf("beta Decrypt after acme's Destroy = %q, %v", pt, err)
	}
	if got, _ := ks.Tenants(); !slices.Equal(got, []events.TenantID{"beta"}) {
		t.Errorf("Tenants() after Destroy = %v, want [beta]", got)
	}
	if got, ok := ks.Destroyed("acme"); !ok || !slices.Equal(got.KeyIDs, ids) {
		t.Errorf("Destroyed(acme) = %+v, %v, want its report", got, ok)
	}
	if _, ok := ks.Destroyed("beta"); ok {
		t.Errorf("Destroyed(beta) = true, want false")
	}
	if s := a.String(); s != "TenantCipher(acme, DESTROYED)" {
		t.Errorf("String() after Destroy = %q", s)
	}

	// Disk: no file anywhere in the data directory holds acme's keys; the
	// tombstone is 0600.
	assertNotOnDisk(t, dataDir(ks), secrets)
	assertExists(t, ks.path("acme"), false)
	if fi, err := os.Stat(ks.tombstonePath("acme")); err != nil || fi.Mode() != 0o600 {
		t.Errorf("Stat(tombstone) = %v, %v, want mode 0600", fi, err)
	}

	// Idempotent.
	again, err := ks.Destroy("acme")
	if err != nil || !slices.Equal(again, ids) {
		t.Errorf("Destroy(acme) again = %x, %v, want the same ids %x", again, err, ids)
	}
	if got, ok := ks.Destroyed("acme"); !ok || !slices.Equal(got.KeyIDs, ids) || !got.At.Equal(rep.At) {
		t.Errorf("Destroyed(acme) after Destroy again = %+v, %v, want the first report (%v)", got, ok, rep.At)
	}
	if _, err := ks.Destroy("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Destroy(nobody) = %v, want %v", err, ErrNotFound)
	}

	// Across a reopen.
	ks.Close()
	ks2 := mustOpenAt(t, dataDir(ks))
	if _, err := ks2.Cipher("acme"); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Cipher(acme) after reopen = %v, want %v", err, ErrDestroyed)
	}
	if got, ok := ks2.Destroyed("acme"); !ok || !slices.Equal(got.KeyIDs, ids) || !got.At.Equal(rep.At) {
		t.Errorf("Destroyed(acme) after reopen = %+v, %v, want %+v", got, ok, rep)
	}
	for _, id := range ids {
		if owner, _ := ks2.Owner(id); owner != "acme" {
			t.Errorf("Owner(0x%08x) after reopen = %q, want acme", id, owner)
		}
	}
	if _, err := ks2.Cipher("beta"); err != nil {
		t.Errorf("Cipher(beta) after reopen = %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

// TestRecreate: new keys with new ids; nothing destroyed comes back.
func TestRecreate(t *testing.T) {
	ks := MustOpenKeystore(t)
	old := mustCreate(t, ks, "acme")
	ct := mustEncrypt(t, old, []byte("x"), nil)
	oldID := old.PrimaryKeyID()
	if _, err := ks.Recreate("acme"); !errors.Is(err, ErrExists) {
		t.Errorf("Recreate(live acme) = %v, want %v", err, ErrExists)
	}
	if _, err := ks.Recreate("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Recreate(nobody) = %v, want %v", err, ErrNotFound)
	}
	mustDestroy(t, ks, "acme")

	c, err := ks.Recreate("acme")
	if err != nil {
		t.Fatalf("Recreate(acme) = %v", err)
	}
	if c == old || c.PrimaryKeyID() == oldID {
		t.Errorf("Recreate returned the old cipher or key id 0x%08x", oldID)
	}
	if _, err := old.Encrypt([]byte("x"), nil); !errors.Is(err, ErrDestroyed) {
		t.Errorf("the old cipher after Recreate: Encrypt = %v, want %v", err, ErrDestroyed)
	}
	if _, err := c.Decrypt(ct, nil); !errors.Is(err, ErrKeyDestroyed) || errors.As(err, new(*ForeignKeyError)) {
		t.Errorf("new cipher Decrypt(old ciphertext) = %v, want %v (not foreign)", err, ErrKeyDestroyed)
	}
	if owner, _ := ks.Owner(oldID); owner != "acme" {
		t.Errorf("Owner(old id) after Recreate = %q, want acme", owner)
	}
	if _, ok := ks.Destroyed("acme"); ok {
		t.Errorf("Destroyed(acme) after Recreate = true, want false")
	}
	if got, err := ks.Cipher("acme"); err != nil || got != c {
		t.Errorf("Cipher(acme) after Recreate = %v, %v, want the new cipher", got, err)
	}
	assertExists(t, ks.tombstonePath("acme"), false)
	assertExists(t, ks.historyPath("acme"), true)

	// Shred again: the report names the new ids; the old ones still name acme.
	newID := c.PrimaryKeyID()
	rep := mustDestroy(t, ks, "acme")
	if !slices.Equal(rep.KeyIDs, []uint32{newID}) {
		t.Errorf("second Destroy report ids = %x, want the new generation's only (%x)", rep.KeyIDs, newID)
	}
	ks.Close()
	ks2 := mustOpenAt(t, dataDir(ks))
	for _, id := range []uint32{oldID, newID} {
		if owner, _ := ks2.Owner(id); owner != "acme" {
			t.Errorf("Owner(0x%08x) after reopen = %q, want acme", id, owner)
		}
	}
	c3, err := ks2.Recreate("acme")
	if err != nil {
		t.Fatalf("third generation Recreate = %v", err)
	}
	if id := c3.PrimaryKeyID(); id == oldID || id == newID {
		t.Errorf("third generation reuses key id 0x%08x", id)
	}
}

// TestDestroyCrashRecovery: Open finishes a Destroy that wrote its
// tombstone but did not remove the keyset, and a Recreate that wrote the new
// keyset but did not remove the tombstone.
func TestDestroyCrashRecovery(t *testing.T) {
	t.Run("destroy", func(t *testing.T) {
		ks := MustOpenKeystore(t)
		a := mustCreate(t, ks, "acme")
		secrets := tenantKeyBytes(t, a)
		saved, err := os.ReadFile(ks.path("acme"))
		mustDo(t, err)
		mustDestroy(t, ks, "acme")
		ks.Close()
		mustWrite(t, ks.path("acme"), saved) // as if the shred never ran
		mustWrite(t, filepath.Join(ks.dir, atomicfile.TmpPrefix+"acme.keyset-123"), saved)

		ks2 := mustOpenAt(t, dataDir(ks))
		if _, err := ks2.Cipher("acme"); !errors.Is(err, ErrDestroyed) {
			t.Errorf("Cipher(acme) = %v, want %v", err, ErrDestroyed)
		}
		assertExists(t, ks.path("acme"), false)
		assertNotOnDisk(t, dataDir(ks), secrets)
	})
	t.Run("recreate", func(t *testing.T) {
		ks := MustOpenKeystore(t)
		mustCreate(t, ks, "acme")
		mustDestroy(t, ks, "acme")
		tomb, err := os.ReadFile(ks.tombstonePath("acme"))
		mustDo(t, err)
		c, err := ks.Recreate("acme")
		mustDo(t, err)
		id := c.PrimaryKeyID()
		ks.Close()
		mustWrite(t, ks.tombstonePath("acme"), tomb) // as if the tombstone stayed

		ks2 := mustOpenAt(t, dataDir(ks))
		c2, err := ks2.Cipher("acme")
		if err != nil || c2.PrimaryKeyID() != id {
			t.Fatalf("Cipher(acme) = %v, %v, want the re-created keys", c2, err)
		}
		assertExists(t, ks.tombstonePath("acme"), false)
		h, err := ks2.readHistory("acme")
		if err != nil || len(h) != 1 {
			t.Errorf("history = %+v, %v, want the one tombstone", h, err)
		}
	})
}

// TestDestroyRace: Destroy while other goroutines encrypt and decrypt with
// the tenant's cipher. Nothing panics or races; every operation either
// succeeds or fails with ErrDestroyed, and every one that starts after
// Destroy returned fails.
func TestDestroyRace(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ct := mustEncrypt(t, a, []byte("x"), nil)
	var destroyed atomic.Bool
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for i := range 4 {
		wg.Go(func() {
			for j := 0; ; j++ {
				after := destroyed.Load()
				var err error
				switch (i + j) % 3 {
				case 0:
					_, err = a.Encrypt([]byte("p"), nil)
				case 1:
					_, err = a.Decrypt(ct, nil)
				default:
					_, err = a.TryHash("k", []byte("p"))
				}
				switch {
				case err == nil && after:
					t.Errorf("an operation that started after Destroy returned succeeded")
					return
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrDestroyed):
					refused.Add(1)
				default:
					t.Errorf("operation during Destroy = %v, want success or %v", err, ErrDestroyed)
					return
				}
				if after {
					return
				}
			}
		})
	}
	wg.Go(func() { // another tenant, unaffected
		for range 200 {
			if _, err := b.Encrypt([]byte("p"), nil); err != nil {
				t.Errorf("beta Encrypt during acme's Destroy = %v", err)
				return
			}
		}
	})
	for start := time.Now(); ok.Load() < 100 && time.Since(start) < 10*time.Second; {
		runtime.Gosched() // let the workers run a little
	}
	if _, err := ks.Destroy("acme"); err != nil {
		t.Errorf("Destroy(acme) = %v", err)
	}
	destroyed.Store(true)
	wg.Wait()
	if refused.Load() < 4 {
		t.Errorf("%d operations refused, want at least one per worker", refused.Load())
	}
}

// BenchmarkDestroy measures the time to make a tenant unreadable. It does
// not depend on how much data the tenant has: Destroy touches only the
// tenant's keyset file (a few hundred bytes), its tombstone and memory,
// never the data the keys sealed; the cost is a few fsyncs.
func BenchmarkDestroy(b *testing.B) {
	ks := MustOpenKeystore(b)
	n := 0
	for b.Loop() {
		b.StopTimer()
		t := events.TenantID(fmt.Sprintf("t-%d", n))
		n++
		c := mustCreate(b, ks, t)
		mustEncrypt(b, c, []byte("x"), nil)
		b.StartTimer()
		if _, err := ks.Destroy(t); err != nil {
			b.Fatal(err)
		}
	}
}

// Discard leaves no trace of a failed create: no keyset file, no
// tombstone, no owner; the tenant can be created again, and a destroyed
// tenant keeps its tombstone.
func TestDiscard(t *testing.T) {
	ks := MustOpenKeystore(t)
	c := mustCreate(t, ks, "acme")
	id := c.PrimaryKeyID()
	if err := ks.Discard("acme"); err != nil {
		t.Fatalf("Discard(acme) = %v, want nil", err)
	}
	if _, err := os.Stat(ks.path("acme")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("keyset file after Discard: Stat = %v, want not exist", err)
	}
	if _, err := os.Stat(ks.tombstonePath("acme")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tombstone after Discard: Stat = %v, want not exist", err)
	}
	if _, err := ks.Cipher("acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cipher(acme) after Discard = %v, want ErrNotFound", err)
	}
	if owner, ok := ks.Owner(id); ok {
		t.Errorf("Owner(%x) after Discard = %s, want none", id, owner)
	}
	if _, err := c.Encrypt([]byte("x"), nil); err == nil {
		t.Errorf("Encrypt with a discarded cipher = nil error, want one")
	}
	if err := ks.Discard("acme"); err != nil {
		t.Errorf("Discard(acme) again = %v, want nil", err)
	}
	mustCreate(t, ks, "acme")
	// A destroyed tenant is not discarded: its tombstone stays.
	ks2 := mustOpenAt(t, t.TempDir())
	mustCreate(t, ks2, "beta")
	mustDestroy(t, ks2, "beta")
	if err := ks2.Discard("beta"); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Discard(destroyed) = %v, want ErrDestroyed", err)
	}
	if _, ok := ks2.Destroyed("beta"); !ok {
		t.Errorf("Destroyed(beta) after Discard = false, want its tombstone kept")
	}
}
