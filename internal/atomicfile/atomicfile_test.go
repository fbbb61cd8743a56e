package atomicfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := atomicfile.WriteFile(p, []byte(content), atomicfile.Options{}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("ReadFile = %q, %v, want %q", b, err, content)
		}
		fi, _ := os.Stat(p)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	}
	err := atomicfile.WriteFile(p, []byte("three"), atomicfile.Options{NoClobber: true})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteFile(NoClobber) over an existing file = %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("NoClobber changed the file to %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftover files: %v", entries)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "missing", "f"), nil, atomicfile.Options{}); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

// ShredReplaced overwrites the replaced content in place: a link the test
// keeps to the old file sees it change; without the option it does not.
func TestWriteFileShredReplaced(t *testing.T) {
	for _, tt := range []struct {
		name     string
		shred    bool
		wantKept bool // the kept link still reads the old content
	}{
		{"plain replace", false, true},
		{"ShredReplaced", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			old := []byte("the old secret content")
			if err := atomicfile.WriteFile(p, old, atomicfile.Options{}); err != nil {
				t.Fatal(err)
			}
			keep := filepath.Join(t.TempDir(), "keep")
			if err := os.Link(p, keep); err != nil {
				t.Skipf("no hard links here: %v", err)
			}
			if err := atomicfile.WriteFile(p, []byte("new"), atomicfile.Options{ShredReplaced: tt.shred}); err != nil {
				t.Fatalf("WriteFile(ShredReplaced=%v) = %v", tt.shred, err)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "new" {
				t.Fatalf("ReadFile = %q, %v, want %q", b, err, "new")
			}
			kept, err := os.ReadFile(keep)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(kept) == string(old); got != tt.wantKept {
				t.Errorf("the replaced file reads %q afterwards; still the old content = %v, want %v", kept, got, tt.wantKept)
			}
			if len(kept) != len(old) {
				t.Errorf("the replaced file is %d bytes afterwards, want %d (overwritten, not truncated)", len(kept), len(old))
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("leftover files: %v", entries)
			}
		})
	}
}

func TestShred(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := atomicfile.WriteFile(p, []byte("secret"), atomicfile.Options{}); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "keep")
	linked := os.Link(p, keep) == nil
	if err := atomicfile.Shred(p); err != nil {
		t.Fatalf("Shred = %v", err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat after Shred = %v, want ErrNotExist", err)
	}
	if b, _ := os.ReadFile(keep); linked && string(b) == "secret" {
		t.Errorf("a link to the shredded file still reads %q", b)
	}
	if err := atomicfile.Shred(p); err != nil {
		t.Errorf("Shred of a missing file = %v, want nil", err)
	}
}
