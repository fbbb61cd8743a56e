// Package atomicfile is the one way tenantvault writes small files so that
// a crash leaves either the old or the new content, never a torn mix: a
// temporary file in the same directory, fsync, rename (or hard link, for a
// file that must not exist yet), fsync of the directory. It also shreds:
// Shred overwrites a file before removing it, and WriteFile with
// ShredReplaced does so to the content it replaces. Temporary files start
// with TmpPrefix, so that callers find what a crash left. The vault's
// registry, the keystore (keysets, tombstones, master.check, the local
// master key, the audit signer), the audit checkpoints and the server's
// admin token and broker password, the embedded broker's persisted SCRAM
// credentials and vaultctl's Kafka client config all write through it.
//
// It holds no secrets and logs nothing; callers choose what they write. It
// imports only the standard library, so any package may use it without
// pulling anything in; internal/archtest enforces this.
package atomicfile
