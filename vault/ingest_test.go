package vault_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// testMaxEventBytes is the vault's MaxEventBytes in the ingest tests.
const testMaxEventBytes = 2048

// badMessages are one record of each kind Ingest must quarantine, on
// tenant acme's topic from offset first on.
func badMessages(tb testing.TB, first int64) (msgs []vault.Message, codes []string) {
	tb.Helper()
	topic := events.TopicFor("acme")
	add := func(code string, key string, value []byte, headers ...events.Header) {
		msgs = append(msgs, vault.Message{Topic: topic, Offset: first + int64(len(msgs)), Key: []byte(key), Value: value, Headers: headers})
		codes = append(codes, code)
	}
	add(events.EINVALID, "", []byte("{not json"))
	add(events.EINVALID, "s", structured(tb, map[string]any{"specversion": "1.0", "source": "test", "type": "t", "subject": "s"})) // no id
	add(events.ETOOLARGE, "big", event(tb, "e-big", "big", `{"pad":"`+strings.Repeat("x", testMaxEventBytes)+`"}`))
	add(events.EFORBIDDEN, "s", structured(tb, map[string]any{"specversion": "1.0", "id": "e-wt", "source": "test", "type": "t", "subject": "s", "tenant": "globex"}))
	add(events.EINVALID, "other-stream", event(tb, "e-key", "s", `{}`)) // Kafka key is not the subject
	add(events.EINVALID, "", []byte{})
	return msgs, codes
}

