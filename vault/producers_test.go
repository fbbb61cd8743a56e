package vault_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// filesHolding returns the files under dir holding secret: as is, without
// its "tvk_" prefix, or the bytes it encodes (raw or hex).
func filesHolding(tb testing.TB, dir, secret string) []string {
	tb.Helper()
	needles := [][]byte{[]byte(secret)}
	if body, ok := strings.CutPrefix(secret, "tvk_"); ok {
		needles = append(needles, []byte(body))
		if raw, err := base64.RawURLEncoding.DecodeString(body); err == nil {
			needles = append(needles, raw, []byte(hex.EncodeToString(raw)))
		}
	}
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if strings.Contains(string(b), string(n)) {
				found = append(found, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

// auditHolding returns the audit records (all of them) that hold secret.
func auditHolding(tb testing.TB, tv *testVault, secret string) []audit.Record {
	tb.Helper()
	var out []audit.Record
	for _, r := range tv.recordsSince(tb, 0) {
		if b, _ := json.Marshal(r); strings.Contains(string(b), secret) {
			out = append(out, r)
		}
	}
	return out
}

// topicMessages are valid events on stream s of tenant's topic at offsets
// first.., read from the topic with id topicID.
func topicMessages(tb testing.TB, tenant events.TenantID, topicID string, first int64, n int) []vault.Message {
	tb.Helper()
	topic := events.TopicFor(tenant)
	msgs := make([]vault.Message, n)
	for i := range msgs {
		off := first + int64(i)
		msgs[i] = vault.Message{Topic: topic, Offset: off, Key: []byte("s"), TopicID: topicID,
			Value: event(tb, "e-"+strconv.FormatInt(off, 10), "s", `{"n`+strconv.FormatInt(off, 10)+`":true}`)}
	}
	return msgs
}

// quarantine lists the tenant's quarantine through a session of token.
func (tv *testVault) quarantine(tb testing.TB, token, tenant string) []vault.Message {
	tb.Helper()
	s := tv.mustSession(tb, token, tenant)
	q, _, err := s.Quarantine(context.Background(), "", 100)
	if err != nil {
		tb.Fatalf("Quarantine(%q): %v", tenant, err)
	}
	out := make([]vault.Message, len(q))
	for i, e := range q {
		out[i] = vault.Message{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset, Value: e.Raw,
			Headers: []events.Header{{Key: "code", Value: []byte(e.Code)}, {Key: "reason", Value: []byte(e.Reason)}}}
	}
	return out
}

// version is the version of stream s of tenant (0: no event).
func (tv *testVault) version(tb testing.TB, token, tenant string) uint64 {
	tb.Helper()
	st, err := tv.mustSession(tb, token, tenant).State(context.Background(), "s")
	if codeOf(err) == events.ENOTFOUND {
		return 0
	}
	if err != nil {
		tb.Fatalf("State(%q, s): %v", tenant, err)
	}
	return st.Version
}

func header(m vault.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestCreateTenantKafkaCredential(t *testing.T) {
	dir := t.TempDir()
	fp := newFakeProducers()
	tv := MustOpenVaultAt(t, dir, withBroker(fp, nil))
	ctx := context.Background()
	admin := tv.admin(t)

	passwords, tokens := map[string]string{}, map[string]string{}
	for _, id := range []string{"acme", "globex"} {
		n := tv.audit.Size()
		info, token, err := tv.v.CreateTenant(ctx, admin, id)
		if err != nil {
			t.Fatalf("CreateTenant(%q) = %v, want nil", id, err)
		}
		k := info.Kafka
		wantUser, wantTopic := "tenant-"+id, "tenant."+id+".events"
		if k == nil || k.User != wantUser || len(k.Password) < 32 || k.Topic != wantTopic {
			t.Fatalf("CreateTenant(%q).Kafka = %+v, want user %s, a password of >= 32 chars, topic %s", id, k, wantUser, wantTopic)
		}
		passwords[id], tokens[id] = k.Password, token
		if got, ok := fp.user(wantUser); !ok || got != (producer{Secret: k.Password, Topic: wantTopic}) {
			t.Errorf("broker user %s = %+v, %v, want the returned password and topic %s", wantUser, got, ok, wantTopic)
		}
		if fp.topicID(wantTopic) == "" {
			t.Errorf("topic %s has no id on the fake brokers", wantTopic)
		}
		rec := tv.onlyRecord(t, n)
		if b, _ := json.Marshal(rec); strings.Contains(string(b), k.Password) {
			t.Errorf("tenant.create audit record %s holds the Kafka password", b)
		}
	}
	if passwords["acme"] == passwords["globex"] {
		t.Errorf("two tenants got the same Kafka password %q", passwords["acme"])
	}

	list, err := tv.v.ListTenants(ctx, admin)
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	for _, ti := range list {
		if ti.Kafka == nil || ti.Kafka.User != "tenant-"+string(ti.ID) || ti.Kafka.Password != "" || ti.Kafka.Topic != ti.Topic {
			t.Errorf("ListTenants() %s Kafka = %+v, want user tenant-%s and no password", ti.ID, ti.Kafka, ti.ID)
		}
	}
	lb, _ := json.Marshal(list)
	for id, pw := range passwords {
		if strings.Contains(string(lb), pw) {
			t.Errorf("ListTenants() = %s, holds the Kafka password of %s", lb, id)
		}
		if files := filesHolding(t, dir, pw); len(files) != 0 {
			t.Errorf("the Kafka password of %s is in %v", id, files)
		}
		if recs := auditHolding(t, tv, pw); len(recs) != 0 {
			t.Errorf("audit records hold the Kafka password of %s: %s", id, dump(recs))
		}
	}

	// The topic id is in the registry: after a re-open (without TopicIDs),
	// records of a topic of another id are quarantined, those of the
	// vault's topic applied.
	tv.close(t)
	tv2 := MustOpenVaultAt(t, dir, nil)
	topicID := fp.topicID(events.TopicFor("acme"))
	for _, tt := range []struct {
		name        string
		topicID     string
		wantApplied bool
	}{
		{"another topic id", strings.Repeat("f", 32), false},
		{"the recorded topic id", topicID, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := tv2.v.Stats()
			applied, quarantined := st.EventsApplied.Load(), st.EventsQuarantined.Load()
			msgs := topicMessages(t, "acme", tt.topicID, 0, 1)
			if err := tv2.v.Ingest(ctx, events.TopicFor("acme"), msgs); err != nil {
				t.Fatalf("Ingest(topic id %q) = %v, want nil", tt.topicID, err)
			}
			gotApplied := st.EventsApplied.Load() == applied+1 && st.EventsQuarantined.Load() == quarantined
			gotQuarantined := st.EventsApplied.Load() == applied && st.EventsQuarantined.Load() == quarantined+1
			if tt.wantApplied && !gotApplied || !tt.wantApplied && !gotQuarantined {
				t.Errorf("Ingest(topic id %q): applied %d quarantined %d, want applied %v", tt.topicID,
					st.EventsApplied.Load()-applied, st.EventsQuarantined.Load()-quarantined, tt.wantApplied)
			}
		})
	}
	q := tv2.quarantine(t, tokens["acme"], "acme")
	if len(q) != 1 || header(q[0], "reason") != "topic not created by the vault" {
		t.Errorf("acme quarantine after re-open = %s, want the record of another topic id", dump(q))
	}
	if got := tv2.version(t, tokens["acme"], "acme"); got != 1 {
		t.Errorf("stream s version after re-open = %d, want 1", got)
	}
}

func TestCreateTenantWithoutProducers(t *testing.T) {
	tests := []struct {
		name string
		edit func(*vault.Config)
	}{
		{"nil Producers and TopicIDs", nil},
		{"TopicIDs only", func(c *vault.Config) { c.TopicIDs = newFakeProducers() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tv := MustOpenVault(t, tt.edit)
			ctx := context.Background()
			info, token, err := tv.v.CreateTenant(ctx, tv.admin(t), "acme")
			if err != nil || token == "" {
				t.Fatalf("CreateTenant(%q) = %q, %v, want a token", "acme", token, err)
			}
			if info.Kafka != nil {
				t.Errorf("CreateTenant(%q).Kafka = %+v, want nil", "acme", info.Kafka)
			}
			list, err := tv.v.ListTenants(ctx, tv.admin(t))
			if err != nil || len(list) != 1 || list[0].Kafka != nil {
				t.Errorf("ListTenants() = %s, %v, want acme without Kafka", dump(list), err)
			}
			if b, _ := json.Marshal(info); strings.Contains(string(b), `"kafka"`) {
				t.Errorf("TenantInfo JSON = %s, want no kafka field", b)
			}
			if err := tv.v.EnsureBroker(ctx); err != nil {
				t.Errorf("EnsureBroker() = %v, want nil", err)
			}
		})
	}
}

// A create whose producer credential the brokers refuse fails, is audited,
// leaves no tenant, and can be repeated.
func TestCreateTenantProducerFailure(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	ctx := context.Background()
	fp.failOn("SetProducer", events.Errorf(events.EUNAVAILABLE, "broker down"))
	n := tv.audit.Size()
	info, tok, err := tv.v.CreateTenant(ctx, tv.admin(t), "acme")
	if err == nil || tok != "" || info.Kafka != nil {
		t.Fatalf("CreateTenant(%q) with SetProducer failing = %+v, %q, %v, want an error", "acme", info, tok, err)
	}
	rec := tv.onlyRecord(t, n)
	if rec.Action != "tenant.create" || rec.Outcome != audit.OutcomeError {
		t.Errorf("audit record = %s, want tenant.create error", dump(rec))
	}
	if got := tv.v.Tenants(); len(got) != 0 {
		t.Errorf("Tenants() = %v, want none", got)
	}
	fp.failOn("SetProducer", nil)
	info, _, err = tv.v.CreateTenant(ctx, tv.admin(t), "acme")
	if err != nil || info.Kafka == nil {
		t.Fatalf("CreateTenant(%q) once the broker is back = %+v, %v, want a Kafka credential", "acme", info, err)
	}
	if got, ok := fp.user("tenant-acme"); !ok || got.Secret != info.Kafka.Password {
		t.Errorf("broker user tenant-acme = %+v, %v, want the returned password", got, ok)
	}
}

func TestRotateKafkaCredential(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	ctx := context.Background()
	admin := tv.admin(t)
	info, acmeToken, err := tv.v.CreateTenant(ctx, admin, "acme")
	if err != nil {
		t.Fatalf("CreateTenant(acme): %v", err)
	}
	created := info.Kafka.Password
	tv.mustCreateTenant(t, "gone")
	if _, err := tv.v.Shred(ctx, admin, "gone", "gone"); err != nil {
		t.Fatalf("Shred(gone): %v", err)
	}
	acme := tv.mustAuth(t, acmeToken)

	plain := MustOpenVault(t, nil) // brokers that do not authenticate
	plain.mustCreateTenant(t, "acme")

	tests := []struct {
		name        string
		tv          *testVault
		p           vault.Principal
		tenant      string
		wantCode    string
		wantOutcome audit.Outcome
		wantReason  string
	}{
		{"tenant principal", tv, acme, "acme", events.EFORBIDDEN, audit.OutcomeDenied, "admin credential required"},
		// A crossing: refused and flagged (the reason is the violation's).
		{"tenant principal on another tenant", tv, acme, "gone", events.EFORBIDDEN, audit.OutcomeDenied, "token tenant differs from path tenant"},
		{"invalid tenant id", tv, admin, "../acme", events.EINVALID, audit.OutcomeRejected, "invalid tenant id"},
		{"empty tenant id", tv, admin, "", events.EINVALID, audit.OutcomeRejected, "invalid tenant id"},
		{"unknown tenant", tv, admin, "nosuch", events.ENOTFOUND, audit.OutcomeRejected, "unknown tenant"},
		// As on the keys endpoints: an access to a shredded tenant (flagged).
		{"shredded tenant", tv, admin, "gone", events.EGONE, audit.OutcomeDenied, "access to a shredded tenant"},
		{"nil Producers", plain, plain.admin(t), "acme", events.EUNAVAILABLE, audit.OutcomeRejected, "brokers do not authenticate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.tv.audit.Size()
			c, err := tt.tv.v.RotateKafkaCredential(ctx, tt.p, tt.tenant)
			if codeOf(err) != tt.wantCode || c != (vault.KafkaCredential{}) {
				t.Fatalf("RotateKafkaCredential(%q) = %+v, %v, want code %q", tt.tenant, c, err, tt.wantCode)
			}
			rec := tt.tv.onlyRecord(t, n)
			if string(rec.Principal) != tt.p.String() || rec.Action != audit.ActionKafkaCredentialRotate || rec.Outcome != tt.wantOutcome || rec.Reason != tt.wantReason {
				t.Errorf("audit record = %s, want %s %s %s %q", dump(rec), tt.p, audit.ActionKafkaCredentialRotate, tt.wantOutcome, tt.wantReason)
			}
			if got, _ := fp.user("tenant-acme"); got.Secret != created {
				t.Errorf("broker secret of tenant-acme changed by a refused rotate")
			}
		})
	}

	t.Run("ok", func(t *testing.T) {
		seen := []string{created}
		for i := range 2 {
			n := tv.audit.Size()
			c, err := tv.v.RotateKafkaCredential(ctx, admin, "acme")
			if err != nil {
				t.Fatalf("RotateKafkaCredential(%q) #%d = %v, want nil", "acme", i+1, err)
			}
			if c.User != "tenant-acme" || c.Topic != "tenant.acme.events" || len(c.Password) < 32 || slices.Contains(seen, c.Password) {
				t.Errorf("RotateKafkaCredential(%q) #%d = %+v, want user tenant-acme, a new password of >= 32 chars", "acme", i+1, c)
			}
			seen = append(seen, c.Password)
			if got, ok := fp.user("tenant-acme"); !ok || got != (producer{Secret: c.Password, Topic: "tenant.acme.events"}) {
				t.Errorf("broker user tenant-acme = %+v, %v, want the new password", got, ok)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Principal != "admin" || rec.Tenant != "acme" || rec.Action != "tenant.kafka_credential.rotate" || rec.Outcome != audit.OutcomeOK ||
				rec.Resource != "tenants/acme/kafka-credential" || rec.Details["kafka_user"] != "tenant-acme" || rec.Flagged {
				t.Errorf("audit record = %s, want admin acme tenant.kafka_credential.rotate ok, kafka_user tenant-acme", dump(rec))
			}
		}
		for _, pw := range seen {
			if recs := auditHolding(t, tv, pw); len(recs) != 0 {
				t.Errorf("audit records hold a Kafka password: %s", dump(recs))
			}
			if files := filesHolding(t, tv.dir, pw); len(files) != 0 {
				t.Errorf("a Kafka password is in %v", files)
			}
		}
		// The tenant's API token is not touched by a Kafka rotation.
		if p := tv.mustAuth(t, acmeToken); p.Tenant() != "acme" {
			t.Errorf("Authenticate(acme token) after rotate = %v, want tenant acme", p)
		}
	})

	t.Run("broker failure", func(t *testing.T) {
		before, _ := fp.user("tenant-acme")
		fp.failOn("SetProducer", events.Errorf(events.EUNAVAILABLE, "broker down"))
		defer fp.failOn("SetProducer", nil)
		n := tv.audit.Size()
		c, err := tv.v.RotateKafkaCredential(ctx, admin, "acme")
		if err == nil || c != (vault.KafkaCredential{}) {
			t.Fatalf("RotateKafkaCredential(%q) with SetProducer failing = %+v, %v, want an error", "acme", c, err)
		}
		rec := tv.onlyRecord(t, n)
		if rec.Action != audit.ActionKafkaCredentialRotate || rec.Outcome != audit.OutcomeError || !strings.Contains(rec.Reason, "broker down") {
			t.Errorf("audit record = %s, want tenant.kafka_credential.rotate error naming the failure", dump(rec))
		}
		if got, _ := fp.user("tenant-acme"); got != before {
			t.Errorf("broker user tenant-acme = %+v after a failed rotate, want %+v", got, before)
		}
	})
}

func TestShredRemovesProducer(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	ctx := context.Background()
	admin := tv.admin(t)
	tv.mustCreateTenant(t, "acme")
	tv.mustCreateTenant(t, "globex")
	if _, err := tv.v.Shred(ctx, admin, "acme", "acme"); err != nil {
		t.Fatalf("Shred(acme) = %v, want nil", err)
	}
	if got, ok := fp.user("tenant-acme"); ok || got.Topic != "" {
		t.Errorf("broker user tenant-acme after Shred = %+v, %v, want none (no credential, no ACLs)", got, ok)
	}
	if _, ok := fp.user("tenant-globex"); !ok {
		t.Errorf("broker user tenant-globex removed by the shred of acme")
	}
	list, err := tv.v.ListTenants(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range list {
		if ti.ID == "acme" && ti.Kafka != nil {
			t.Errorf("ListTenants() shredded acme Kafka = %+v, want nil", ti.Kafka)
		}
	}
	if _, err := tv.v.RotateKafkaCredential(ctx, admin, "acme"); codeOf(err) != events.EGONE {
		t.Errorf("RotateKafkaCredential(%q) after Shred = %v, want code %q", "acme", err, events.EGONE)
	}
	if _, ok := fp.user("tenant-acme"); ok {
		t.Errorf("RotateKafkaCredential of a shredded tenant gave it a broker user")
	}
}

func TestShredRemoveProducerFailureResumes(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	ctx := context.Background()
	admin := tv.admin(t)
	tv.mustCreateTenant(t, "acme")
	fp.failOn("RemoveProducer", events.Errorf(events.EUNAVAILABLE, "broker down"))

	n := tv.audit.Size()
	if _, err := tv.v.Shred(ctx, admin, "acme", "acme"); err == nil || !strings.Contains(err.Error(), "remove producer credential") {
		t.Fatalf("Shred(acme) with RemoveProducer failing = %v, want an error naming the step %q", err, "remove producer credential")
	}
	rec := tv.onlyRecord(t, n)
	if rec.Action != "tenant.shred" || rec.Outcome != audit.OutcomeError || rec.Reason != "shred step failed: remove producer credential" {
		t.Errorf("audit record = %s, want tenant.shred error at remove producer credential", dump(rec))
	}
	if _, ok := fp.user("tenant-acme"); !ok {
		t.Fatalf("broker user tenant-acme gone though RemoveProducer failed")
	}
	state := func() string {
		t.Helper()
		list, err := tv.v.ListTenants(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, ti := range list {
			if ti.ID == "acme" {
				return ti.State
			}
		}
		return ""
	}
	if got := state(); got != vault.StateShredding {
		t.Errorf("acme state after a failed shred = %q, want %q", got, vault.StateShredding)
	}
	// Still failing: the resume fails the same way.
	if err := tv.v.ResumeShreds(ctx); err == nil || !strings.Contains(err.Error(), "remove producer credential") {
		t.Errorf("ResumeShreds() with RemoveProducer failing = %v, want the step named", err)
	}

	fp.failOn("RemoveProducer", nil)
	n = tv.audit.Size()
	if err := tv.v.ResumeShreds(ctx); err != nil {
		t.Fatalf("ResumeShreds() = %v, want nil", err)
	}
	if _, ok := fp.user("tenant-acme"); ok {
		t.Errorf("broker user tenant-acme still there after the resumed shred")
	}
	if got := state(); got != vault.StateShredded {
		t.Errorf("acme state after ResumeShreds = %q, want %q", got, vault.StateShredded)
	}
	recs := tv.recordsSince(t, n)
	i := slices.IndexFunc(recs, func(r audit.Record) bool { return r.Action == "tenant.shred" && r.Outcome == audit.OutcomeOK })
	if i < 0 || recs[i].Details["resumed"] != "true" {
		t.Errorf("audit records after ResumeShreds = %s, want a tenant.shred ok resumed receipt", dump(recs))
	}
	if err := tv.v.ResumeShreds(ctx); err != nil {
		t.Errorf("ResumeShreds() again = %v, want nil", err)
	}
}

func TestEnsureBroker(t *testing.T) {
	ctx := context.Background()
	topic := events.TopicFor("acme")
	// ingested reports whether one record of acme's topic read from a topic
	// of id topicID at offset off is applied (else it was quarantined).
	ingested := func(t *testing.T, tv *testVault, topicID string, off int64) bool {
		t.Helper()
		applied := tv.v.Stats().EventsApplied.Load()
		if err := tv.v.Ingest(ctx, topic, topicMessages(t, "acme", topicID, off, 1)); err != nil {
			t.Fatalf("Ingest(topic id %q) = %v", topicID, err)
		}
		return tv.v.Stats().EventsApplied.Load() == applied+1
	}
	topicChecks := func(t *testing.T, tv *testVault, n uint64) []audit.Record {
		t.Helper()
		var out []audit.Record
		for _, r := range tv.recordsSince(t, n) {
			if r.Action == audit.ActionTopicCheck {
				out = append(out, r)
			}
		}
		return out
	}

	t.Run("entry without topic id adopts the broker's", func(t *testing.T) {
		dir := t.TempDir()
		fp := newFakeProducers()
		old := MustOpenVaultAt(t, dir, nil) // a vault from before topic ids
		old.mustCreateTenant(t, "acme")
		old.close(t)
		fp.topicCreated(topic) // the topic is on the brokers, with its id
		id := fp.topicID(topic)

		tv := MustOpenVaultAt(t, dir, withBroker(fp, nil))
		n := tv.audit.Size()
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() = %v, want nil", err)
		}
		if recs := topicChecks(t, tv, n); len(recs) != 0 {
			t.Errorf("EnsureBroker() audited %s, want nothing", dump(recs))
		}
		if got := fp.topicID(topic); got != id {
			t.Errorf("topic id on the brokers = %q, want %q unchanged", got, id)
		}
		b, err := os.ReadFile(filepath.Join(dir, "tenants.json"))
		if err != nil || !strings.Contains(string(b), id) {
			t.Errorf("tenants.json = %s, %v, want it to hold topic id %s", b, err, id)
		}
		if ingested(t, tv, strings.Repeat("e", 32), 0) {
			t.Errorf("a record of another topic id was applied, want it quarantined (the id adopted)")
		}
		if !ingested(t, tv, id, 0) {
			t.Errorf("a record of the adopted topic id was not applied")
		}
	})

	t.Run("missing topic is created again and its id adopted", func(t *testing.T) {
		fp := newFakeProducers()
		tv := MustOpenVault(t, withBroker(fp, nil))
		tv.mustCreateTenant(t, "acme")
		first := fp.topicID(topic)
		fp.deleteTopic(topic)
		calls := len(tv.topics.calls())
		n := tv.audit.Size()
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() = %v, want nil", err)
		}
		if got := tv.topics.calls()[calls:]; !slices.Equal(got, []createdTopic{{topic, 1}}) {
			t.Errorf("CreateTopic calls of EnsureBroker = %v, want [%s]", got, topic)
		}
		second := fp.topicID(topic)
		if second == "" || second == first {
			t.Fatalf("topic id after EnsureBroker = %q, want a new one (was %q)", second, first)
		}
		if recs := topicChecks(t, tv, n); len(recs) != 1 || recs[0].Outcome != "ok" || recs[0].Flagged ||
			recs[0].Details[audit.DetailTopicID] != second || recs[0].Details["previous_topic_id"] != first {
			t.Errorf("EnsureBroker() audited %s, want one unflagged ok topic check naming both ids (the vault made the topic again)", dump(recs))
		}
		if ingested(t, tv, first, 0) {
			t.Errorf("a record of the lost topic's id was applied, want it quarantined")
		}
		if !ingested(t, tv, second, 0) {
			t.Errorf("a record of the re-created topic's id was not applied (id not adopted)")
		}
	})

	t.Run("topic of another id is flagged and not adopted", func(t *testing.T) {
		fp := newFakeProducers()
		tv := MustOpenVault(t, withBroker(fp, nil))
		tv.mustCreateTenant(t, "acme")
		tv.mustCreateTenant(t, "globex")
		mine := fp.topicID(topic)
		theirs := fp.recreatedBySomeoneElse(topic)
		calls := len(tv.topics.calls())
		n := tv.audit.Size()
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() = %v, want nil", err)
		}
		recs := tv.recordsSince(t, n)
		if len(recs) != 1 {
			t.Fatalf("EnsureBroker() audited %s, want one tenant.topic_check record", dump(recs))
		}
		rec := recs[0]
		if rec.Action != "tenant.topic_check" || rec.Tenant != "acme" || rec.Principal != "ingest" || rec.Outcome != audit.OutcomeRejected ||
			rec.Resource != "topics/"+topic || rec.Details["topic_id"] != theirs || rec.Details["tenant_topic_id"] != mine {
			t.Errorf("audit record = %s, want tenant.topic_check acme rejected, topic_id %s, tenant_topic_id %s", dump(rec), theirs, mine)
		}
		checkFlag(t, rec, audit.ViolationForeignTopic)
		if got := fp.topicID(topic); got != theirs {
			t.Errorf("topic id on the brokers = %q, want %q (EnsureBroker must not re-create an existing topic)", got, theirs)
		}
		if got := len(tv.topics.calls()) - calls; got != 2 {
			t.Errorf("EnsureBroker() made %d CreateTopic calls, want 2 (one per tenant, idempotent)", got)
		}
		if ingested(t, tv, theirs, 0) {
			t.Errorf("a record of the foreign topic was applied: its id was adopted")
		}
		if !ingested(t, tv, mine, 0) {
			t.Errorf("a record of the vault's topic id was not applied")
		}
		// Every start says so again, until the topic is deleted.
		n = tv.audit.Size()
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() again = %v, want nil", err)
		}
		if recs := topicChecks(t, tv, n); len(recs) != 1 || recs[0].Details["tenant_topic_id"] != mine {
			t.Errorf("EnsureBroker() again audited %s, want one tenant.topic_check record with the recorded id", dump(recs))
		}
	})

	t.Run("producer ACLs of every active tenant", func(t *testing.T) {
		fp := newFakeProducers()
		tv := MustOpenVault(t, withBroker(fp, nil))
		for _, id := range []string{"globex", "acme", "gone"} {
			tv.mustCreateTenant(t, id)
		}
		if _, err := tv.v.Shred(ctx, tv.admin(t), "gone", "gone"); err != nil {
			t.Fatalf("Shred(gone): %v", err)
		}
		calls := len(fp.allowCalls())
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() = %v, want nil", err)
		}
		if got, want := fp.allowCalls()[calls:], []string{"tenant-acme", "tenant-globex"}; !slices.Equal(got, want) {
			t.Errorf("AllowProducer calls = %v, want %v", got, want)
		}
		for _, id := range []string{"acme", "globex"} {
			if got, ok := fp.user("tenant-" + id); !ok || got.Topic != events.TopicFor(events.TenantID(id)) {
				t.Errorf("broker user tenant-%s = %+v, %v, want ACLs on its topic", id, got, ok)
			}
		}
		if _, ok := fp.user("tenant-gone"); ok {
			t.Errorf("the shredded tenant has a broker user")
		}
	})

	t.Run("tenant without credential on the brokers", func(t *testing.T) {
		fp := newFakeProducers()
		tv := MustOpenVault(t, withBroker(fp, nil))
		tv.mustCreateTenant(t, "acme")
		tv.mustCreateTenant(t, "globex")
		fp.dropUser("tenant-acme")
		calls := len(fp.allowCalls())
		if err := tv.v.EnsureBroker(ctx); err != nil {
			t.Fatalf("EnsureBroker() with tenant-acme missing on the brokers = %v, want nil", err)
		}
		if got, want := fp.allowCalls()[calls:], []string{"tenant-acme", "tenant-globex"}; !slices.Equal(got, want) {
			t.Errorf("AllowProducer calls = %v, want %v", got, want)
		}
		if _, ok := fp.user("tenant-acme"); ok {
			t.Errorf("EnsureBroker() gave tenant-acme a credential, want it left to a rotation")
		}
		c, err := tv.v.RotateKafkaCredential(ctx, tv.admin(t), "acme")
		if err != nil {
			t.Fatalf("RotateKafkaCredential(%q) = %v, want nil", "acme", err)
		}
		if got, ok := fp.user("tenant-acme"); !ok || got.Secret != c.Password {
			t.Errorf("broker user tenant-acme after rotate = %+v, %v, want the new password", got, ok)
		}
	})

	t.Run("broker errors fail EnsureBroker", func(t *testing.T) {
		for _, method := range []string{"TopicID", "HasProducer", "AllowProducer"} {
			t.Run(method, func(t *testing.T) {
				fp := newFakeProducers()
				tv := MustOpenVault(t, withBroker(fp, nil))
				tv.mustCreateTenant(t, "acme")
				fail := errors.New("broker down")
				fp.failOn(method, fail)
				if err := tv.v.EnsureBroker(ctx); !errors.Is(err, fail) || !strings.Contains(err.Error(), "acme") {
					t.Errorf("EnsureBroker() with %s failing = %v, want an error wrapping %v naming acme", method, err, fail)
				}
			})
		}
	})
}

