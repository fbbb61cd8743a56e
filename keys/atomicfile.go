package keys

import (
	crand "crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// tmpPrefix starts the names of files being written; they are never read as
// keysets and are removed when the keystore opens.
const tmpPrefix = ".tmp-"

// writeFileAtomic writes data to path with mode 0600, atomically and
// durably (internal/atomicfile); with noClobber it fails with fs.ErrExist
// when path exists.
func writeFileAtomic(path string, data []byte, noClobber bool) error {
	return atomicfile.WriteFile(path, data, atomicfile.Options{TmpPrefix: tmpPrefix, NoClobber: noClobber})
}

// syncDir fsyncs directory dir so a rename in it is durable.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

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