func TestIngest(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.MaxEventBytes = testMaxEventBytes })
	acme := tv.mustCreateTenant(t, "acme")
	globex := tv.mustCreateTenant(t, "globex")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	primary := tv.cipher(t, "acme").PrimaryKeyID()

	good := []vault.Message{
		{Topic: topic, Offset: 0, Key: []byte("order-1"), Value: event(t, "e-1", "order-1", `{"total":12,"items":["a"]}`)},
		{Topic: topic, Offset: 1, Key: []byte("order-1"), Value: event(t, "e-2", "order-1", `{"paid":true,"items":null}`)},
		// Binary mode, no Kafka key.
		{Topic: topic, Offset: 2, Value: []byte(`{"n":1}`), Headers: []events.Header{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("e-3")},
			{Key: "ce_source", Value: []byte("test")}, {Key: "ce_type", Value: []byte("t")},
			{Key: "ce_subject", Value: []byte("order/2")}, {Key: "content-type", Value: []byte("application/json")},
		}},
		// The right tenant named explicitly is fine.
		{Topic: topic, Offset: 3, Key: []byte("order-3"), Value: structured(t, map[string]any{"specversion": "1.0", "id": "e-4", "source": "test", "type": "t", "subject": "order-3", "tenant": "acme", "data": map[string]int{"n": 3}})},
	}
	bad, codes := badMessages(t, int64(len(good)))
	batch := append(slices.Clone(good), bad...)

	n := tv.audit.Size()
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatalf("Ingest = %v, want nil", err)
	}

	// Applied events are readable through a session.
	s := tv.mustSession(t, acme, "acme")
	for stream, want := range map[string]string{"order-1": `{"total":12,"paid":true}`, "order/2": `{"n":1}`, "order-3": `{"n":3}`} {
		st, err := s.State(ctx, stream)
		if err != nil || string(st.Data) != want {
			t.Errorf("State(%q) = %s, %v, want %s", stream, st.Data, err, want)
		}
	}
	evs, err := s.History(ctx, "order-1", 0, 10)
	if err != nil || len(evs) != 2 || evs[0].Event.ID != "e-1" || evs[1].Event.ID != "e-2" || evs[1].Version != 2 || evs[1].Offset != 1 {
		t.Errorf("History(order-1) = %+v, %v, want e-1, e-2", evs, err)
	}

	// Bad records are quarantined with their codes, in order.
	q, _, err := s.Quarantine(ctx, "", 100)
	if err != nil {
		t.Fatalf("Quarantine: %v", err)
	}
	var gotCodes []string
	for i, e := range q {
		gotCodes = append(gotCodes, e.Code)
		if i < len(bad) && e.Offset != bad[i].Offset {
			t.Errorf("quarantine[%d] offset = %d, want %d", i, e.Offset, bad[i].Offset)
		}
	}
	if !slices.Equal(gotCodes, codes) {
		t.Errorf("quarantine codes = %v, want %v", gotCodes, codes)
	}
	if len(q) > 2 && len(q[2].Raw) > testMaxEventBytes {
		t.Errorf("quarantined oversized record keeps %d bytes, want at most %d", len(q[2].Raw), testMaxEventBytes)
	}
	if len(q) > 0 && string(q[0].Raw) != "{not json" {
		t.Errorf("quarantined malformed record raw = %q, want the input", q[0].Raw)
	}

	// Audit: one ingest.reject per bad record, one flagged; one ingest.batch.
	recs := tv.recordsSince(t, n)
	var rejects []audit.Record
	var batches []audit.Record
	for _, r := range recs {
		switch r.Action {
		case audit.ActionIngestReject:
			rejects = append(rejects, r)
		case audit.ActionIngestBatch:
			batches = append(batches, r)
		}
	}
	if len(rejects) != len(bad) {
		t.Errorf("ingest.reject records = %d, want %d: %s", len(rejects), len(bad), dump(rejects))
	}
	slices.SortFunc(rejects, func(a, b audit.Record) int {
		x, _ := strconv.Atoi(a.Details["offset"])
		y, _ := strconv.Atoi(b.Details["offset"])
		return x - y
	})
	flagged := 0
	for i, r := range rejects {
		if r.Principal != "ingest" || r.Tenant != "acme" || r.Outcome != audit.OutcomeRejected || !slices.Equal(r.KeyIDs, []uint32{primary}) {
			t.Errorf("ingest.reject record = %s, want ingest acme rejected key [%d]", dump(r), primary)
		}
		if i < len(codes) && (r.Details["code"] != codes[i] || r.Details["offset"] != strconv.FormatInt(bad[i].Offset, 10)) {
			t.Errorf("ingest.reject record %d details = %v, want code %s offset %d", i, r.Details, codes[i], bad[i].Offset)
		}
		if r.Flagged {
			flagged++
			checkFlag(t, r, audit.ViolationEventTenant)
			if r.Details[audit.DetailEventTenant] != "globex" {
				t.Errorf("flagged record event_tenant = %q, want globex", r.Details[audit.DetailEventTenant])
			}
		} else {
			checkFlag(t, r, "")
		}
		if b, _ := json.Marshal(r); strings.Contains(string(b), "not json") || strings.Contains(string(b), "xxxxxxxx") {
			t.Errorf("ingest.reject record %s holds the payload", b)
		}
	}
	if flagged != 1 {
		t.Errorf("flagged ingest.reject records = %d, want 1", flagged)
	}
	if len(batches) != 1 {
		t.Fatalf("ingest.batch records = %d, want 1: %s", len(batches), dump(batches))
	}
	b := batches[0]
	if b.Count != len(good) || b.Outcome != audit.OutcomeOK || b.Details["applied"] != strconv.Itoa(len(good)) ||
		b.Details["quarantined"] != strconv.Itoa(len(bad)) || b.Details["first_offset"] != "0" ||
		b.Details["last_offset"] != strconv.Itoa(len(batch)-1) || !slices.Equal(b.KeyIDs, []uint32{primary}) {
		t.Errorf("ingest.batch record = %s", dump(b))
	}

	st := tv.v.Stats()
	if st.EventsApplied.Load() != int64(len(good)) || st.EventsQuarantined.Load() != int64(len(bad)) || st.Batches.Load() != 1 {
		t.Errorf("Stats = applied %d quarantined %d batches %d, want %d %d 1",
			st.EventsApplied.Load(), st.EventsQuarantined.Load(), st.Batches.Load(), len(good), len(bad))
	}

	// Nothing of globex's was touched.
	g := tv.mustSession(t, globex, "globex")
	if list, _, err := g.Quarantine(ctx, "", 10); err != nil || len(list) != 0 {
		t.Errorf("globex Quarantine = %v, %v, want empty", list, err)
	}
}

