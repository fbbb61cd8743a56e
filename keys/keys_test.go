package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	aesgcmpb "github.com/tink-crypto/tink-go/v2/proto/aes_gcm_go_proto"
	hmacprfpb "github.com/tink-crypto/tink-go/v2/proto/hmac_prf_go_proto"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"google.golang.org/protobuf/proto"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// MustOpenKeystore opens a keystore in a fresh data directory (keys in
// <data>/keys, master key in <data>/master.key) and closes it at cleanup.
func MustOpenKeystore(tb testing.TB) *Keystore {
	tb.Helper()
	return mustOpenAt(tb, tb.TempDir())
}

// mustOpenAt opens the keystore of data directory data.
func mustOpenAt(tb testing.TB, data string) *Keystore {
	tb.Helper()
	ks, err := OpenKeystore(filepath.Join(data, "keys"), masterURI(data), nil)
	if err != nil {
		tb.Fatalf("OpenKeystore(%q) = %v", data, err)
	}
	tb.Cleanup(func() { ks.Close() })
	return ks
}

func masterURI(data string) string { return "local://" + filepath.Join(data, "master.key") }

// dataDir returns the data directory of a keystore opened by mustOpenAt.
func dataDir(ks *Keystore) string { return filepath.Dir(ks.dir) }

func mustCreate(tb testing.TB, ks *Keystore, t events.TenantID) *TenantCipher {
	tb.Helper()
	c, err := ks.Create(t)
	if err != nil {
		tb.Fatalf("Create(%q) = %v", t, err)
	}
	return c
}

// keysOf returns c's current unwrapped keys.
func keysOf(tb testing.TB, c *TenantCipher) *tenantKeys {
	tb.Helper()
	k, err := c.current()
	if err != nil {
		tb.Fatalf("%v: keys: %v", c, err)
	}
	return k
}

func mustEncrypt(tb testing.TB, c *TenantCipher, pt, ad []byte) []byte {
	tb.Helper()
	ct, err := c.Encrypt(pt, ad)
	if err != nil {
		tb.Fatalf("%v.Encrypt(%q, %q) = %v", c, pt, ad, err)
	}
	return ct
}

func TestRoundTrip(t *testing.T) {
	ks := MustOpenKeystore(t)
	c := mustCreate(t, ks, "acme")
	tests := []struct {
		name   string
		pt, ad []byte
	}{
		{"simple", []byte("hello"), []byte("acme|orders|1")},
		{"nil associated data", []byte("hello"), nil},
		{"empty plaintext", []byte{}, []byte("ad")},
		{"nil plaintext", nil, nil},
		{"binary 64KiB", bytes.Repeat([]byte{0, 0xff, 7}, 64<<10/3), []byte{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := mustEncrypt(t, c, tt.pt, tt.ad)
			if id, ok := KeyIDOf(ct); !ok || id != c.PrimaryKeyID() {
				t.Errorf("KeyIDOf(ciphertext) = 0x%08x, %v, want 0x%08x, true", id, ok, c.PrimaryKeyID())
			}
			if len(tt.pt) > 0 && bytes.Contains(ct, tt.pt) {
				t.Errorf("ciphertext contains the plaintext")
			}
			got, err := c.Decrypt(ct, tt.ad)
			if err != nil || !bytes.Equal(got, tt.pt) {
				t.Errorf("Decrypt(%.40q) = %.40q, %v, want %.40q, nil", ct, got, err, tt.pt)
			}
		})
	}
}

func TestDecryptFailures(t *testing.T) {
	ks := MustOpenKeystore(t)
	c := mustCreate(t, ks, "acme")
	ad := []byte("acme|orders|1")
	ct := mustEncrypt(t, c, []byte("secret payload"), ad)
	flip := func(i int) []byte {
		b := bytes.Clone(ct)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name string
		ct   []byte
		ad   []byte
	}{
		{"wrong associated data", ct, []byte("acme|orders|2")},
		{"missing associated data", ct, nil},
		{"flipped ciphertext bit", flip(len(ct) / 2), ad},
		{"flipped tag bit", flip(len(ct) - 1), ad},
		{"raw prefix byte", flip(0), ad},
		{"truncated", ct[:len(ct)-1], ad},
		{"prefix only", ct[:5], ad},
		{"too short for a prefix", ct[:4], ad},
		{"empty", []byte{}, ad},
		{"nil", nil, ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decrypt(tt.ct, tt.ad)
			if !errors.Is(err, ErrDecrypt) || got != nil {
				t.Errorf("Decrypt(%.40q) = %q, %v, want nil, %v", tt.ct, got, err, ErrDecrypt)
			}
		})
	}
}

