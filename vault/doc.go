// Package vault owns tenants' lifecycle and the tenant session: the only door
// to a tenant's store and cipher. It ingests decoded Kafka records into the
// tenant's own store, answers reads through sessions, and writes an audit
// record for every tenant create, ingest batch, rejected record and read.
// A tenant create is all or nothing: a step that fails (a topic name that
// collides on the brokers, ErrTopicCollision, is ECONFLICT) undoes the
// steps before it, so no keyset, store, principal, ACL or topic is left.
//
// It never sees key bytes (it holds a Cipher it declares), never opens a store
// from a bare tenant id taken from a request (a Session is made only from a
// validated credential), and never puts payloads, stream ids or tokens in the
// audit log, in logs or in error messages. Of ours it imports only events,
// projections, audit and internal/atomicfile: never keys, which it uses only
// through the small interfaces declared where they are used (Cipher and
// TenantKeys for tenants' ciphers, KeyOwners for sessions, KeyDestroyer for
// shred, KeyAdmin for key rotation, AuditHasher for the audit log's keyed
// hashes). *keys.Keystore and *keys.TenantCipher
// satisfy them as they are; KeysOf gathers them into Config.Keys, and
// internal/server checks them at compile time. It never imports
// internal/kafka. It imports no third-party package, so no Kafka, HTTP,
// Tink or Badger package. internal/archtest enforces these imports.
//
// It gives each tenant's producers a broker principal of their own
// (Producers: write its topic, nothing else), whose secret it hands out once
// and never keeps, and it applies only records read from the tenant topic
// it created (TopicIDs): records from a topic of the same name created
// past it are quarantined and flagged.
//
// What producers write never reaches the audit log: an ingest record holds
// a reason code (events.ErrorReason), never a message quoting the input;
// no event id, source, type or subject; a claimed tenant only when it is a
// tenant of the registry, and otherwise — like the topic of an unknown
// tenant — the vault's keyed hash (KeyedHashPrefix, through the
// AuditHasher it declares). The rejected input itself is kept sealed in
// the tenant's quarantine.
//
// The records anyone can cause without a credential (failed
// authentications through AuthenticateFrom, refusals through RefuseFrom,
// ingest.skip of topics of unknown tenants) are aggregated per source per
// Config.AggregateInterval, with a bounded table of sources (an overflow
// source past it), so that a flood costs a bounded number of records and
// memory; their counts add up (audit.DetailAggregated), flagged records are
// never aggregated, and Close writes the open windows' aggregates.
//
// A session opens and reads only under the actions the audit package counts
// as reading tenant data (audit.Action.IsTenantData, the list its boundary
// check flags an admin's use of), so an admin's read is always flagged.
package vault