func TestIngestForeignTopic(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	mine := fp.topicID(topic)
	theirs := fp.recreatedBySomeoneElse(topic)
	primary := tv.cipher(t, "acme").PrimaryKeyID()
	foreign := topicMessages(t, "acme", theirs, 0, 3)

	t.Run("quarantined and flagged", func(t *testing.T) {
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, foreign); err != nil {
			t.Fatalf("Ingest(foreign topic) = %v, want nil", err)
		}
		rec := tv.onlyRecord(t, n)
		if rec.Action != audit.ActionIngestReject || rec.Principal != "ingest" || rec.Tenant != "acme" || rec.Outcome != audit.OutcomeRejected ||
			rec.Count != len(foreign) || rec.Details["topic_id"] != theirs || rec.Details["tenant_topic_id"] != mine ||
			rec.Details["code"] != events.EFORBIDDEN || rec.Details["first_offset"] != "0" || rec.Details["last_offset"] != "2" ||
			!slices.Equal(rec.KeyIDs, []uint32{primary}) {
			t.Errorf("audit record = %s, want ingest.reject acme of %d records, topic_id %s, tenant_topic_id %s", dump(rec), len(foreign), theirs, mine)
		}
		checkFlag(t, rec, audit.ViolationForeignTopic)
		if b, _ := json.Marshal(rec); strings.Contains(string(b), "specversion") {
			t.Errorf("audit record %s holds the payload", b)
		}
		if got := tv.version(t, acme, "acme"); got != 0 {
			t.Errorf("stream s version = %d, want 0 (nothing applied)", got)
		}
		q := tv.quarantine(t, acme, "acme")
		if len(q) != len(foreign) {
			t.Fatalf("quarantine = %d entries, want %d", len(q), len(foreign))
		}
		for i, e := range q {
			if header(e, "reason") != "topic not created by the vault" || header(e, "code") != events.EFORBIDDEN ||
				e.Offset != foreign[i].Offset || string(e.Value) != string(foreign[i].Value) {
				t.Errorf("quarantine[%d] = offset %d code %q reason %q raw %q, want offset %d, EFORBIDDEN, %q, the record",
					i, e.Offset, header(e, "code"), header(e, "reason"), e.Value, foreign[i].Offset, "topic not created by the vault")
			}
		}
		st := tv.v.Stats()
		if st.EventsApplied.Load() != 0 || st.EventsQuarantined.Load() != int64(len(foreign)) {
			t.Errorf("Stats = applied %d quarantined %d, want 0 %d", st.EventsApplied.Load(), st.EventsQuarantined.Load(), len(foreign))
		}
	})

	t.Run("redelivery", func(t *testing.T) {
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, foreign); err != nil {
			t.Fatalf("Ingest(foreign topic, again) = %v, want nil", err)
		}
		if recs := tv.recordsSince(t, n); len(recs) != 0 {
			t.Errorf("redelivery audited %s, want nothing", dump(recs))
		}
		if q := tv.quarantine(t, acme, "acme"); len(q) != len(foreign) {
			t.Errorf("quarantine after redelivery = %d entries, want %d", len(q), len(foreign))
		}
	})

	t.Run("partial redelivery audits the new records only", func(t *testing.T) {
		more := topicMessages(t, "acme", theirs, 1, 3) // 1, 2 again; 3 new
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, more); err != nil {
			t.Fatalf("Ingest = %v, want nil", err)
		}
		rec := tv.onlyRecord(t, n)
		if rec.Action != audit.ActionIngestReject || rec.Count != 1 {
			t.Errorf("audit record = %s, want ingest.reject of 1 record", dump(rec))
		}
		checkFlag(t, rec, audit.ViolationForeignTopic)
		if q := tv.quarantine(t, acme, "acme"); len(q) != len(foreign)+1 {
			t.Errorf("quarantine = %d entries, want %d", len(q), len(foreign)+1)
		}
	})

	t.Run("the vault's topic at the same offsets is applied", func(t *testing.T) {
		good := topicMessages(t, "acme", mine, 0, 3)
		n := tv.audit.Size()
		if err := tv.v.Ingest(ctx, topic, good); err != nil {
			t.Fatalf("Ingest(vault's topic) = %v, want nil", err)
		}
		recs := tv.recordsSince(t, n)
		if len(recs) != 1 || recs[0].Action != audit.ActionIngestBatch || recs[0].Count != len(good) || recs[0].Flagged {
			t.Errorf("audit records = %s, want one ingest.batch of %d", dump(recs), len(good))
		}
		if got := tv.version(t, acme, "acme"); got != uint64(len(good)) {
			t.Errorf("stream s version = %d, want %d", got, len(good))
		}
		if q := tv.quarantine(t, acme, "acme"); len(q) != len(foreign)+1 {
			t.Errorf("quarantine = %d entries, want %d (unchanged)", len(q), len(foreign)+1)
		}
	})

	t.Run("unknown topic id is not foreign", func(t *testing.T) {
		applied := tv.v.Stats().EventsApplied.Load()
		if err := tv.v.Ingest(ctx, topic, topicMessages(t, "acme", "", 3, 1)); err != nil {
			t.Fatalf("Ingest(no topic id) = %v, want nil", err)
		}
		if got := tv.v.Stats().EventsApplied.Load(); got != applied+1 {
			t.Errorf("Stats().EventsApplied = %d, want %d (a record without a topic id is applied)", got, applied+1)
		}
	})
}

