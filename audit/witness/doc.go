// Package witness makes the audit log's checkpoints leave the vault as they
// are signed, and refuses a log that does not extend what left.
//
// A Publisher sends every new signed checkpoint (audit.Options.OnCheckpoint
// calls Notify) to any number of C2SP tlog-witnesses
// (https://c2sp.org/tlog-witness: POST /add-checkpoint with the size the
// witness last cosigned, a consistency proof from it and the checkpoint;
// the witness answers with its cosignature, https://c2sp.org/tlog-cosignature,
// or 409 with the size it holds, after which the Publisher retries with a
// proof from that size), then publishes the checkpoint with the
// cosignatures it got to a Topic (the Kafka topic vault.checkpoints). It
// talks to witnesses through transparency-dev/witness's HTTP client, not a
// protocol of its own. Failures are logged and retried with backoff; they
// never block the log or ingest.
//
// Check, at start, reads the newest checkpoint that left the vault (the
// topic's last record, the size each witness holds) and returns a
// *RollbackError when the local log is not a consistent extension of it:
// smaller, or another tree at that size. vaultd then refuses to start, so
// rolling the data dir back to an archived checkpoint and rewriting the
// records after it (or running a copy of the data dir that forked) is
// caught by what others already hold.
//
// VerifyCosigned checks a checkpoint's cosignatures for verifiers
// (vaultctl audit verify --witness-key, --min-cosignatures).
//
// # What it must never do
//
//   - hold key material: it forwards notes the log signed and verifies with
//     public keys only;
//   - log or return note signatures, credentials or witness URLs with their
//     user info (URLs are logged redacted);
//   - block the audit log: Notify never waits, and a slow or dead witness
//     delays only the next publication;
//   - import Kafka, Tink or Badger: the Topic is an interface the wiring
//     (internal/server) fills with internal/kafka. It imports audit,
//     events, transparency-dev/witness's client, transparency-dev/formats'
//     note verifiers, golang.org/x/mod/sumdb/note and net/http (for the
//     client only); internal/archtest enforces these imports.
package witness
