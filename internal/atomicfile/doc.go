// Package atomicfile writes small files so that a crash leaves either the
// old or the new content, never a torn mix: a temporary file in the same
// directory, fsync, rename (or hard link), fsync of the directory. The
// registry, the keystore and the audit checkpoints all write through it.
//
// It holds no secrets and logs nothing; callers choose what they write. It
// imports only the standard library, so any package may use it without
// pulling anything in; internal/archtest enforces this.
package atomicfile