// A batch delivered again (Kafka redelivery) changes nothing and audits
// nothing; an event id seen again at a new offset is applied once.
func TestIngestIdempotent(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.MaxEventBytes = testMaxEventBytes })
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	batch := []vault.Message{
		{Topic: topic, Offset: 0, Key: []byte("s"), Value: event(t, "e-1", "s", `{"a":1}`)},
		{Topic: topic, Offset: 1, Key: []byte("s"), Value: event(t, "e-2", "s", `{"b":2}`)},
		{Topic: topic, Offset: 2, Value: []byte("garbage")},
	}
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatalf("Ingest = %v", err)
	}
	s := tv.mustSession(t, acme, "acme")
	check := func(t *testing.T, wantVersion uint64, wantQuarantine int) {
		t.Helper()
		evs, err := s.History(ctx, "s", 0, 100)
		if err != nil || uint64(len(evs)) != wantVersion {
			t.Errorf("History(s) = %d events, %v, want %d", len(evs), err, wantVersion)
		}
		st, err := s.State(ctx, "s")
		if err != nil || st.Version != wantVersion || string(st.Data) != `{"a":1,"b":2}` {
			t.Errorf("State(s) = %+v, %v, want version %d", st, err, wantVersion)
		}
		q, _, err := s.Quarantine(ctx, "", 100)
		if err != nil || len(q) != wantQuarantine {
			t.Errorf("Quarantine = %d entries, %v, want %d", len(q), err, wantQuarantine)
		}
	}

	t.Run("same batch again", func(t *testing.T) {
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, batch); err != nil {
			t.Fatalf("Ingest(again) = %v", err)
		}
		if got := tv.v.Stats().EventsSkipped.Load(); got != int64(len(batch)) {
			t.Errorf("Stats().EventsSkipped = %d, want %d", got, len(batch))
		}
		if recs := tv.recordsSince(t, n); len(recs) != 0 {
			t.Errorf("redelivery wrote audit records %s, want none", dump(recs))
		}
		check(t, 2, 1)
	})
	t.Run("event id at a new offset", func(t *testing.T) {
		again := []vault.Message{{Topic: topic, Offset: 3, Key: []byte("s"), Value: event(t, "e-1", "s", `{"a":"changed"}`)}}
		if err := tv.v.Ingest(ctx, topic, again); err != nil {
			t.Fatalf("Ingest = %v", err)
		}
		if got := tv.v.Stats().EventsDuplicate.Load(); got != 1 {
			t.Errorf("Stats().EventsDuplicate = %d, want 1", got)
		}
		check(t, 2, 1)
	})
	t.Run("empty batch", func(t *testing.T) {
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, nil); err != nil {
			t.Fatalf("Ingest(nil) = %v", err)
		}
		if recs := tv.recordsSince(t, n); len(recs) != 0 {
			t.Errorf("Ingest(nil) wrote %s", dump(recs))
		}
	})
}

