//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

// lockDir is a no-op where flock is not available: run one Log per directory.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
