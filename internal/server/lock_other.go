//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package server

// lockDataDir is a no-op where flock is not available: run one vaultd per
// data directory (the audit log's own lock is a no-op there too).
func lockDataDir(string) (func() error, error) { return func() error { return nil }, nil }