// A redelivered batch that overlaps new records (Kafka redelivers from the
// last committed offset, and the runner batches whatever is in flight)
// must not audit the already-quarantined records a second time: each bad
// record has exactly one ingest.reject record, and a wrong-tenant event
// raises exactly one boundary alert.
func TestIngestPartialRedeliveryAuditsRejectsOnce(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	tv.mustCreateTenant(t, "globex")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	first := []vault.Message{
		{Topic: topic, Offset: 0, Value: []byte("garbage")},
		{Topic: topic, Offset: 1, Key: []byte("s"), Value: structured(t, map[string]any{"specversion": "1.0", "id": "e-wt", "source": "test", "type": "t", "subject": "s", "tenant": "globex"})},
		{Topic: topic, Offset: 2, Key: []byte("s"), Value: event(t, "e-1", "s", `{"a":1}`)},
	}
	if err := tv.v.Ingest(ctx, topic, first); err != nil {
		t.Fatalf("Ingest = %v", err)
	}
	// The offsets were not committed to Kafka (a crash): the records come
	// back, together with one that arrived since.
	redelivered := append(slices.Clone(first), vault.Message{Topic: topic, Offset: 3, Key: []byte("s"), Value: event(t, "e-2", "s", `{"b":2}`)})
	if err := tv.v.Ingest(ctx, topic, redelivered); err != nil {
		t.Fatalf("Ingest(redelivered) = %v", err)
	}
	rejects, err := tv.audit.List(ctx, audit.Filter{Action: audit.ActionIngestReject})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejects) != 2 {
		t.Errorf("ingest.reject records = %d, want 2 (one per bad record): %s", len(rejects), dump(rejects))
	}
	flagged, err := tv.audit.List(ctx, audit.Filter{Flagged: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(flagged) != 1 {
		t.Errorf("flagged records = %d, want 1 (one wrong-tenant event): %s", len(flagged), dump(flagged))
	}
	if got := tv.v.Stats().EventsQuarantined.Load(); got != 2 {
		t.Errorf("Stats().EventsQuarantined = %d, want 2", got)
	}
}

// Records on the topic of an unknown or invalid tenant are audited as
// ingest.skip and skipped without error: they must not block the consumer.
// The topic is producer text (anyone who reaches the broker can create
// one): the record names it by its keyed hash, never its name, nor the
// tenant it names; its reason is a reason code.
func TestIngestSkip(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	tests := []struct {
		topic      string
		wantReason string
	}{
		{"tenant.nosuch.events", events.ReasonTenantUnknown},
		{"tenant.BAD.events", events.ReasonTopicInvalid},
		{"tenant.../etc.events", events.ReasonTopicInvalid},
		{"orders", events.ReasonTopicInvalid},
	}
	var skipped int64
	resources := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			msgs := []vault.Message{
				{Topic: tt.topic, Offset: 5, Value: event(t, "e-1", "s", `{}`)},
				{Topic: tt.topic, Offset: 6, Value: event(t, "e-2", "s", `{}`)},
			}
			n := tv.audit.Size()
			if err := tv.v.Ingest(ctx, tt.topic, msgs); err != nil {
				t.Fatalf("Ingest(%q) = %v, want nil", tt.topic, err)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Principal != "ingest" || rec.Action != "ingest.skip" || rec.Outcome != audit.OutcomeRejected || rec.Count != 2 ||
				rec.Tenant != "" || rec.Reason != tt.wantReason || rec.Details["first_offset"] != "5" || rec.Details["last_offset"] != "6" {
				t.Errorf("audit record = %s, want ingest.skip of 2 records, no tenant, reason %q", dump(rec), tt.wantReason)
			}
			h, ok := strings.CutPrefix(rec.Resource, "topics/"+vault.KeyedHashPrefix)
			if _, err := hex.DecodeString(h); !ok || err != nil || len(h) != 32 || rec.Details[audit.DetailSource] != rec.Resource {
				t.Errorf("audit record resource = %q, source %q, want topics/%s and 32 hex digits, as the source", rec.Resource, rec.Details[audit.DetailSource], vault.KeyedHashPrefix)
			}
			if b, _ := json.Marshal(rec); strings.Contains(string(b), strings.TrimSuffix(strings.TrimPrefix(tt.topic, "tenant."), ".events")) {
				t.Errorf("audit record %s names the topic", b)
			}
			if other, dup := resources[rec.Resource]; dup {
				t.Errorf("topics %q and %q have the same resource %q", other, tt.topic, rec.Resource)
			}
			resources[rec.Resource] = tt.topic
			skipped += 2
			if got := tv.v.Stats().UnknownTenantMsgs.Load(); got != skipped {
				t.Errorf("Stats().UnknownTenantMsgs = %d, want %d", got, skipped)
			}
		})
	}
	if got := tv.v.Tenants(); !slices.Equal(got, []events.TenantID{"acme"}) {
		t.Errorf("Tenants() = %v, want [acme]", got)
	}
}

