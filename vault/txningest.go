package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// ErrClusterIngest is Ingest's error on a vault with a Changelog (a node
// of a cluster): there a batch is applied in two steps around the Kafka
// transaction of its round, PrepareIngest and PreparedIngest.Finish.
var ErrClusterIngest = events.Errorf(events.EINTERNAL, "vault: a cluster node ingests through PrepareIngest and Finish, in a Kafka transaction")

// PreparedIngest is a batch of one topic decoded and applied in an open
// transaction of its tenant's store (projections.Prepared), not yet
// committed: the first half of ingest in a cluster, as Kafka Streams
// commits a task. The caller writes Changes to the tenant's changelog in
// the Kafka transaction that commits the ingress offsets of the Len
// records it covers, then calls Finish with the changelog position after
// them if that transaction committed, or Abandon if not. One of the two
// must be called: until then the store's writers (another batch of the
// tenant included) wait.
type PreparedIngest struct {
	v       *Vault
	t       events.TenantID
	topic   string
	c       Cipher
	msgs    []Message
	recs    []projections.Record
	claims  map[int]claim
	release func()
	p       *projections.Prepared // nil: nothing to commit
	changes [][2][]byte
	n       int
	res     projections.Result
	verd    []projections.Verdict
	done    bool
}

// PrepareIngest is Ingest's first half on a cluster node: it decodes
// msgs (records of topic, in partition order), catches the tenant's store
// up with its changelog (once per hold of its topic), and applies the
// longest prefix of the batch that fits in one store transaction, left
// open. Records that no live tenant owns are audited and skipped as
// Ingest does, at once: nothing is left to commit for them. On error
// nothing is held and the batch must be redelivered.
func (v *Vault) PrepareIngest(ctx context.Context, topic string, msgs []Message) (*PreparedIngest, error) {
	pi := &PreparedIngest{v: v, topic: topic, msgs: msgs, n: len(msgs)}
	if len(msgs) == 0 {
		pi.done = true
		return pi, nil
	}
	t, e, skip := v.ingestTenant(topic)
	if skip != "" {
		pi.done = true
		return pi, v.ingestSkip(ctx, topic, t, skip, msgs)
	}
	pi.t = t
	c, err := v.cfg.Keys.Ciphers.Cipher(t)
	if err != nil {
		return nil, fmt.Errorf("ingest %s: keys: %w", t, err)
	}
	pi.c = c
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return nil, fmt.Errorf("ingest %s: %w", t, err)
	}
	if e.TopicID != "" && msgs[0].TopicID != "" && msgs[0].TopicID != e.TopicID {
		// Quarantined in the store only: nothing of the topic's is in
		// the changelog (as on one node).
		defer release()
		pi.done = true
		return pi, v.ingestForeignTopic(ctx, t, topic, e.TopicID, msgs, st, c)
	}
	if pi.recs, pi.claims, err = v.ingestRecords(ctx, t, msgs); err != nil {
		release()
		return nil, err
	}
	if err := v.catchUp(ctx, t, st, c); err != nil {
		release()
		return nil, fmt.Errorf("ingest %s: %w", t, err)
	}
	p, err := st.Prepare(ctx, c, pi.recs)
	if err != nil {
		release()
		return nil, fmt.Errorf("ingest %s: %w", t, err)
	}
	pi.n, pi.res, pi.verd = p.Len(), p.Result(), p.Verdicts()
	changes := p.Changes()
	if len(changes) == 0 {
		p.Discard() // all redeliveries: nothing to log or commit
		release()
		return pi, nil
	}
	pi.p, pi.release = p, release
	pi.changes = make([][2][]byte, len(changes))
	for i, ch := range changes {
		pi.changes[i] = [2][]byte{ch.RecordKey(), projections.EncodeChange(ch)}
	}
	return pi, nil
}

// Tenant is the tenant of the batch ("" for a topic of none).
func (pi *PreparedIngest) Tenant() events.TenantID { return pi.t }

// Len is how many messages of the batch, from the first, pi covers; the
// others were not applied, and must be delivered again in a later round.
func (pi *PreparedIngest) Len() int { return pi.n }

// Changes are the records (key, value) to write to the tenant's
// changelog (events.ChangelogTopicFor), in order; none when the batch
// needs none. They must not be modified.
func (pi *PreparedIngest) Changes() [][2][]byte { return pi.changes }

// Finish is Ingest's second half, once the Kafka transaction that wrote
// Changes and committed the ingress offsets committed: it commits the
// store transaction with changelogNext (the changelog offset after the
// last of Changes; ignored when there were none), counts the batch, and
// writes its audit records as Ingest does. If the store fails to commit,
// the changelog has the batch: the store catches up with it at its next
// use, and the audit records are written all the same.
func (pi *PreparedIngest) Finish(ctx context.Context, changelogNext int64) error {
	if pi.done {
		return nil
	}
	pi.done = true
	v, t := pi.v, pi.t
	var err error
	if pi.p != nil {
		if err = pi.p.Commit(changelogNext); err != nil {
			v.restored.set(t, false)
			err = fmt.Errorf("ingest %s: %w", t, err)
		}
		pi.release()
	}
	v.stats.EventsApplied.Add(int64(pi.res.Applied))
	v.stats.EventsDuplicate.Add(int64(pi.res.Duplicates))
	v.stats.EventsQuarantined.Add(int64(pi.res.Quarantined))
	v.stats.EventsSkipped.Add(int64(pi.res.Skipped))
	if v.cfg.OnIngested != nil && (pi.res.Applied > 0 || pi.res.Quarantined > 0) {
		v.cfg.OnIngested(t, pi.res.Applied, pi.res.Quarantined)
	}
	v.stats.Batches.Add(1)
	if len(pi.verd) == 0 {
		return err
	}
	if aerr := v.appendAll(ctx, v.ingestAudit(t, pi.topic, pi.c, pi.msgs, pi.recs, pi.claims, pi.verd)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// Abandon forgets the store transaction: the Kafka transaction did not
// commit, and the batch comes again. It does nothing after Finish.
func (pi *PreparedIngest) Abandon() {
	if pi.done {
		return
	}
	pi.done = true
	if pi.p != nil {
		pi.p.Discard()
		pi.release()
	}
}
