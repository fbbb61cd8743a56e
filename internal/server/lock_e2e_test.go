package server_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/internal/server"
)

// TestDataDirLock: a second vaultd on the same data dir fails on the
// data-dir lock, naming the dir, before it starts anything: its broker
// and HTTP addresses are held by this test, so reaching either would fail
// with another error. Once the first has closed, the dir opens again.
func TestDataDirLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: the lock is a no-op on windows")
	}
	dir := filepath.Join(t.TempDir(), "data")
	first := mustStart(t, dir, "")

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before := listDir(t, dir)
	second := &server.Server{Config: server.Config{DataDir: dir, HTTPAddr: held.Addr().String(), KafkaAddr: held.Addr().String()}}
	err = second.Open(context.Background())
	if !errors.Is(err, server.ErrDataDirLocked) {
		second.Close()
		t.Fatalf("second Open on %s = %v, want ErrDataDirLocked (before the broker or listener start)", dir, err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("second Open error %q does not name the data dir %s", err, dir)
	}
	if err := second.Close(); err != nil {
		t.Errorf("Close of the failed server: %v", err)
	}
	if after := listDir(t, dir); after != before {
		t.Errorf("the failed Open changed the data dir:\nbefore %s\nafter  %s", before, after)
	}
	// The failed Close released nothing of the first's: still locked.
	if err := (&server.Server{Config: server.Config{DataDir: dir, HTTPAddr: held.Addr().String(), KafkaAddr: held.Addr().String()}}).Open(context.Background()); !errors.Is(err, server.ErrDataDirLocked) {
		t.Errorf("third Open while the first runs = %v, want ErrDataDirLocked", err)
	}

	first.stop()
	again := mustStart(t, dir, "")
	again.stop()
}

// listDir names the entries of dir, for a before/after comparison.
func listDir(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}