func TestDecryptForeignKey(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ctB := mustEncrypt(t, b, []byte("beta's data"), []byte("ad"))

	unknownID := b.PrimaryKeyID() + 1
	for _, taken := ks.Owner(unknownID); taken; _, taken = ks.Owner(unknownID) {
		unknownID++
	}
	unknown := bytes.Clone(ctB)
	binary.BigEndian.PutUint32(unknown[1:5], unknownID) // a key id no tenant has

	tests := []struct {
		name string
		ct   []byte
		want ForeignKeyError
	}{
		{"other tenant's key", ctB, ForeignKeyError{KeyID: b.PrimaryKeyID(), Tenant: "acme", Owner: "beta"}},
		{"unknown key", unknown, ForeignKeyError{KeyID: unknownID, Tenant: "acme", Owner: ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Decrypt(tt.ct, []byte("ad"))
			var fe *ForeignKeyError
			if !errors.As(err, &fe) || *fe != tt.want || got != nil {
				t.Fatalf("Decrypt(%.20q) = %q, %v, want nil, %v", tt.ct, got, err, &tt.want)
			}
			var fk interface { // as vault.ForeignKey declares it
				error
				ForeignKeyID() uint32
			}
			if !errors.As(err, &fk) || fk.ForeignKeyID() != tt.want.KeyID {
				t.Errorf("Decrypt(%.20q) error %v does not offer ForeignKeyID() = 0x%08x", tt.ct, err, tt.want.KeyID)
			}
			if errors.Is(err, ErrDecrypt) {
				t.Errorf("Decrypt(%.20q) error %v is ErrDecrypt, want only *ForeignKeyError", tt.ct, err)
			}
			if code := events.ErrorCode(err); code != events.EFORBIDDEN {
				t.Errorf("ErrorCode(%v) = %q, want %q", err, code, events.EFORBIDDEN)
			}
			if msg := events.ErrorMessage(err); strings.Contains(msg, "beta") {
				t.Errorf("ErrorMessage(%v) = %q names the owner; it is shown to callers", err, msg)
			}
		})
	}
	// The right tenant still opens it.
	if pt, err := b.Decrypt(ctB, []byte("ad")); err != nil || string(pt) != "beta's data" {
		t.Errorf("owner Decrypt = %q, %v, want %q, nil", pt, err, "beta's data")
	}
}

