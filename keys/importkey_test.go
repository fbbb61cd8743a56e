package keys

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestMoveKeyset(t *testing.T) {
	src, dst, other := MustOpenKeystore(t), MustOpenKeystore(t), MustOpenKeystore(t)
	c := mustCreate(t, src, "acme")
	ct, err := c.Encrypt([]byte("secret"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dst.ImportPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if fp, err := ImportKeyFingerprint(pub.Keyset); err != nil || fp != pub.Fingerprint {
		t.Fatalf("ImportKeyFingerprint = %q, %v, want %q", fp, err, pub.Fingerprint)
	}
	if strings.Contains(string(pub.Keyset), "Private") || strings.Contains(string(pub.Keyset), "PRIVATE") {
		t.Fatalf("the public import key holds private material: %s", pub.Keyset)
	}
	blob, err := src.ExportKeyset("acme", pub.Keyset, []byte("manifest-1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(blob), "secret") {
		t.Fatal("blob leaks")
	}
	for _, tt := range []struct {
		name    string
		ks      *Keystore
		tenant  string
		context string
	}{
		{"another vault", other, "acme", "manifest-1"},
		{"another manifest", dst, "acme", "manifest-2"},
	} {
		if _, err := tt.ks.OpenImport("acme", blob, []byte(tt.context)); !errors.Is(err, ErrWrongImportKey) {
			t.Errorf("OpenImport(%s) = %v, want ErrWrongImportKey", tt.name, err)
		}
	}
	if _, err := dst.OpenImport("globex", blob, []byte("manifest-1")); err == nil {
		t.Errorf("OpenImport(another tenant) = nil, want an error")
	}
	imp, err := dst.OpenImport("acme", blob, []byte("manifest-1"))
	if err != nil {
		t.Fatalf("OpenImport = %v", err)
	}
	if pt, err := imp.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "secret" {
		t.Fatalf("trial Decrypt = %q, %v", pt, err)
	}
	if _, err := dst.Cipher("acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Cipher before Install = %v, want ErrNotFound: nothing is written by OpenImport", err)
	}
	c2, err := dst.Install(imp)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := c2.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "secret" {
		t.Fatalf("Decrypt after Install = %q, %v", pt, err)
	}
	if string(c2.Hash("stream", []byte("x"))) != string(c.Hash("stream", []byte("x"))) {
		t.Error("keyed hashes differ across the move")
	}
	if _, err := dst.Install(imp); !errors.Is(err, ErrExists) {
		t.Errorf("second Install = %v, want ErrExists", err)
	}

	// The import key survives a master key rotation, re-wrapped.
	data := dataDir(dst)
	if err := dst.RotateMaster(context.Background(), "local://"+filepath.Join(data, "new.key")); err != nil {
		t.Fatal(err)
	}
	again, err := dst.ImportPublicKey()
	if err != nil || again.Fingerprint != pub.Fingerprint {
		t.Fatalf("ImportPublicKey after RotateMaster = %v, %v; want the same key", again.Fingerprint, err)
	}
}
