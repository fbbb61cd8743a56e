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
	if v.cfg.Changelog != nil {
		return ErrClusterIngest
	}
	t, e, skip := v.ingestTenant(topic)
	if skip != "" {
		return v.ingestSkip(ctx, topic, t, skip, msgs)
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
	recs, claims, err := v.ingestRecords(ctx, t, msgs)
	if err != nil {
		return err
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
	if aerr := v.appendAll(ctx, v.ingestAudit(t, topic, c, msgs, recs, claims, verdicts)); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// ingestRecords decodes msgs into the store's records of tenant t, with
// what the audit record of each rejected one says of its claim.
func (v *Vault) ingestRecords(ctx context.Context, t events.TenantID, msgs []Message) ([]projections.Record, map[int]claim, error) {
	recs := make([]projections.Record, len(msgs))
	var claims map[int]claim // index → what a rejected event claims
	for i := range msgs {
		m := &msgs[i]
		recs[i] = projections.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		e, rej, also := v.decode(t, m)
		if rej == nil {
			recs[i].Event = &e
			continue
		}
		recs[i].Reject = rej
		if e.Tenant != "" || also != "" {
			// What the audit record will say of the claim is decided
			// now, before anything commits: it cannot fail after.
			c := claim{also: also}
			if e.Tenant != "" {
				var err error
				if c.tenant, err = v.claimedTenant(e.Tenant); err != nil {
					return nil, nil, fmt.Errorf("ingest %s: %w", t, err)
				}
			}
			if claims == nil {
				claims = make(map[int]claim)
			}
			claims[i] = c
		}
	}
	if v.cfg.Embedder != nil {
		v.embedDocuments(ctx, msgs, recs)
	}
	return recs, claims, nil
}

// claim is what the audit record of a rejected event says of what it
// claims: the tenant it names (as claimedTenant has it), and the code of
// the defect found besides the crossing.
type claim struct {
	tenant string
	also   string
}

// ingestAudit returns the audit records of a batch from the verdicts of
// its first len(verdicts) records: an ingest.reject per quarantined
// record, whoever decided it (the vault's decode or the store), and an
// ingest.batch; nothing for a pure redelivery (all skipped), which was
// audited the first time.
//
// A record holds no producer text: the reason is a stable reason code
// (events.ReasonX; its message, which may quote the input, is sealed in
// the quarantine entry the record names), a claimed tenant is a tenant of
// the registry or a keyed hash (claimedTenant), and no event id, source,
// type or subject is recorded — records name events by partition and
// offset.
func (v *Vault) ingestAudit(t events.TenantID, topic string, c Cipher, msgs []Message, recs []projections.Record, claims map[int]claim, verdicts []projections.Verdict) []audit.Record {
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
		details := map[string]string{"code": vd.Code, "reason_code": vd.ReasonCode, "partition": strconv.Itoa(m.Partition), "offset": strconv.FormatInt(m.Offset, 10),
			"quarantine_seq": strconv.FormatUint(vd.Seq, 10)} // the entry in GET /v1/tenants/{t}/quarantine
		cl := claims[i]
		if ev := recs[i].Event; ev != nil && ev.Tenant != "" {
			cl.tenant = string(t) // refused by the store; decode let through only the topic's own tenant
		}
		if cl.tenant != "" {
			details[audit.DetailEventTenant] = cl.tenant
		}
		if cl.also != "" {
			details["also"] = cl.also
		}
		rejects = append(rejects, audit.Record{
			Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionIngestReject, Resource: "topics/" + topic,
			Outcome: audit.OutcomeRejected, Reason: vd.ReasonCode, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
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
			Reject: &projections.Rejection{Code: events.EFORBIDDEN, Reason: reason, ReasonCode: events.ReasonForeignTopic, Raw: v.evidence(m.Value)}}
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
	details["reason_code"] = events.ReasonForeignTopic
	details[audit.DetailTopicID] = msgs[0].TopicID
	details[audit.DetailTenantTopicID] = want
	if aerr := v.record(ctx, audit.Record{
		Principal: audit.PrincipalIngest, Tenant: string(t), Action: audit.ActionIngestReject, Resource: "topics/" + topic,
		Outcome: audit.OutcomeRejected, Reason: events.ReasonForeignTopic, Count: fresh, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
	}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// decode turns m into an event of tenant t, or a rejection. A rejected
// event that names another tenant comes back with its Tenant set: the audit
// record carries that fact, from which the flag is derived; also is then
// the reason code of its other defect, if any. The rejection's Reason (the
// message, which may quote the input) is sealed in the quarantine; its
// ReasonCode is what the audit log records.
func (v *Vault) decode(t events.TenantID, m *Message) (e events.Event, rej *projections.Rejection, also string) {
	e, err := events.Decode(m.Value, m.Headers, v.cfg.MaxEventBytes)
	switch {
	case err != nil:
		// A malformed record that names another tenant is first of all a
		// crossing: refused as one (and so flagged), its other defect in
		// the reason.
		if claimed := events.ClaimedTenant(m.Value, m.Headers); claimed != "" && claimed != string(t) {
			rej = &projections.Rejection{Code: events.EFORBIDDEN, ReasonCode: events.ReasonTenantMismatch,
				Reason: "event tenant differs from topic tenant; also: " + events.ErrorMessage(err)}
			e, also = events.Event{Tenant: claimed}, events.ErrorReason(err)
			break
		}
		rej = &projections.Rejection{Code: events.ErrorCode(err), Reason: events.ErrorMessage(err), ReasonCode: events.ErrorReason(err)}
	case e.Tenant != "" && e.Tenant != string(t):
		rej = &projections.Rejection{Code: events.EFORBIDDEN, Reason: "event tenant differs from topic tenant", ReasonCode: events.ReasonTenantMismatch}
		e = events.Event{Tenant: e.Tenant}
	case len(m.Key) > 0 && string(m.Key) != e.Subject:
		rej = &projections.Rejection{Code: events.EINVALID, Reason: "kafka key differs from subject (the stream id)", ReasonCode: events.ReasonKeyMismatch}
	default:
		return e, nil, ""
	}
	rej.Raw = v.evidence(m.Value)
	return events.Event{Tenant: e.Tenant}, rej, also
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
	if v.cfg.OnIngested != nil && (res.Applied > 0 || res.Quarantined > 0) {
		v.cfg.OnIngested(t, res.Applied, res.Quarantined)
	}
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

// ingestTenant returns the tenant of topic and its registry entry, or
// why its records are skipped (a reason code): the topic is not that of a
// valid tenant id, of a tenant of the registry, or of a live one.
func (v *Vault) ingestTenant(topic string) (events.TenantID, registryEntry, string) {
	t, err := events.TenantFromTopic(topic)
	if err != nil {
		return "", registryEntry{}, events.ReasonTopicInvalid
	}
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		return t, e, events.ReasonTenantUnknown
	case e.State == StateMoved:
		return t, e, events.ReasonTenantMoved
	case !e.active():
		return t, e, events.ReasonTenantShredded
	}
	return t, e, ""
}

// Holds reports whether the records of topic are this vault's to delete
// once applied: those of a live tenant that is not being moved, of a
// shredded one, and of an unknown one unless Config.KeepUnknownIngress
// (another vault on the same brokers may hold it). Records of a moved or
// frozen tenant are skipped but stay on the broker for the destination.
func (v *Vault) Holds(topic string) bool {
	t, err := events.TenantFromTopic(topic)
	if err != nil {
		return false
	}
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		return !v.cfg.KeepUnknownIngress
	case e.State == StateMoved, e.Exported != nil:
		return false
	}
	return true
}

// ingestSkip audits, as one ingest.skip, a batch of records that no live
// tenant owns, and skips it. On the topic of a shredded tenant it is a
// flagged record of its own (and the records are acked, so that ingress
// retention deletes them); on any other, the topic is producer text,
// named by its keyed hash (topicResource), and the records are aggregated
// per topic (Config.AggregateInterval): anyone who reaches the broker can
// create such topics.
func (v *Vault) ingestSkip(ctx context.Context, topic string, t events.TenantID, reason string, msgs []Message) error {
	v.stats.UnknownTenantMsgs.Add(int64(len(msgs)))
	rec := audit.Record{Principal: audit.PrincipalIngest, Action: audit.ActionIngestSkip,
		Outcome: audit.OutcomeRejected, Reason: reason, Count: len(msgs), Details: offsetDetails(msgs)}
	if reason == events.ReasonTenantMoved {
		rec.Tenant, rec.Resource = string(t), "topics/"+topic
		rec.Details[audit.DetailTenantState] = StateMoved
		return v.agg.record(ctx, rec.Resource, rec)
	}
	if reason == events.ReasonTenantShredded {
		rec.Tenant, rec.Resource = string(t), "topics/"+topic
		rec.Details[audit.DetailTenantState] = StateShredded
		return v.record(ctx, rec)
	}
	var err error
	if rec.Resource, err = v.topicResource(topic); err != nil {
		return fmt.Errorf("ingest skip: %w", err)
	}
	return v.agg.record(ctx, rec.Resource, rec)
}
