//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes an exclusive advisory lock on <dir>/LOCK and returns
// its release. It fails with ErrDataDirLocked when another vaultd (or
// another Server of this process) holds it.
func lockDataDir(dir string) (func() error, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another vaultd: %w", dir, ErrDataDirLocked)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", dir, err)
	}
	return f.Close, nil // closing the descriptor releases the lock
}