// A tenant made before the brokers authenticated gets its credential by a
// rotation (as EnsureBroker's warning says); from then on it has one.
func TestRotateKafkaCredentialOfTenantWithoutOne(t *testing.T) {
	dir := t.TempDir()
	old := MustOpenVaultAt(t, dir, nil)
	old.mustCreateTenant(t, "acme")
	old.close(t)
	fp := newFakeProducers()
	tv := MustOpenVaultAt(t, dir, withBroker(fp, nil))
	ctx := context.Background()
	c, err := tv.v.RotateKafkaCredential(ctx, tv.admin(t), "acme")
	if err != nil || c.User != "tenant-acme" {
		t.Fatalf("RotateKafkaCredential(%q) = %+v, %v, want user tenant-acme", "acme", c, err)
	}
	list, err := tv.v.ListTenants(ctx, tv.admin(t))
	if err != nil || len(list) != 1 || list[0].Kafka == nil || list[0].Kafka.User != "tenant-acme" {
		t.Errorf("ListTenants() after rotate = %s, %v, want acme with Kafka user tenant-acme", dump(list), err)
	}
}

// A topic the brokers lost is created again by EnsureBroker: it starts at
// offset 0, and its records must be applied, not taken for a redelivery of
// the lost topic's records at the same offsets.
func TestEnsureBrokerRecreatedTopicRecordsApplied(t *testing.T) {
	fp := newFakeProducers()
	tv := MustOpenVault(t, withBroker(fp, nil))
	token := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	if err := tv.v.Ingest(ctx, topic, topicMessages(t, "acme", fp.topicID(topic), 0, 3)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	fp.deleteTopic(topic)
	if err := tv.v.EnsureBroker(ctx); err != nil {
		t.Fatalf("EnsureBroker() = %v", err)
	}
	msgs := topicMessages(t, "acme", fp.topicID(topic), 0, 2)
	msgs[0].Value = event(t, "new-0", "s", `{"x":1}`)
	msgs[1].Value = event(t, "new-1", "s", `{"y":1}`)
	if err := tv.v.Ingest(ctx, topic, msgs); err != nil {
		t.Fatalf("Ingest(re-created topic) = %v", err)
	}
	if got := tv.version(t, token, "acme"); got != 5 {
		t.Errorf("stream s version = %d, want 5 (3 of the lost topic, 2 of the re-created one); skipped %d",
			got, tv.v.Stats().EventsSkipped.Load())
	}
}
