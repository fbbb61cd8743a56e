// Package cluster is what the vaultd nodes of one cluster share, over
// Kafka, beside the tenant topics they consume in one consumer group: a
// directory of the nodes (where each answers) and of the tenants (which
// exist, their wrapped keysets, their tombstones), kept in one compacted
// topic, [Topic], that every node reads from its start and follows, like
// Kafka Streams' global tables; and who owns a tenant — the node the
// group's assignment gave its topic to.
//
// The directory holds no secret in clear: a tenant's keyset travels as
// its keyset file, wrapped by the tenant's own master key (a KMS key per
// tenant), and its API token only as a hash. Records are validated when
// read: one that does not parse is logged by key and offset, never by
// value, and skipped.
package cluster
