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