func TestCreateCipherTenantsOwner(t *testing.T) {
	ks := MustOpenKeystore(t)
	for _, id := range []events.TenantID{"zeta", "acme", "m-42"} {
		mustCreate(t, ks, id)
	}

	if _, err := ks.Create("acme"); !errors.Is(err, ErrExists) || events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("Create(acme) again = %v, want %v with code %s", err, ErrExists, events.ECONFLICT)
	}
	if _, err := ks.Cipher("nobody"); !errors.Is(err, ErrNotFound) || events.ErrorCode(err) != events.ENOTFOUND {
		t.Errorf("Cipher(nobody) = %v, want %v with code %s", err, ErrNotFound, events.ENOTFOUND)
	}
	c, err := ks.Cipher("acme")
	if err != nil || c.Tenant() != "acme" {
		t.Fatalf("Cipher(acme) = %v, %v, want acme's cipher", c, err)
	}
	if got, ok := ks.Owner(c.PrimaryKeyID()); !ok || got != "acme" {
		t.Errorf("Owner(0x%08x) = %q, %v, want acme, true", c.PrimaryKeyID(), got, ok)
	}
	got, err := ks.Tenants()
	want := []events.TenantID{"acme", "m-42", "zeta"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Tenants() = %v, %v, want %v", got, err, want)
	}

	// A file on disk that the keystore does not know is not overwritten.
	if err := os.WriteFile(ks.path("stray"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Create("stray"); !errors.Is(err, ErrExists) {
		t.Errorf("Create(stray) over an existing file = %v, want %v", err, ErrExists)
	}
	if b, _ := os.ReadFile(ks.path("stray")); string(b) != "x" {
		t.Errorf("Create(stray) overwrote the existing file")
	}

	ks.Close()
	if _, err := ks.Cipher("acme"); err == nil {
		t.Errorf("Cipher after Close = nil error, want an error")
	}
	if _, err := ks.Create("new"); err == nil {
		t.Errorf("Create after Close = nil error, want an error")
	}
	if _, ok := ks.Owner(c.PrimaryKeyID()); ok {
		t.Errorf("Owner after Close = true, want false")
	}
	if err := ks.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestHostileTenantIDs(t *testing.T) {
	ks := MustOpenKeystore(t)
	mustCreate(t, ks, "acme")
	data := dataDir(ks)
	before := listTree(t, data)

	for _, id := range []events.TenantID{
		"", "a", "A", "Acme", "-acme", "../acme", "../../etc/passwd", "acme/../beta", "a/b",
		"..", ".", "acme.keyset", "acme\x00", "ac me", "acme\n", "ａｃｍｅ", "master.check",
		events.TenantID(strings.Repeat("a", events.MaxTenantIDLen+1)),
	} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			if c, err := ks.Create(id); events.ErrorCode(err) != events.EINVALID {
				t.Errorf("Create(%q) = %v, %v, want an %s error", id, c, err, events.EINVALID)
			}
			if c, err := ks.Cipher(id); events.ErrorCode(err) != events.EINVALID {
				t.Errorf("Cipher(%q) = %v, %v, want an %s error", id, c, err, events.EINVALID)
			}
		})
	}
	if after := listTree(t, data); !slices.Equal(before, after) {
		t.Errorf("files after hostile ids = %v, want unchanged %v", after, before)
	}
}

// listTree returns the paths of all files under root.
func listTree(tb testing.TB, root string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, path)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestReopen(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ad := []byte("acme|s|1")
	ct := mustEncrypt(t, a, []byte("before restart"), ad)
	hash := a.Hash("stream", []byte("order-42"))
	ks.Close()

	ks2 := mustOpenAt(t, dataDir(ks))
	a2, err := ks2.Cipher("acme")
	if err != nil {
		t.Fatalf("Cipher(acme) after reopen = %v", err)
	}
	if pt, err := a2.Decrypt(ct, ad); err != nil || string(pt) != "before restart" {
		t.Errorf("Decrypt(%.20q) after reopen = %q, %v, want %q, nil", ct, pt, err, "before restart")
	}
	if got := a2.Hash("stream", []byte("order-42")); !bytes.Equal(got, hash) {
		t.Errorf("Hash after reopen = %x, want %x", got, hash)
	}
	if a2.PrimaryKeyID() != a.PrimaryKeyID() {
		t.Errorf("PrimaryKeyID after reopen = 0x%08x, want 0x%08x", a2.PrimaryKeyID(), a.PrimaryKeyID())
	}
	if owner, ok := ks2.Owner(b.PrimaryKeyID()); !ok || owner != "beta" {
		t.Errorf("Owner(0x%08x) after reopen = %q, %v, want beta, true", b.PrimaryKeyID(), owner, ok)
	}
	if got, _ := ks2.Tenants(); !slices.Equal(got, []events.TenantID{"acme", "beta"}) {
		t.Errorf("Tenants() after reopen = %v, want [acme beta]", got)
	}
}

