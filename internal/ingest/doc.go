// Package ingest runs the vault's consumption of tenant topics: it finds
// tenant.<id>.events topics, subscribes to each, groups the messages that are
// already in flight into batches, hands each batch to the vault, and acks
// the batch only after the vault has committed it (so offsets are committed
// after the store and audit log are durable).
//
// Once a batch is acked, its records are sealed in the vault and their
// plaintext on the broker is no longer needed: unless Config.KeepIngress,
// the runner deletes each partition's records up to the last acked one
// (Kafka DeleteRecords), every RetentionInterval and when Run returns.
// Records of a batch the vault has not committed are never deleted. A
// log-end marker the Deleter appended (kafka.WithLogEndMarkers) is never
// handed to the vault; its offset is committed like a record's. Remove
// stops consuming a topic (a tenant being shredded) before it is deleted.
//
// On a node of a cluster (RoundsConfig.Txn) each round is one Kafka
// transaction, in Kafka Streams' order: each tenant's batch is prepared in
// its store (vault.PrepareIngest: applied in a Badger transaction left
// open), its store writes produced to its changelog topic, and End commits
// them with the round's ingress offsets; the stores then commit with
// their changelog position (Finish), or discard (Abandon) if End did not
// commit: a node whose partitions moved meanwhile is fenced (KIP-447) and
// its records come again on the new owner.
//
// RoundRunner.Health (vaultd's /readyz) fails while a partition keeps
// failing, or lags behind its end with its committed offset unmoved, for
// StuckAfter; the lag (RoundsConfig.Lag, measured every LagInterval) is
// read back with RoundRunner.Lag. Both name topics and partitions only.
//
// It never decodes, decrypts or stores anything itself, and never logs a
// message's payload or key. Of ours it imports only events, vault and
// internal/kafka, and of third parties only watermill (message types, an
// exception to "watermill only in the Kafka adapter") and errgroup: no
// Kafka client, HTTP, Tink or Badger. internal/archtest enforces these
// imports.
package ingest
