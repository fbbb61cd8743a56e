// Package projections owns the per-tenant Badger stores of tenantvault: one
// Badger DB per tenant under <data-dir>/tenants/<id>/, holding the sealed
// event log, the stream state and history projections, the per-partition
// Kafka offsets and the quarantine of rejected input. Stores are opened
// lazily and bounded by an LRU of idle handles (Stores).
//
// It decides, once, what becomes of each consumed record — applied, a
// duplicate, skipped as a redelivery (at or below the stored offset), or
// quarantined, whether the caller rejected it or the store refuses it —
// and says so per record (Store.ApplyVerdicts): callers audit from those
// verdicts instead of reading offsets or validating again to guess them.
//
// Badger is imported directly here and nowhere else, except by cmd/*
// (which may import anything). Of ours, projections imports only events,
// and of third parties only Badger. internal/archtest enforces these
// imports.
//
// What it must never do:
//   - see key bytes: every value holding tenant data is sealed and opened
//     through a Cipher the caller passes in (satisfied by keys.TenantCipher);
//   - store plaintext: event payloads, stream state and quarantined input are
//     sealed with associated data tenant|keyspace|key, so a value copied to
//     another key, stream, version or tenant store fails to open;
//   - store identifiers that may be personal data in clear: stream ids and
//     event ids appear in keys only as keyed hashes (Cipher.Hash), and in
//     clear only inside sealed values;
//   - close a Badger DB that a caller still holds (Badger panics on reads
//     racing Close): handles are reference counted.
//
// # Key layout
//
// All keys start with a one-letter keyspace and a slash. Values in clear are
// non-secret bookkeeping only.
//
//	o/<topic> 0x00 <BE32 partition>  → BE64 last applied offset (clear)
//	s/<h(stream)>                    → sealed state (stream id, version, JSON document, deleted flag)
//	l/<h(stream)><BE64 version>      → sealed StoredEvent (the event log; versions start at 1)
//	i/<h(event id)>                  → <h(stream)><BE64 version> (clear; the idempotency index)
//	q/<BE64 seq>                     → sealed Quarantined entry (seq starts at 1)
//	m/rewrap                         → cursor of an unfinished Rewrap (clear: key id, counts, last key done)
//	d/dim                            → sealed dimension of the tenant's document embeddings
//	v/<h(stream)>                    → sealed document of the vector index (id, text, attributes, embedding)
//	m/vindex                         → the vector index was built from the log (clear: format version)
//
// h is Cipher.Hash (keyed, 32 bytes) with kind "stream" or "event". The
// associated data of a sealed value is "tenantvault/v1" 0x00 tenant 0x00
// keyspace 0x00 key, and the key of a log entry holds its version.
//
// # Vector index
//
// Events whose type ends in ".document" (events.IsDocumentType) are
// documents: their data's text, embedding and attributes are indexed in
// the v/ keyspace, sealed like every value, in the transaction that
// appends them to the log; the dimension of a tenant's embeddings is
// fixed by its first document, and documents of another dimension (or
// without an embedding, or malformed) are quarantined with their reason
// code. A delete of the stream removes its document. Each open Store
// loads its index into memory on first search and drops it when it is
// closed (LRU, idle close, Remove); Search is an exact scan (cosine
// similarity) of that tenant's vectors only, and opens the k answers
// from the store again. The index is rebuilt from the sealed log when it
// is missing (RebuildIndex). See vectors.go.
//
// # Key rotation
//
// Every sealed value carries the id of the key that sealed it in its
// 5-byte Tink prefix. After the tenant's keys rotate, Apply seals with the
// new primary at once, and values under older keys keep opening as long as
// the keyset holds those keys. Store.Rewrap re-seals the older values under
// the primary in small transactions while Apply and reads go on, resumably
// (the m/rewrap cursor); Store.KeyUsage counts values per key id, to show
// that none is left under a key before it is destroyed.
//
// # Projections
//
// The state of a stream is the RFC 7386 JSON merge patch of the data of its
// events, in version order. An event with IsDelete clears the state but keeps
// the row as a tombstone (Deleted, Version), so the version and history of a
// stream continue across a delete; a later JSON event starts again from an
// empty document. Events without JSON data (data_base64, or no data) are
// appended to the history and bump the version only. The merge works on the
// raw JSON (events.AppendMergePatch); a document of largeState (16 KiB) or
// more is decoded once per transaction instead and the transaction's
// patches merged into it (events.Document). The state is sealed in a
// compact binary record (logcodec.go), as the log entries are.
//
// Each open Store keeps the states it last applied in memory (statecache.go,
// at most 1 MiB a store), so that consecutive batches on a stream neither
// read, open nor hash its state again. The cache is filled after commit,
// only by Apply, the only writer of states; it holds in memory what Apply
// holds while it works, and goes with the Store when the store is closed or
// removed (a shred).
package projections
