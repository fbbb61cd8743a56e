package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWantsVersion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--version"}, true},
		{[]string{"-version"}, true},
		{[]string{"--data-dir", "/data", "--version"}, true},
		{[]string{"--", "--version"}, false},
		{[]string{"--data-dir", "/data"}, false},
		{nil, false},
	} {
		if got := wantsVersion(tt.args); got != tt.want {
			t.Errorf("wantsVersion(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

// TestVersionFlag builds vaultd with a version set by -ldflags and runs
// --version: it prints that version and exits 0 without starting anything
// (the data dir it would use is not created).
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "vaultd")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/tenantvault/tenantvault/internal/buildinfo.Version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "--data-dir", dir, "--version")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vaultd --version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "vaultd v9.8.7-test (") {
		t.Errorf("vaultd --version printed %q, want vaultd v9.8.7-test (...)", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("vaultd --version touched the data dir %s: %v", dir, err)
	}
}
