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
	if err == nil {
		e, ok := v.reg.get(t)
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
			Principal: "ingest", Tenant: topicTenant(topic), Action: "ingest.skip", Resource: "topics/" + topic,
			Outcome: "rejected", Reason: events.ErrorMessage(err), Count: len(msgs), Details: details,
		})
	}
	c, err := v.cfg.Keys.Cipher(t)
	if err != nil {
		return fmt.Errorf("ingest %s: keys: %w", t, err)
	}
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return fmt.Errorf("ingest %s: %w", t, err)
	}
	defer release()

	// Records at or below the stored offset were applied (and their
	// rejections audited) before: a redelivery must not audit them again.
	// Apply is serialised per store and a partition has one consumer, so
	// the offsets cannot move between here and Apply.
	applied, err := st.Offsets()
	if err != nil {
		return fmt.Errorf("ingest %s: %w", t, err)
	}
	if e, _ := v.reg.get(t); e.TopicID != "" && msgs[0].TopicID != "" && msgs[0].TopicID != e.TopicID {
		return v.ingestForeignTopic(ctx, t, topic, e.TopicID, msgs, st, c, applied)
	}
	recs := make([]projections.Record, len(msgs))
	var rejects []audit.Record
	for i := range msgs {
		m := &msgs[i]
		recs[i] = projections.Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
		e, rej := v.decode(t, m)
		if rej == nil {
			recs[i].Event = &e
			continue
		}
		recs[i].Reject = rej
		if off, ok := applied[m.Topic][m.Partition]; ok && m.Offset <= off {
			continue
		}
		details := map[string]string{"code": rej.Code, "partition": strconv.Itoa(m.Partition), "offset": strconv.FormatInt(m.Offset, 10)}
		if e.Tenant != "" {
			details[audit.DetailEventTenant] = e.Tenant
		}
		rejects = append(rejects, audit.Record{
			Principal: "ingest", Tenant: string(t), Action: "ingest.reject", Resource: "topics/" + topic,
			Outcome: "rejected", Reason: rej.Reason, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
		})
	}
	res, err := v.apply(t, st, c, recs)
	if err != nil {
		return err
	}

	batch := audit.Record{
		Principal: "ingest", Tenant: string(t), Action: "ingest.batch", Resource: "topics/" + topic,
		Outcome: "ok", Count: res.Applied, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: offsetDetails(msgs),
	}
	batch.Details["applied"] = strconv.Itoa(res.Applied)
	batch.Details["duplicates"] = strconv.Itoa(res.Duplicates)
	batch.Details["quarantined"] = strconv.Itoa(res.Quarantined)
	batch.Details["skipped"] = strconv.Itoa(res.Skipped)
	if res.Skipped == len(msgs) {
		// A pure redelivery: everything was applied and audited before.
		return nil
	}
	return v.appendAll(ctx, append(rejects, batch))
}

// ingestForeignTopic quarantines a batch read from a topic that bears the
// tenant's topic name but not the id of the topic the vault created: it was
// deleted and created again past the vault, and what was published to it is
// not the tenant's. Every record is kept sealed in the quarantine, none is
// applied, and one flagged audit record says so (with both ids).
//
// Its offsets are kept apart, under the topic's name and id
// ("tenant.acme.events@<id>"): they count in that topic, not in the
// vault's, so its records are quarantined once each and the vault's own
// topic's position does not move.
func (v *Vault) ingestForeignTopic(ctx context.Context, t events.TenantID, topic, want string, msgs []Message, st *projections.Store, c Cipher, applied map[string]map[int]int64) error {
	const reason = "topic not created by the vault"
	recs := make([]projections.Record, len(msgs))
	fresh := 0
	for i := range msgs {
		m := &msgs[i]
		name := m.Topic + "@" + m.TopicID
		recs[i] = projections.Record{Topic: name, Partition: m.Partition, Offset: m.Offset,
			Reject: &projections.Rejection{Code: events.EFORBIDDEN, Reason: reason, Raw: v.evidence(m.Value)}}
		if off, ok := applied[name][m.Partition]; !ok || m.Offset > off {
			fresh++
		}
	}
	if _, err := v.apply(t, st, c, recs); err != nil {
		return err
	}
	if fresh == 0 {
		return nil // a redelivery: audited before
	}
	details := offsetDetails(msgs)
	details["code"] = events.EFORBIDDEN
	details[audit.DetailTopicID] = msgs[0].TopicID
	details[audit.DetailTenantTopicID] = want
	return v.record(ctx, audit.Record{
		Principal: "ingest", Tenant: string(t), Action: audit.ActionIngestReject, Resource: "topics/" + topic,
		Outcome: "rejected", Reason: reason, Count: fresh, KeyIDs: []uint32{c.PrimaryKeyID()}, Details: details,
	})
}

// decode turns m into an event of tenant t, or a rejection. A rejected
// event that names another tenant comes back with its Tenant set: the audit
// record carries that fact, from which the flag is derived.
func (v *Vault) decode(t events.TenantID, m *Message) (e events.Event, rej *projections.Rejection) {
	e, err := events.Decode(m.Value, m.Headers, v.cfg.MaxEventBytes)
	switch {
	case err != nil:
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

// apply applies recs to t's store and counts what happened.
func (v *Vault) apply(t events.TenantID, st *projections.Store, c Cipher, recs []projections.Record) (projections.Result, error) {
	res, err := st.Apply(c, recs)
	if err != nil {
		return res, fmt.Errorf("ingest %s: %w", t, err)
	}
	v.stats.Batches.Add(1)
	v.stats.EventsApplied.Add(int64(res.Applied))
	v.stats.EventsDuplicate.Add(int64(res.Duplicates))
	v.stats.EventsQuarantined.Add(int64(res.Quarantined))
	v.stats.EventsSkipped.Add(int64(res.Skipped))
	return res, nil
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