// A record only the store refuses — an event within the vault's
// MaxEventBytes with more data than the store keeps in one value (half a
// value log file) — is audited as the vault's own rejections are: exactly
// one ingest.reject, with the store's code and reason, and counted in the
// ingest.batch record; a redelivery audits it no more.
func TestIngestAuditsStoreQuarantine(t *testing.T) {
	limit := int(projections.Config{}.BadgerOptionsFor(t.TempDir()).ValueLogFileSize / 2)
	tv := MustOpenVault(t, func(c *vault.Config) { c.MaxEventBytes = limit + 1<<20 })
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	big := event(t, "e-big", "s", `{"pad":"`+strings.Repeat("x", limit)+`"}`)
	batch := []vault.Message{
		{Topic: topic, Offset: 0, Key: []byte("s"), Value: event(t, "e-1", "s", `{"a":1}`)},
		{Topic: topic, Offset: 1, Key: []byte("s"), Value: big}, // the store's decision
		{Topic: topic, Offset: 2, Value: []byte("garbage")},     // the vault's
		{Topic: topic, Offset: 3, Key: []byte("s"), Value: event(t, "e-2", "s", `{"b":2}`)},
	}

	n := tv.audit.Size()
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatalf("Ingest = %v, want nil", err)
	}
	var rejects, batches []audit.Record
	for _, r := range tv.recordsSince(t, n) {
		switch r.Action {
		case audit.ActionIngestReject:
			rejects = append(rejects, r)
		case audit.ActionIngestBatch:
			batches = append(batches, r)
		}
	}
	slices.SortFunc(rejects, func(a, b audit.Record) int { return strings.Compare(a.Details["offset"], b.Details["offset"]) })
	if len(rejects) != 2 {
		t.Fatalf("ingest.reject records = %d, want 2: %s", len(rejects), dump(rejects))
	}
	if r := rejects[0]; r.Details["code"] != events.ETOOLARGE || r.Details["offset"] != "1" || r.Details["partition"] != "0" ||
		r.Reason != events.ReasonStoreLimit || r.Tenant != "acme" || r.Outcome != audit.OutcomeRejected || r.Flagged {
		t.Errorf("ingest.reject of the store-refused record = %s, want too_large at offset 1 with the store's reason code, not flagged", dump(r))
	}
	if r := rejects[1]; r.Details["code"] != events.EINVALID || r.Details["offset"] != "2" {
		t.Errorf("ingest.reject of the malformed record = %s, want invalid at offset 2", dump(r))
	}
	if len(batches) != 1 || batches[0].Count != 2 || batches[0].Details["applied"] != "2" || batches[0].Details["quarantined"] != "2" ||
		batches[0].Details["skipped"] != "0" || batches[0].Details["duplicates"] != "0" {
		t.Errorf("ingest.batch records = %s, want one of 2 applied, 2 quarantined", dump(batches))
	}
	q := tv.quarantine(t, acme, "acme")
	if len(q) != 2 || header(q[0], "code") != events.ETOOLARGE || q[0].Offset != 1 || header(q[1], "code") != events.EINVALID {
		t.Errorf("quarantine = %d entries %v, want too_large at 1, invalid at 2", len(q), q)
	}

	t.Run("redelivery", func(t *testing.T) {
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, batch); err != nil {
			t.Fatalf("Ingest(again) = %v", err)
		}
		if recs := tv.recordsSince(t, n); len(recs) != 0 {
			t.Errorf("redelivery audited %s, want nothing", dump(recs))
		}
	})
	t.Run("partial redelivery", func(t *testing.T) {
		more := append(slices.Clone(batch[1:]), vault.Message{Topic: topic, Offset: 4, Key: []byte("s"), Value: event(t, "e-3", "s", `{"c":3}`)})
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, more); err != nil {
			t.Fatalf("Ingest = %v", err)
		}
		rec := tv.onlyRecord(t, n)
		if rec.Action != audit.ActionIngestBatch || rec.Details["applied"] != "1" || rec.Details["skipped"] != "3" || rec.Details["quarantined"] != "0" {
			t.Errorf("audit record = %s, want one ingest.batch of 1 applied, 3 skipped", dump(rec))
		}
	})
	if got := tv.v.Stats().EventsQuarantined.Load(); got != 2 {
		t.Errorf("Stats().EventsQuarantined = %d, want 2", got)
	}
}

