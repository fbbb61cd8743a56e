package keys

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
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

// replaceFile replaces path with data atomically (see writeFileAtomic), then
// overwrites the previous content, which a rename alone would leave in
// freed blocks: a hard link to the old file is taken before the rename and
// shredded after it. A crash between the two leaves the link as a tmpPrefix
// file, which the keystore shreds when it opens. Without hard links the old
// content is only unlinked.
func replaceFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	old := filepath.Join(dir, fmt.Sprintf("%s%s-old-%d", tmpPrefix, filepath.Base(path), rand.Uint64()))
	linked := os.Link(path, old) == nil
	if err := writeFileAtomic(path, data, false); err != nil {
		if linked {
			os.Remove(old)
		}
		return err
	}
	if linked {
		return shredFile(old)
	}
	return nil
}

// shredFile overwrites the file at path with random bytes, fsyncs it, removes
// it and fsyncs its directory. A missing file is not an error. On SSDs and
// copy-on-write or journaling file systems the overwrite may not reach the
// blocks that held the old content; removing what the keystore wrote is
// what it can do, the master key (a per-tenant KMS key) does the rest.
func shredFile(path string) error {
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
	return syncDir(filepath.Dir(path))
}
