// Package ingest runs the vault's consumption of tenant topics: it finds
// tenant.<id>.events topics, subscribes to each, groups the messages that are
// already in flight into batches, hands each batch to the vault, and acks
// the batch only after the vault has committed it (so offsets are committed
// after the store and audit log are durable).
//
// It never decodes, decrypts or stores anything itself, and never logs a
// message's payload or key.
package ingest