// poisonedKeys hands out ciphers that fail to seal a value holding poison
// while on is set.
type poisonedKeys struct {
	vault.TenantKeys[vault.Cipher]
	poison []byte
	on     *atomic.Bool
}

type poisonedCipher struct {
	vault.Cipher
	poison []byte
	on     *atomic.Bool
}

var (
	_ vault.TenantKeys[vault.Cipher] = poisonedKeys{}
	_ vault.Cipher                   = poisonedCipher{}
)

var errPoisoned = errors.New("xtest: poisoned")

func (k poisonedKeys) Cipher(t events.TenantID) (vault.Cipher, error) {
	c, err := k.TenantKeys.Cipher(t)
	if err != nil {
		return nil, err
	}
	return poisonedCipher{c, k.poison, k.on}, nil
}

func (c poisonedCipher) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if c.on.Load() && bytes.Contains(plaintext, c.poison) {
		return nil, errPoisoned
	}
	return c.Cipher.Encrypt(plaintext, ad)
}

// A batch the store splits into several transactions, and which fails
// after some of them committed, has the records of those audited at once:
// they are skipped when the batch comes again, so each bad record still
// gets exactly one ingest.reject.
func TestIngestAuditsCommittedPartsOfAFailedBatch(t *testing.T) {
	var on atomic.Bool
	tv := MustOpenVault(t, func(c *vault.Config) { c.Keys.Ciphers = poisonedKeys{c.Keys.Ciphers, []byte("poison-pill"), &on} })
	tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	const n = 6000 // over one Badger transaction
	pad := strings.Repeat("x", 200)
	batch := make([]vault.Message, n)
	for i := range batch {
		batch[i] = vault.Message{Topic: topic, Offset: int64(i), Value: event(t, fmt.Sprintf("e-%d", i), fmt.Sprintf("s-%d", i%500), `{"pad":"`+pad+`"}`)}
	}
	batch[10].Value = []byte("garbage")
	batch[n-10].Value = []byte("garbage")
	batch[n-1].Value = event(t, "e-poison", "s-0", `{"pad":"poison-pill"}`)

	on.Store(true)
	before := tv.audit.Size()
	if err := tv.v.Ingest(ctx, topic, batch); !errors.Is(err, errPoisoned) {
		t.Fatalf("Ingest(poisoned) = %v, want %v", err, errPoisoned)
	}
	first := tv.recordsSince(t, before)
	slices.SortFunc(first, func(a, b audit.Record) int { return strings.Compare(string(b.Action), string(a.Action)) }) // reject, then batch
	if len(first) != 2 || first[0].Action != audit.ActionIngestReject || first[0].Details["offset"] != "10" ||
		first[1].Action != audit.ActionIngestBatch || first[1].Details["first_offset"] != "0" {
		t.Fatalf("audit records of the failed batch = %s, want the reject at offset 10 and a batch record of the committed parts", dump(first))
	}
	last, _ := strconv.Atoi(first[1].Details["last_offset"])
	if last >= n-10 || first[1].Details["records"] != strconv.Itoa(last+1) || first[1].Details["applied"] != strconv.Itoa(last) {
		t.Errorf("batch record of the failed batch = %v, want records 0…last (< %d), all but one applied", first[1].Details, n-10)
	}
	t.Logf("records 0…%d committed before the failure", last)

	on.Store(false)
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatalf("Ingest(again) = %v", err)
	}
	rejects, err := tv.audit.List(ctx, audit.Filter{Action: audit.ActionIngestReject})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejects) != 2 || rejects[0].Details["offset"] != "10" || rejects[1].Details["offset"] != strconv.Itoa(n-10) {
		t.Errorf("ingest.reject records = %s, want one at offset 10, one at %d", dump(rejects), n-10)
	}
	if got := tv.v.Stats().EventsApplied.Load(); got != n-2 {
		t.Errorf("Stats().EventsApplied = %d, want %d", got, n-2)
	}
}