func TestKeysetMovedToAnotherTenant(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, ks *Keystore) // on a closed keystore holding acme and beta
		wantErr string                           // from OpenKeystore, or else from Cipher(tenant)
		tenant  events.TenantID
	}{
		{"copied to a new tenant name", func(t *testing.T, ks *Keystore) {
			copyFile(t, ks.path("acme"), ks.path("evil"))
		}, "cannot be moved", ""},
		{"copied over another tenant", func(t *testing.T, ks *Keystore) {
			copyFile(t, ks.path("acme"), ks.path("beta"))
		}, "cannot be moved", ""},
		{"copied with its tenant field rewritten", func(t *testing.T, ks *Keystore) {
			rewriteTenant(t, ks, "acme", "evil")
		}, "is in the keysets of both tenant acme and tenant evil", ""},
		{"moved with its tenant field rewritten", func(t *testing.T, ks *Keystore) {
			rewriteTenant(t, ks, "acme", "evil")
			mustDo(t, os.Remove(ks.path("acme")))
		}, "cannot unwrap the AEAD keyset of tenant evil", "evil"},
		{"PRF keyset swapped in from another tenant", func(t *testing.T, ks *Keystore) {
			var a, b keysetFile
			readJSON(t, ks.path("acme"), &a)
			readJSON(t, ks.path("beta"), &b)
			a.PRF = b.PRF
			out, _ := json.Marshal(a)
			if err := os.WriteFile(ks.path("acme"), out, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "cannot unwrap the PRF keyset of tenant acme", "acme"},
		{"key ids in clear rewritten", func(t *testing.T, ks *Keystore) {
			var a keysetFile
			readJSON(t, ks.path("acme"), &a)
			a.Destroyed = []uint32{42}
			out, _ := json.Marshal(a)
			if err := os.WriteFile(ks.path("acme"), out, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "tampered with", "acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := MustOpenKeystore(t)
			mustCreate(t, ks, "acme")
			mustCreate(t, ks, "beta")
			ks.Close()
			tt.tamper(t, ks)
			ks2, err := OpenKeystore(ks.dir, masterURI(dataDir(ks)), nil)
			if tt.tenant == "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("OpenKeystore after tampering = %v, %v, want error containing %q", ks2, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenKeystore after tampering = %v (keysets are unwrapped on first use)", err)
			}
			defer ks2.Close()
			c, err := ks2.Cipher(tt.tenant)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Cipher(%s) after tampering = %v, %v, want error containing %q", tt.tenant, c, err, tt.wantErr)
			}
			if !errors.Is(err, ErrWrongMasterKey) && !strings.Contains(err.Error(), "tampered") {
				t.Errorf("Cipher(%s) after tampering = %v, want ErrWrongMasterKey", tt.tenant, err)
			}
		})
	}
}

