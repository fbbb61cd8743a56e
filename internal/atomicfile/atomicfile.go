package atomicfile

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// TmpPrefix starts the names of the files WriteFile creates next to path
// (unless Options.TmpPrefix says otherwise): its temporary file and, with
// Options.ShredReplaced, its link to the replaced content. Such files are
// only ever left by a crash; callers remove them at start-up (with Shred
// when they may hold secrets).
const TmpPrefix = ".tmp-"

// Options tune WriteFile.
type Options struct {
	// TmpPrefix starts the temporary files' names; default TmpPrefix.
	TmpPrefix string
	// NoClobber fails with fs.ErrExist when path exists, instead of
	// replacing it.
	NoClobber bool
	// ShredReplaced overwrites the content path held before (Shred), which
	// a rename alone would leave in freed blocks: a hard link to the old
	// file is taken before the rename and shredded after it. A crash
	// between the two leaves the link, named TmpPrefix+base+"-old-...",
	// for the caller to shred when it finds it. Without hard links the old
	// content is only unlinked.
	ShredReplaced bool
}

// WriteFile writes data to path with mode 0600, atomically and durably: a
// temporary file in the same directory, fsync, rename (or hard link, with
// NoClobber), fsync of the directory.
func WriteFile(path string, data []byte, opts Options) (err error) {
	if opts.TmpPrefix == "" {
		opts.TmpPrefix = TmpPrefix
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, opts.TmpPrefix+filepath.Base(path)+"-*", data)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if opts.NoClobber {
		return linkNew(tmp, path)
	}
	old := ""
	if opts.ShredReplaced {
		old = filepath.Join(dir, fmt.Sprintf("%s%s-old-%d", opts.TmpPrefix, filepath.Base(path), rand.Uint64()))
		if os.Link(path, old) != nil {
			old = "" // nothing to replace, or no hard links here
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		if old != "" {
			os.Remove(old)
		}
		return err
	}
	err = SyncDir(dir)
	if old != "" {
		err = errors.Join(err, Shred(old))
	}
	return err
}

// writeTemp writes data to a new file (mode 0600) in dir named after
// pattern (os.CreateTemp), fsynced, and returns its path.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern) // mode 0600
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// linkNew puts the written file tmp at path, failing with fs.ErrExist when
// path exists.
func linkNew(tmp, path string) error {
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		os.Remove(tmp)
		return SyncDir(filepath.Dir(path))
	case errors.Is(err, fs.ErrExist):
		return err
	}
	// No hard links on this file system: check, then rename. Callers
	// serialise writers, so the window only matters across processes.
	if _, err := os.Lstat(path); err == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
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

// Shred overwrites the file at path with random bytes, fsyncs it, removes
// it and fsyncs its directory. A missing file is not an error. On SSDs and
// copy-on-write or journaling file systems the overwrite may not reach the
// blocks that held the old content; removing what was written is what a
// file can do, the caller's key management (a KMS key) does the rest.
func Shred(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() {
		buf := make([]byte, min(fi.Size(), 32<<10))
		for left := fi.Size(); left > 0 && err == nil; {
			n := min(left, int64(len(buf)))
			crand.Read(buf[:n])
			_, err = f.Write(buf[:n])
			left -= n
		}
		if err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shred %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return SyncDir(filepath.Dir(path))
}
