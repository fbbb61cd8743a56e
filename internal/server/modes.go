package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// privateModes makes the data dir private to the process's user: from now
// on through the umask (restrictUmask: the embedded broker, kfake, creates
// its files 0644 and directories 0755, and Badger its tables and value
// logs 0666, with no option to ask for less), and for what an earlier
// vaultd left readable by its group or others, by taking those bits off
// (files 0600 at most, directories 0700). It returns how many it changed.
func privateModes(dataDir string) (int, error) {
	restrictUmask()
	changed := 0
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if m := info.Mode().Perm(); m&0o077 != 0 {
			if err := os.Chmod(path, m&^0o077); err != nil {
				return err
			}
			changed++
		}
		return nil
	})
	if err != nil {
		return changed, fmt.Errorf("data dir modes: %w", err)
	}
	return changed, nil
}