// rewriteTenant copies from's keyset file to to's, with its tenant field
// rewritten.
func rewriteTenant(tb testing.TB, ks *Keystore, from, to events.TenantID) {
	tb.Helper()
	var f keysetFile
	readJSON(tb, ks.path(from), &f)
	f.Tenant = string(to)
	out, _ := json.Marshal(f)
	if err := os.WriteFile(ks.path(to), out, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// TestKeyIDCollisionOnLoad: two tenants claiming one key id is refused, even
// when both files are correctly wrapped.
func TestKeyIDCollisionOnLoad(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	kek, err := ks.master.kekFor("beta", false)
	if err != nil {
		t.Fatal(err)
	}
	data, err := marshalKeyset("beta", keysOf(t, a), kek, ks.path("beta"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ks.path("beta"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	ks.Close()
	_, err = OpenKeystore(ks.dir, masterURI(dataDir(ks)), nil)
	if want := "is in the keysets of both"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("OpenKeystore with a shared key id = %v, want error containing %q", err, want)
	}
}

func TestKeyIDCollisionOnCreate(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	// The first candidate reuses acme's key id; the next ones are fresh.
	calls := 0
	ks.newAEADKeyset = func() (*keyset.Handle, error) {
		calls++
		if calls == 1 {
			return keysOf(t, a).aeadHandle, nil
		}
		return keyset.NewHandle(aead.AES256GCMKeyTemplate())
	}
	b := mustCreate(t, ks, "beta")
	if calls != 2 || b.PrimaryKeyID() == a.PrimaryKeyID() {
		t.Errorf("Create(beta) with a colliding first key: %d generations, primary 0x%08x, want 2 and not 0x%08x",
			calls, b.PrimaryKeyID(), a.PrimaryKeyID())
	}
	if owner, _ := ks.Owner(a.PrimaryKeyID()); owner != "acme" {
		t.Errorf("Owner(0x%08x) = %q, want acme", a.PrimaryKeyID(), owner)
	}

	// A generator stuck on a taken id gives up with an error.
	ks.newAEADKeyset = func() (*keyset.Handle, error) { return keysOf(t, a).aeadHandle, nil }
	if c, err := ks.Create("gamma"); err == nil {
		t.Errorf("Create(gamma) with only colliding keys = %v, nil, want an error", c)
	}
	if _, err := os.Stat(ks.path("gamma")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(gamma keyset) = %v, want not exist", err)
	}
}

func TestMasterKeyErrors(t *testing.T) {
	// A keystore with one tenant, sealed by data/master.key.
	base := MustOpenKeystore(t)
	mustCreate(t, base, "acme")
	base.Close()
	keysDir := base.dir

	otherKey := filepath.Join(t.TempDir(), "other.key")
	if _, err := openLocalMasterKey(otherKey, true, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.key")
	if err := os.WriteFile(garbage, []byte("SECRET-LOOKING-GARBAGE"), 0o600); err != nil {
		t.Fatal(err)
	}
	lost := filepath.Join(t.TempDir(), "lost.key")
	prfKey := filepath.Join(t.TempDir(), "prf.key")
	writeCleartextKeyset(t, prfKey, prf.HMACSHA256PRFKeyTemplate())

	tests := []struct {
		name    string
		dir     string
		uri     string
		prepare func(t *testing.T) string // returns a keys dir to use instead of dir
		wantErr string
	}{
		{"different master key", keysDir, "local://" + otherKey, nil, "created with a different master key"},
		{"different master key, no check file", "", "local://" + otherKey, func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "keys")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			copyFile(t, filepath.Join(keysDir, "acme.keyset"), filepath.Join(d, "acme.keyset"))
			return d
		}, "wrong master key"},
		{"master key file missing", keysDir, "local://" + lost, nil, "does not exist, but the keystore holds keys"},
		{"not a keyset", keysDir, "local://" + garbage, nil, "is not a Tink keyset"},
		{"not an AEAD keyset", keysDir, "local://" + prfKey, nil, "is not a Tink AEAD keyset"},
		{"hcvault without a key path", keysDir, "hcvault://127.0.0.1:1/transit/tv", nil, "is not hcvault://HOST[:PORT]/MOUNT/keys/NAME"},
		{"aws-kms with a short account", keysDir, "aws-kms://arn:aws:kms:eu-west-1:123:key/abc", nil, "is not aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID"},
		{"gcp-kms without a key", keysDir, "gcp-kms://projects/p/locations/l/keyRings/r", nil, "is not gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K"},
		{"fake-kms without a client", keysDir, "fake-kms://c2VjcmV0LWtleS1ieXRlcw", nil, `unknown master key scheme "fake-kms"`},
		{"unknown scheme", keysDir, "file:///tmp/x", nil, `unknown master key scheme "file"`},
		{"no scheme", keysDir, "c2VjcmV0LWtleS1ieXRlcw==", nil, "has no scheme"},
		{"no path", keysDir, "local://", nil, "has no path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir
			if tt.prepare != nil {
				dir = tt.prepare(t)
			}
			ks, err := OpenKeystore(dir, tt.uri, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenKeystore(%q) = %v, %v, want error containing %q", tt.uri, ks, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("OpenKeystore(%q) error %q quotes the key file or URI", tt.uri, err)
			}
		})
	}
	if _, err := os.Stat(lost); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%s) = %v, want not exist: no new master key next to sealed keys", lost, err)
	}
}

