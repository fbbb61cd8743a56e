package vault

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// Message is one Kafka record as the vault receives it.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []events.Header
	// TopicID is the broker's id of the topic the record was read from,
	// looked up after it was fetched; "" when unknown.
	TopicID string
}

// Ingest applies one batch of records of one topic, in partition order, in
// one transaction of the tenant's store. Bad records (malformed, too large,
// wrong tenant) are quarantined and audited, never dropped; records on the
// topic of an unknown or invalid tenant are audited and skipped. Ingest
// returns an error only when the batch must be redelivered (the store or
// the audit log failed); redelivery is idempotent.
func (v *Vault) Ingest(ctx context.Context, topic string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	t, err := events.TenantFromTopic(topic)
	details := offsetDetails(msgs)
	var e registryEntry
	if err == nil {
		var ok bool
		e, ok = v.reg.get(t)
		switch {
		case !ok:
			err = events.Errorf(events.ENOTFOUND, "unknown tenant %s", t)
		case !e.active():
			// Published to a shredded tenant's topic: refused, flagged;
			// acked, so ingress retention deletes the records.
			err = events.Errorf(events.EGONE, "tenant %s was shredded", t)
			details[audit.DetailTenantState] = StateShredded
		}
	}
	if err != nil {
		v.stats.UnknownTenantMsgs.Add(int64(len(msgs)))
		return v.record(ctx, audit.Record{
			Principal: audit.PrincipalIngest, Tenant: topicTenant(topic), Action: audit.ActionIngestSkip, Resource: "topics/" + topic,
			Outcome: audit.OutcomeRejected, Reason: events.ErrorMessage(err), Count: len(msgs), Details: details,
		})
	}
	c, err := v.cfg.Keys.Ciphers.Cipher(t)
	if err != nil {
		return fmt.Errorf("ingest %s: keys: %w", t, err)
	}
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return fmt.Errorf("ingest %s: %w", t, err)
	}
	defer release()

	if e.TopicID != "" && msgs[0].TopicID != "" && msgs[0].TopicID != e.TopicID {
		return v.ingestForeignTopic(ctx, t, topic, e.TopicID, msgs, st, c)
	}
	recs := make([]projections.Record, len(msgs))
	var named map[int]string // index → the tenant a rejected event names
	for i := range msgs {
		m := &msgs[i]
		recs[i] = projections.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		e, rej := v.decode(t, m)
		if rej == nil {
			recs[i].Event = &e
			continue
		}
		recs[i].Reject = rej
		if e.Tenant != "" {
			if named == nil {
				named = make(map[int]string)
			}
			named[i] = e.Tenant
		}
	}
	// The store decides each record once, under its lock, against its
	// offsets: the audit records follow its verdicts. A record it skipped
	// was applied, and its rejection audited, before.
	verdicts, err := v.apply(t, st, c, recs)
	if len(verdicts) == 0 {
		return err
	}
	// On error, the verdicts are those of the parts that committed: they
	// are skipped when the batch comes again, so they are audited now.
	if aerr := v.appendAll(ctx, v.ingestAudit(t, topic, c, msgs, recs, named, verdicts)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// ingestAudit returns the audit records of a batch from the verdicts of
// its first len(verdicts) records: an ingest.reject per quarantined
// record, whoever decided it (the vault's decode or the store), and an
// ingest.batch; nothing for a pure redelivery (all skipped), which was
// audited the first time.
func (v *Vault) ingestAudit(t events.TenantID, topic string, c Cipher, msgs []Message, recs []projections.Record, named map[int]string, verdicts []projections.Verdict) []audit.Record {
	var rejects []audit.Record
	var applied, duplicates, quarantined, skipped int
	for i, vd := range verdicts {
		switch vd.Kind {
		case projections.VerdictApplied:
			applied++
			continue
		case projections.VerdictDuplicate:
			duplicates++
			continue
		case projections.VerdictSkipped:
			skipped++
			continue
		}
		quarantined++
		m := &msgs[i]
		details := map[string]string{"code": vd.Code, "partition": strconv.Itoa(m.Partition), "offset": strconv.FormatInt(m.Offset, 10),
			"quarantine_seq": strconv.FormatUint(vd.Seq, 10)} // the entry in GET /v1/tenants/{t}/quarantine
		tenant := named[i]
		if ev := recs[i].Event; ev != nil {
			tenant = ev.Tenant // refused by the store
		}
		if tenant != "" {
			details[audit.DetailEventTenant] = tenant
		}
		rejects = append(rejects, audit.Record{
			Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionIngestReject, Resource: "topics/" + topic,
			Outcome: audit.OutcomeRejected, Reason: vd.Reason, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
		})
	}
	if skipped == len(verdicts) {
		return nil
	}
	batch := audit.Record{
		Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionIngestBatch, Resource: "topics/" + topic,
		Outcome: audit.OutcomeOK, Count: applied, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: offsetDetails(msgs[:len(verdicts)]),
	}
	batch.Details["applied"] = strconv.Itoa(applied)
	batch.Details["duplicates"] = strconv.Itoa(duplicates)
	batch.Details["quarantined"] = strconv.Itoa(quarantined)
	batch.Details["skipped"] = strconv.Itoa(skipped)
	return append(rejects, batch)
}

// ingestForeignTopic quarantines a batch read from a topic that bears the
// tenant's topic name but not the id of the topic the vault created: it was
// deleted and created again past the vault, and what was published to it is
// not the tenant's. Every record is kept sealed in the quarantine, none is
// applied, and one flagged audit record says so (with both ids) for the
// records quarantined this time: the store skips those it quarantined
// before.
//
// Its offsets are kept apart, under the topic's name and id
// ("tenant.acme.events@<id>"): they count in that topic, not in the
// vault's, so its records are quarantined once each and the vault's own
// topic's position does not move.
func (v *Vault) ingestForeignTopic(ctx context.Context, t events.TenantID, topic, want string, msgs []Message, st *projections.Store, c Cipher) error {
	const reason = "topic not created by the vault"
	recs := make([]projections.Record, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		recs[i] = projections.Record{Topic: m.Topic + "@" + m.TopicID, Partition: m.Partition, Offset: m.Offset,
			Reject: &projections.Rejection{Code: events.EFORBIDDEN, Reason: reason, Raw: v.evidence(m.Value)}}
	}
	verdicts, err := v.apply(t, st, c, recs)
	fresh := 0
	for _, vd := range verdicts {
		if vd.Kind == projections.VerdictQuarantined {
			fresh++
		}
	}
	if fresh == 0 {
		return err // nothing committed, or a redelivery: audited before
	}
	details := offsetDetails(msgs[:len(verdicts)])
	details["code"] = events.EFORBIDDEN
	details[audit.DetailTopicID] = msgs[0].TopicID
	details[audit.DetailTenantTopicID] = want
	if aerr := v.record(ctx, audit.Record{
		Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionIngestReject, Resource: "topics/" + topic,
		Outcome: audit.OutcomeRejected, Reason: reason, Count: fresh, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
	}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// decode turns m into an event of tenant t, or a rejection. A rejected
// event that names another tenant comes back with its Tenant set: the audit
// record carries that fact, from which the flag is derived.
func (v *Vault) decode(t events.TenantID, m *Message) (e events.Event, rej *projections.Rejection) {
	e, err := events.Decode(m.Value, m.Headers, v.cfg.MaxEventBytes)
	switch {
	case err != nil:
		// A malformed record that names another tenant is first of all a
		// crossing: refused as one (and so flagged), its other defect in
		// the reason.
		if claimed := events.ClaimedTenant(m.Value, m.Headers); claimed != "" && claimed != string(t) {
			rej = &projections.Rejection{Code: events.EFORBIDDEN, Reason: "event tenant differs from topic tenant; also: " + events.ErrorMessage(err)}
			e = events.Event{Tenant: claimed}
			break
		}
		rej = &projections.Rejection{Code: events.ErrorCode(err), Reason: events.ErrorMessage(err)}
	case e.Tenant != "" && e.Tenant != string(t):
		rej = &projections.Rejection{Code: events.EFORBIDDEN, Reason: "event tenant differs from topic tenant"}
		e = events.Event{Tenant: e.Tenant}
	case len(m.Key) > 0 && string(m.Key) != e.Subject:
		rej = &projections.Rejection{Code: events.EINVALID, Reason: "kafka key differs from subject (the stream id)"}
	default:
		return e, nil
	}
	rej.Raw = v.evidence(m.Value)
	return events.Event{Tenant: e.Tenant}, rej
}

// evidence is what the quarantine keeps of a rejected record's value:
// bounded, the head of an oversized one.
func (v *Vault) evidence(raw []byte) []byte {
	if v.cfg.MaxEventBytes > 0 && len(raw) > v.cfg.MaxEventBytes {
		return raw[:v.cfg.MaxEventBytes]
	}
	return raw
}

// apply applies recs to t's store, counts what happened and returns the
// verdicts: one per record, or on error one per record of the parts that
// committed (a prefix of recs, possibly empty).
func (v *Vault) apply(t events.TenantID, st *projections.Store, c Cipher, recs []projections.Record) ([]projections.Verdict, error) {
	res, verdicts, err := st.ApplyVerdicts(c, recs)
	v.stats.EventsApplied.Add(int64(res.Applied))
	v.stats.EventsDuplicate.Add(int64(res.Duplicates))
	v.stats.EventsQuarantined.Add(int64(res.Quarantined))
	v.stats.EventsSkipped.Add(int64(res.Skipped))
	if err != nil {
		return verdicts, fmt.Errorf("ingest %s: %w", t, err)
	}
	v.stats.Batches.Add(1)
	return verdicts, nil
}

// appendAll appends recs concurrently, so that group commit makes them
// durable together, and returns when all are durable.
func (v *Vault) appendAll(ctx context.Context, recs []audit.Record) error {
	if len(recs) == 1 {
		return v.record(ctx, recs[0])
	}
	errs := make(chan error, len(recs))
	for _, r := range recs {
		go func() { errs <- v.record(ctx, r) }()
	}
	var all []error
	for range recs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

func offsetDetails(msgs []Message) map[string]string {
	return map[string]string{
		"partition":    strconv.Itoa(msgs[0].Partition),
		"first_offset": strconv.FormatInt(msgs[0].Offset, 10),
		"last_offset":  strconv.FormatInt(msgs[len(msgs)-1].Offset, 10),
		"records":      strconv.Itoa(len(msgs)),
	}
}

// topicTenant extracts the tenant part of a tenant-shaped topic for the
// audit record, bounded; it may be an invalid id (the record says so).
func topicTenant(topic string) string {
	if !events.IsTenantTopic(topic) {
		return ""
	}
	s := topic[len("tenant.") : len(topic)-len(".events")]
	if len(s) > 80 {
		s = s[:80]
	}
	return strconv.QuoteToASCII(s)[1 : len(strconv.QuoteToASCII(s))-1]
}
