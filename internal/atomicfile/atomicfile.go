package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Options tune WriteFile.
type Options struct {
	// TmpPrefix starts the temporary file's name (callers clean up such
	// leftovers of a crash at start-up); default ".tmp-".
	TmpPrefix string
	// NoClobber fails with fs.ErrExist when path exists, instead of
	// replacing it.
	NoClobber bool
}

// WriteFile writes data to path with mode 0600, atomically and durably.
func WriteFile(path string, data []byte, opts Options) (err error) {
	if opts.TmpPrefix == "" {
		opts.TmpPrefix = ".tmp-"
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, opts.TmpPrefix+filepath.Base(path)+"-*") // mode 0600
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
	if opts.NoClobber {
		err := os.Link(tmp, path)
		switch {
		case err == nil:
			os.Remove(tmp)
			return SyncDir(dir)
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
	return SyncDir(dir)
}

// SyncDir fsyncs directory dir, so that a rename or removal in it is durable.
func SyncDir(dir string) error {
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