func TestLocalMasterKey(t *testing.T) {
	data := t.TempDir()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	ks, err := OpenKeystore(filepath.Join(data, "keys"), masterURI(data), logger)
	if err != nil {
		t.Fatalf("OpenKeystore = %v", err)
	}
	mustCreate(t, ks, "acme")
	ks.Close()
	if !strings.Contains(logs.String(), "DEVELOPMENT ONLY") || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("log after generating a master key = %s, want a WARN saying DEVELOPMENT ONLY", logs.String())
	}
	for _, k := range masterKeyBytes(t, filepath.Join(data, "master.key")) {
		if s := encodings(k); containsAny(logs.Bytes(), s) {
			t.Errorf("log contains master key material")
		}
	}

	modes := []struct {
		path string
		want fs.FileMode
	}{
		{filepath.Join(data, "master.key"), 0o600},
		{filepath.Join(data, "keys"), 0o700 | fs.ModeDir},
		{filepath.Join(data, "keys", "acme.keyset"), 0o600},
		{filepath.Join(data, "keys", checkFile), 0o600},
	}
	for _, m := range modes {
		fi, err := os.Stat(m.path)
		if err != nil || fi.Mode() != m.want {
			t.Errorf("Stat(%s).Mode() = %v (%v), want %v", m.path, fi.Mode(), err, m.want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(data, "keys", atomicfile.TmpPrefix+"*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// Reopening does not regenerate or warn.
	logs.Reset()
	before, _ := os.ReadFile(filepath.Join(data, "master.key"))
	ks2, err := OpenKeystore(filepath.Join(data, "keys"), masterURI(data), logger)
	if err != nil {
		t.Fatalf("OpenKeystore again = %v", err)
	}
	ks2.Close()
	after, _ := os.ReadFile(filepath.Join(data, "master.key"))
	if !bytes.Equal(before, after) || logs.Len() != 0 {
		t.Errorf("reopen changed the master key (%v) or logged %q", !bytes.Equal(before, after), logs.String())
	}

	// A relative path is relative to the working directory.
	t.Chdir(data)
	ks3, err := OpenKeystore("keys", "local://master.key", nil)
	if err != nil {
		t.Fatalf("OpenKeystore(keys, local://master.key) in %s = %v", data, err)
	}
	defer ks3.Close()
	if got, _ := ks3.Tenants(); !slices.Equal(got, []events.TenantID{"acme"}) {
		t.Errorf("Tenants() via relative paths = %v, want [acme]", got)
	}
}

// TestRedacted formats every value that holds keys every way we can think of
// and looks for the key bytes.
func TestRedacted(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	ct := mustEncrypt(t, b, []byte("x"), nil)
	_, ferr := a.Decrypt(ct, nil)

	secrets := append(tenantKeyBytes(t, a), masterKeyBytes(t, filepath.Join(dataDir(ks), "master.key"))...)
	if len(secrets) != 3 {
		t.Fatalf("found %d keys, want 3 (AEAD, PRF, master)", len(secrets))
	}

	want := fmt.Sprintf("TenantCipher(acme, primary=0x%08x, REDACTED)", a.PrimaryKeyID())
	if got := a.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "cipher", a, "keystore", ks, "state", keysOf(t, a).aeadHandle)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "cipher", a, "keystore", ks, "master", ks.master)
	for _, v := range []any{a, ks, ks.master, ferr} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, v)
			for _, s := range secrets {
				if containsAny([]byte(out), encodings(s)) {
					t.Errorf("Sprintf(%q, %T) = %q contains key material", verb, v, out)
				}
			}
		}
	}
	for _, s := range secrets {
		if containsAny(logs.Bytes(), encodings(s)) {
			t.Errorf("slog output %q contains key material", logs.String())
		}
	}
}

// TestNoKeyMaterialOnDisk reads every file under the keys directory and looks
// for the tenants' and the master key's bytes in any common encoding.
func TestNoKeyMaterialOnDisk(t *testing.T) {
	ks := MustOpenKeystore(t)
	var secrets [][]byte
	for _, id := range []events.TenantID{"acme", "beta", "gamma"} {
		secrets = append(secrets, tenantKeyBytes(t, mustCreate(t, ks, id))...)
	}
	secrets = append(secrets, masterKeyBytes(t, filepath.Join(dataDir(ks), "master.key"))...)
	if len(secrets) != 7 {
		t.Fatalf("found %d keys, want 7", len(secrets))
	}
	files := 0
	err := filepath.WalkDir(ks.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, s := range secrets {
			if containsAny(b, encodings(s)) {
				t.Errorf("%s contains key %d in some encoding", path, i)
			}
		}
		return nil
	})
	if err != nil || files != 4 {
		t.Errorf("walked %d files (%v), want 4 (3 keysets, %s)", files, err, checkFile)
	}
}

