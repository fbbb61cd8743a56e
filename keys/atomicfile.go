package keys

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tmpPrefix starts the names of files being written; they are never read as
// keysets and are removed when the keystore opens.
const tmpPrefix = ".tmp-"

// writeFileAtomic writes data to path with mode 0600: a temporary file in the
// same directory, fsync, rename (or, with noClobber, a hard link that fails
// with fs.ErrExist when path exists), then fsync of the directory.
func writeFileAtomic(path string, data []byte, noClobber bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(path)+"-*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	if noClobber {
		err := os.Link(tmp, path)
		switch {
		case err == nil:
			os.Remove(tmp)
			return syncDir(dir)
		case errors.Is(err, fs.ErrExist):
			return err
		}
		// No hard links on this file system: check, then rename. Callers
		// serialise writers, so the window only matters across processes.
		if _, err := os.Lstat(path); err == nil {
			return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir fsyncs directory dir so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}
