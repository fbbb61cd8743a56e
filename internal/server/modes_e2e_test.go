//go:build unix

package server_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Every file and directory of the data dir — the embedded broker's, the
// tenant stores' (Badger), the keys', the audit log's — is private to the
// vault's user (no group or other bit), also with the permissive umask a
// service manager may start vaultd with, and files an older vaultd left
// 0644 are made 0600.
func TestDataDirModes(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "broker", "left-by-an-older-vaultd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broker", "left-by-an-older-vaultd", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	v := mustStart(t, dir, "")
	tok := v.createTenant("acme")
	v.publish("tenant.acme.events", rec("o-1", event("a1", "o-1", "order.placed", `{"n":1}`)))
	v.waitVersion("acme", tok, "o-1", 1)
	v.stop() // Badger writes its tables at close

	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if m := info.Mode().Perm(); m&0o077 != 0 {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s has mode %#o, want no group or other bit (0600 files, 0700 dirs)", rel, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"broker", "tenants/acme", "keys", "audit"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err != nil {
			t.Errorf("Stat(%s) = %v: the walk did not cover it", sub, err)
		}
	}
	t.Logf("%d files and directories checked", n)
}