func TestHash(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	b := mustCreate(t, ks, "beta")
	h := func(c *TenantCipher, kind, data string) string { return hex.EncodeToString(c.Hash(kind, []byte(data))) }

	base := h(a, "stream", "order-42")
	if len(base) != 2*HashSize {
		t.Fatalf("Hash(stream, order-42) is %d bytes, want %d", len(base)/2, HashSize)
	}
	if again := h(a, "stream", "order-42"); again != base {
		t.Errorf("Hash(stream, order-42) = %s then %s, want deterministic", base, again)
	}
	tests := []struct {
		name        string
		c           *TenantCipher
		kind, data  string
		other       *TenantCipher
		okind, odat string
	}{
		{"across tenants", a, "stream", "order-42", b, "stream", "order-42"},
		{"across kinds", a, "stream", "order-42", a, "event-id", "order-42"},
		{"across data", a, "stream", "order-42", a, "stream", "order-43"},
		{"kind/data boundary", a, "ab", "c", a, "a", "bc"},
		{"empty kind vs data", a, "", "stream", a, "stream", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, y := h(tt.c, tt.kind, tt.data), h(tt.other, tt.okind, tt.odat)
			if x == y {
				t.Errorf("%v.Hash(%q, %q) = %v.Hash(%q, %q) = %s, want different",
					tt.c, tt.kind, tt.data, tt.other, tt.okind, tt.odat, x)
			}
		})
	}
}

func TestKeyIDOf(t *testing.T) {
	tests := []struct {
		in     []byte
		want   uint32
		wantOK bool
	}{
		{[]byte{0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0xff}, 0x1a2b3c4d, true},
		{[]byte{0x01, 0, 0, 0, 1}, 1, true},
		{[]byte{0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0xff}, 0, false}, // legacy prefix: not ours
		{[]byte{0x01, 0x1a, 0x2b, 0x3c}, 0, false},
		{nil, 0, false},
	}
	for _, tt := range tests {
		if got, ok := KeyIDOf(tt.in); got != tt.want || ok != tt.wantOK {
			t.Errorf("KeyIDOf(%x) = 0x%08x, %v, want 0x%08x, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestConcurrent exercises the copy-on-write maps under -race.
func TestConcurrent(t *testing.T) {
	ks := MustOpenKeystore(t)
	a := mustCreate(t, ks, "acme")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			id := events.TenantID(fmt.Sprintf("tenant-%d", i))
			c, err := ks.Create(id)
			if err != nil {
				t.Errorf("Create(%s) = %v", id, err)
				return
			}
			ct, err := c.Encrypt([]byte("p"), nil)
			if err != nil {
				t.Errorf("Encrypt = %v", err)
				return
			}
			if _, err := a.Decrypt(ct, nil); !errors.As(err, new(*ForeignKeyError)) {
				t.Errorf("acme Decrypt(%s's ciphertext) = %v, want *ForeignKeyError", id, err)
			}
		})
		wg.Go(func() {
			for range 20 {
				ct := mustEncryptNoFatal(t, a)
				if _, err := a.Decrypt(ct, nil); err != nil {
					t.Errorf("Decrypt = %v", err)
				}
				a.Hash("stream", ct)
				ks.Owner(a.PrimaryKeyID())
				ks.Tenants()
				ks.Cipher("acme")
			}
		})
	}
	wg.Wait()
	if got, _ := ks.Tenants(); len(got) != 5 {
		t.Errorf("Tenants() = %v, want 5", got)
	}
}

func mustEncryptNoFatal(t *testing.T, c *TenantCipher) []byte {
	ct, err := c.Encrypt([]byte("p"), nil)
	if err != nil {
		t.Errorf("Encrypt = %v", err)
	}
	return ct
}

// tenantKeyBytes returns the raw AEAD and PRF key bytes of c.
func tenantKeyBytes(tb testing.TB, c *TenantCipher) [][]byte {
	tb.Helper()
	k := keysOf(tb, c)
	return append(rawKeys(tb, k.aeadHandle), rawKeys(tb, k.prfHandle)...)
}

// masterKeyBytes returns the raw key bytes of a local master key file.
func masterKeyBytes(tb testing.TB, path string) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(b)))
	if err != nil {
		tb.Fatal(err)
	}
	return rawKeys(tb, h)
}

