// Package kafka is tenantvault's Kafka adapter: the embedded Kafka-protocol
// broker (franz-go's kfake) behind a thin wire layer, topic and principal
// administration (kadm), the Consumer of every tenant topic (kgo), and a
// watermill Publisher and Subscriber built on segmentio/kafka-go.
//
// It owns the Kafka wire: no other package imports kafka-go or franz-go
// directly, except cmd/*, which may import anything. Watermill belongs here
// too, with two exceptions that use its message types: internal/ingest (its
// Subscriber hands out message.Message) and internal/server (it wires the
// Publisher and Subscriber); cmd/* may import it as well. Of ours it
// imports only events and internal/atomicfile. internal/archtest enforces
// these imports.
//
// It moves opaque records and never looks inside them (beyond telling a
// log-end marker by its header): it does not decode events, never sees key
// material, and writes one file itself: before the embedded broker loads
// its DataDir, the vault principal's current SCRAM credential into kfake's
// persisted sasl.json (through internal/atomicfile), because kfake offers
// no public way to change a persisted superuser password. Everything else
// on disk is the embedded broker's, and only when it is given a DataDir.
//
// LastRecord reads the newest record of a topic (the vault's start-up
// check of the audit checkpoints it published, vaultctl audit verify
// --checkpoint-topic).
//
// # Delivery semantics
//
// The Consumer (kgo) reads every topic of a pattern as one group member and
// hands out what one poll fetched as per-partition batches; it commits only
// what its caller commits, and holds rebalances until the caller allows
// them (after committing), so a commit never covers a partition it lost.
//
// The TxnConsumer (issue 13: several vaultd nodes on one cluster) is the
// Consumer's exactly-once twin: a round's records produced to the tenants'
// changelog topics and the group offsets of what it polled are committed
// in one Kafka transaction (KIP-447): a node thrown out of the group, or
// replaced by one with its transactional id, commits neither. It reads
// read_committed, with stable offsets, and may be a static member
// (InstanceID). ReadToEnd restores a store from its changelog topic
// (EnsureChangelogTopic: compacted, one partition).
//
// The Subscriber is at-least-once. Messages are handed out without waiting
// for the previous acknowledgement (up to MaxInFlight per subscription), in
// partition order. An offset is committed only once that message and every
// earlier message of its partition were acked, asynchronously every
// CommitInterval, at the end of a consumer-group generation and on Close. A
// Nack rewinds the partition to its first un-acked offset, so messages after
// it that were already acked are delivered again: consumers must be
// idempotent on (topic, partition, offset).
//
// Because several messages are outstanding at once, a consumer that
// processes them concurrently (watermill's Router runs each message in its
// own goroutine) does not process them in order; a consumer that needs
// per-stream order must process each partition's messages sequentially, or
// set MaxInFlight to 1.
//
// A partition whose position is out of range (its records were deleted
// below it, as the vault does once it has sealed them, or its topic was
// deleted and created again with fewer records) does not stall: it resumes
// at the partition's earliest offset, logged at Info, and that position is
// committed (Kafka's auto.offset.reset=earliest).
//
// # Authentication and authorization
//
// Every client of this package names the principal it connects as (Auth:
// SASL/SCRAM, optionally over TLS). The embedded broker, given an
// EmbeddedAuth, authenticates every client and authorizes every request by
// Kafka ACLs: the vault's own principal is its superuser, and Admin
// manages the other principals and their ACLs through the Kafka protocol
// (SetSCRAM, AllowProduce, RevokeAll, DeleteSCRAM), the same calls a real
// cluster takes. Topics are then never created automatically. A thin wire
// layer in front of kfake (wire.go) serves TLS, bounds the size of a
// request before it is read, and advertises SaslHandshake v0 so that
// librdkafka clients do SCRAM.
//
// # Deleting records
//
// Admin.DeleteRecords deletes a partition's records below an offset and
// Admin.DeleteTopic a whole topic. On the embedded broker their bytes leave
// the DataDir when the call returns: every produced batch is a segment file
// of its own (EmbeddedConfig.SegmentBytes), removed as soon as all of its
// records are deleted.
//
// kfake forgets the offsets of a partition left without records when it
// restarts (it starts again at 0), so on the embedded broker the vault's
// Admin is made WithLogEndMarkers: it never deletes a partition's last
// record, appending a log-end marker first (MarkerHeader, no key, no
// value). The Consumer flags markers and the Subscriber skips them; their
// offsets are committed like any other. The offsets of the embedded broker
// are kept through kfake's and Kafka's public API only; the one file of its
// DataDir this package writes is kfake's persisted SASL state, to set the
// superuser's credentials before kfake loads it (embedded_auth.go).
package kafka