// TestIngestFlagsClaimedTenantOfMalformedEvents: an event that names
// another tenant than its topic's is a flagged crossing even when it has a
// second defect (no id, specversion 2.0, a bad time, binary ce_tenant
// without ce_id): quarantined as forbidden, its other defect in the reason,
// audited flagged event_tenant_mismatch naming the claimed tenant.
func TestIngestFlagsClaimedTenantOfMalformedEvents(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	tv.mustCreateTenant(t, "globex")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	batch := []vault.Message{
		{Topic: topic, Offset: 0, Key: []byte("s"), Value: []byte(`{"specversion":"1.0","source":"x","type":"t","subject":"s","tenant":"globex"}`)},
		{Topic: topic, Offset: 1, Key: []byte("s"), Value: []byte(`{"specversion":"2.0","id":"e1","source":"x","type":"t","subject":"s","tenant":"globex"}`)},
		{Topic: topic, Offset: 2, Key: []byte("s"), Value: []byte(`{"specversion":"1.0","id":"e2","source":"x","type":"t","subject":"s","time":"yesterday","tenant":"globex"}`)},
		{Topic: topic, Offset: 3, Key: []byte("s"), Value: []byte(`{}`), Headers: []events.Header{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_source", Value: []byte("x")}, {Key: "ce_type", Value: []byte("t")},
			{Key: "ce_subject", Value: []byte("s")}, {Key: "ce_tenant", Value: []byte("globex")}}},
		{Topic: topic, Offset: 4, Key: []byte("s"), Value: []byte(`{"specversion":"1.0","source":"x","type":"t","subject":"s"}`)}, // no id, no tenant: plain invalid
	}
	n := tv.audit.Size()
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatalf("Ingest = %v, want nil", err)
	}
	var flagged, plain []audit.Record
	for _, r := range tv.recordsSince(t, n) {
		if r.Action != audit.ActionIngestReject {
			continue
		}
		if r.Flagged {
			flagged = append(flagged, r)
		} else {
			plain = append(plain, r)
		}
	}
	if len(flagged) != 4 || len(plain) != 1 {
		t.Fatalf("ingest.reject records: %d flagged, %d plain, want 4 and 1: %s %s", len(flagged), len(plain), dump(flagged), dump(plain))
	}
	slices.SortFunc(flagged, func(a, b audit.Record) int { return strings.Compare(a.Details["offset"], b.Details["offset"]) })
	wantAlso := []string{events.ReasonIDMissing, events.ReasonSpecVersion, events.ReasonTimeInvalid, events.ReasonIDMissing}
	for i, r := range flagged {
		if _, code, _ := audit.Classify(r); code != audit.ViolationEventTenant || r.Details[audit.DetailEventTenant] != "globex" ||
			r.Details["code"] != events.EFORBIDDEN || !strings.Contains(r.Reason, "event tenant differs from topic tenant") ||
			r.Details["reason_code"] != events.ReasonTenantMismatch || r.Details["also"] != wantAlso[i] {
			t.Errorf("flagged record %s, want event_tenant_mismatch naming globex, also %s", dump(r), wantAlso[i])
		}
	}
	if plain[0].Details["offset"] != "4" || plain[0].Details["code"] != events.EINVALID {
		t.Errorf("plain reject %s, want the invalid event at offset 4", dump(plain[0]))
	}
}