// rawKeys extracts the key bytes of the AES-GCM and HMAC-PRF keys in h.
func rawKeys(tb testing.TB, h *keyset.Handle) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, k := range insecurecleartextkeyset.KeysetMaterial(h).GetKey() {
		kd := k.GetKeyData()
		switch {
		case strings.HasSuffix(kd.GetTypeUrl(), ".AesGcmKey"):
			var m aesgcmpb.AesGcmKey
			if err := proto.Unmarshal(kd.GetValue(), &m); err != nil {
				tb.Fatal(err)
			}
			out = append(out, m.GetKeyValue())
		case strings.HasSuffix(kd.GetTypeUrl(), ".HmacPrfKey"):
			var m hmacprfpb.HmacPrfKey
			if err := proto.Unmarshal(kd.GetValue(), &m); err != nil {
				tb.Fatal(err)
			}
			out = append(out, m.GetKeyValue())
		default:
			tb.Fatalf("unexpected key type %s", kd.GetTypeUrl())
		}
	}
	for _, k := range out {
		if len(k) != 32 {
			tb.Fatalf("key of %d bytes, want 32", len(k))
		}
	}
	return out
}

// encodings returns k raw, in hex, in base64 and Go-quoted (as %q and
// prototext print bytes), each whole and as a 12-byte window (enough to
// catch a partial leak, too long to match by chance).
func encodings(k []byte) [][]byte {
	quoted := strconv.Quote(string(k))
	full := [][]byte{
		k,
		[]byte(hex.EncodeToString(k)),
		[]byte(strings.ToUpper(hex.EncodeToString(k))),
		[]byte(base64.StdEncoding.EncodeToString(k)),
		[]byte(base64.RawURLEncoding.EncodeToString(k)),
		[]byte(quoted[1 : len(quoted)-1]),
	}
	out := slices.Clone(full)
	for _, f := range full {
		out = append(out, f[4:16])
	}
	return append(out, []byte(fmt.Sprint(k))) // [12 34 ...]
}

func containsAny(b []byte, needles [][]byte) bool {
	return slices.ContainsFunc(needles, func(n []byte) bool { return bytes.Contains(b, n) })
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func readJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatal(err)
	}
}

// writeCleartextKeyset writes a new cleartext keyset of template tmpl to path.
func writeCleartextKeyset(tb testing.TB, path string, tmpl *tinkpb.KeyTemplate) {
	tb.Helper()
	h, err := keyset.NewHandle(tmpl)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func BenchmarkEncrypt256(b *testing.B) {
	c := mustCreate(b, MustOpenKeystore(b), "acme")
	pt, ad := bytes.Repeat([]byte{'x'}, 256), []byte("acme|stream|1")
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := c.Encrypt(pt, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt256(b *testing.B) {
	c := mustCreate(b, MustOpenKeystore(b), "acme")
	pt, ad := bytes.Repeat([]byte{'x'}, 256), []byte("acme|stream|1")
	ct := mustEncrypt(b, c, pt, ad)
	b.SetBytes(int64(len(pt)))
	for b.Loop() {
		if _, err := c.Decrypt(ct, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	c := mustCreate(b, MustOpenKeystore(b), "acme")
	stream := []byte("order-0000000042")
	for b.Loop() {
		c.Hash("stream", stream)
	}
}

func TestZeroTenantCipher(t *testing.T) {
	var c TenantCipher
	if ct, err := c.Encrypt([]byte("x"), nil); err == nil {
		t.Errorf("zero TenantCipher Encrypt = %q, nil, want an error", ct)
	}
	if pt, err := c.Decrypt([]byte{1, 0, 0, 0, 1, 2}, nil); !errors.Is(err, ErrDecrypt) {
		t.Errorf("zero TenantCipher Decrypt = %q, %v, want %v", pt, err, ErrDecrypt)
	}
	if h := c.Hash("stream", []byte("x")); h != nil {
		t.Errorf("zero TenantCipher Hash = %x, want nil", h)
	}
	if id := c.PrimaryKeyID(); id != 0 {
		t.Errorf("zero TenantCipher PrimaryKeyID = 0x%08x, want 0", id)
	}
}
