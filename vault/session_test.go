package vault_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault"
)

// checkFlag fails tb unless rec is flagged with violation code want, with
// the reason audit.Classify derives.
func checkFlag(tb testing.TB, rec audit.Record, want string) {
	tb.Helper()
	flagged, code, reason := audit.Classify(rec)
	if want == "" {
		if flagged || rec.Flagged {
			tb.Errorf("record %s is flagged (%s), want unflagged", dump(rec), code)
		}
		return
	}
	if !flagged || code != want || !rec.Flagged || rec.Reason != reason {
		tb.Errorf("record %s: flagged %v, Classify = %v %q %q, want flagged %q", dump(rec), rec.Flagged, flagged, code, reason, want)
	}
}

// seed ingests two events on stream order-1 and one bad record into t.
func seed(tb testing.TB, tv *testVault, t string) {
	tb.Helper()
	topic := events.TopicFor(events.TenantID(t))
	msgs := []vault.Message{
		{Topic: topic, Offset: 0, Key: []byte("order-1"), Value: event(tb, "e-1", "order-1", `{"total":12}`)},
		{Topic: topic, Offset: 1, Key: []byte("order-1"), Value: event(tb, "e-2", "order-1", `{"paid":true}`)},
		{Topic: topic, Offset: 2, Value: []byte("{not json")},
	}
	if err := tv.v.Ingest(context.Background(), topic, msgs); err != nil {
		tb.Fatalf("Ingest: %v", err)
	}
}

func TestSession(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tokens := map[string]string{"admin": testAdminToken}
	for _, id := range []string{"acme", "globex"} {
		tokens[id] = tv.mustCreateTenant(t, id)
	}
	seed(t, tv, "acme")
	ctx := context.Background()

	tests := []struct {
		name       string
		token      string // key of tokens
		tenant     string
		breakGlass string
		wantCode   string
		wantOut    audit.Outcome // outcome of the denial's audit record
		wantFlag   string        // violation code of the denial's audit record
	}{
		{name: "own tenant", token: "acme", tenant: "acme"},
		{name: "own tenant, break-glass header ignored", token: "acme", tenant: "acme", breakGlass: "curious"},
		{name: "other tenant's token", token: "globex", tenant: "acme", wantCode: events.EFORBIDDEN, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationTokenTenant},
		// Refused before existence is looked up: no tenant enumeration.
		{name: "other token on unknown tenant", token: "globex", tenant: "nosuch", wantCode: events.EFORBIDDEN, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationTokenTenant},
		{name: "admin without break-glass", token: "admin", tenant: "acme", wantCode: events.EFORBIDDEN, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationAdminOnTenant},
		{name: "admin with blank break-glass", token: "admin", tenant: "acme", breakGlass: "  \t", wantCode: events.EFORBIDDEN, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationAdminOnTenant},
		{name: "admin with break-glass", token: "admin", tenant: "acme", breakGlass: "ticket 42"},
		{name: "admin with too long break-glass", token: "admin", tenant: "acme", breakGlass: strings.Repeat("x", vault.MaxBreakGlassLen+1), wantCode: events.EINVALID, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationBreakGlass},
		{name: "admin break-glass on unknown tenant", token: "admin", tenant: "nosuch", breakGlass: "ticket 42", wantCode: events.ENOTFOUND, wantOut: audit.OutcomeDenied, wantFlag: audit.ViolationBreakGlass},
		{name: "invalid tenant id", token: "acme", tenant: "../acme", wantCode: events.EINVALID, wantOut: audit.OutcomeRejected, wantFlag: "*"},
		{name: "invalid tenant id, admin", token: "admin", tenant: "ACME", breakGlass: "ticket 42", wantCode: events.EINVALID, wantOut: audit.OutcomeRejected, wantFlag: "*"},
		{name: "empty tenant id", token: "acme", tenant: "", wantCode: events.EINVALID, wantOut: audit.OutcomeRejected, wantFlag: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tv.mustAuth(t, tokens[tt.token])
			n := tv.audit.Size()
			a := vault.Access{Tenant: tt.tenant, Action: audit.ActionStreamList, Resource: "streams", BreakGlass: tt.breakGlass}
			s, err := tv.v.Session(ctx, p, a)
			if codeOf(err) != tt.wantCode {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Session(%q) = %v, want code %q", tt.tenant, err, tt.wantCode)
			}
			if tt.wantCode != "" {
				if s != nil {
					t.Errorf("Session(%q) returned a session with error %v", tt.tenant, err)
				}
				rec := tv.onlyRecord(t, n)
				if string(rec.Principal) != p.String() || rec.Action != audit.ActionStreamList || rec.Outcome != tt.wantOut || rec.Tenant != audit.NormalizeTenant(tt.tenant) {
					t.Errorf("audit record = %s, want %s %s %s on %q", dump(rec), p, audit.ActionStreamList, tt.wantOut, tt.tenant)
				}
				if tt.wantFlag != "*" { // "*": whatever Classify says
					checkFlag(t, rec, tt.wantFlag)
				} else if ok := audit.CheckFlag(rec); !ok {
					t.Errorf("audit record %s: flag differs from Classify", dump(rec))
				}
				return
			}
			defer s.Close()
			if s.Tenant() != events.TenantID(tt.tenant) {
				t.Errorf("Session(%q).Tenant() = %q", tt.tenant, s.Tenant())
			}
			if recs := tv.recordsSince(t, n); len(recs) != 0 {
				t.Errorf("Session(%q) wrote %s, want no record before a read", tt.tenant, dump(recs))
			}
			list, _, err := s.Streams(ctx, "", 10)
			if err != nil || len(list) != 1 || list[0].Stream != "order-1" {
				t.Errorf("Streams() = %v, %v, want [order-1]", list, err)
			}
		})
	}
}

// Every read an admin makes with break-glass is flagged and carries the
// reason; a tenant's own reads are not flagged.
func TestSessionReadsAudited(t *testing.T) {
	tv := MustOpenVault(t, nil)
	acme := tv.mustCreateTenant(t, "acme")
	seed(t, tv, "acme")
	ctx := context.Background()
	primary := tv.cipher(t, "acme").PrimaryKeyID()

	reads := []struct {
		action audit.Action
		count  int
		read   func(*vault.Session) error
	}{
		{audit.ActionStreamRead, 1, func(s *vault.Session) error {
			st, err := s.State(ctx, "order-1")
			if err == nil && (st.Version != 2 || string(st.Data) != `{"total":12,"paid":true}`) {
				err = fmt.Errorf("state = %+v, want version 2", st)
			}
			return err
		}},
		{audit.ActionEventsRead, 2, func(s *vault.Session) error {
			evs, err := s.History(ctx, "order-1", 0, 10)
			if err == nil && len(evs) != 2 {
				err = fmt.Errorf("history has %d events, want 2", len(evs))
			}
			return err
		}},
		{audit.ActionStreamList, 1, func(s *vault.Session) error {
			_, _, err := s.Streams(ctx, "", 10)
			return err
		}},
		{audit.ActionQuarantineRead, 1, func(s *vault.Session) error {
			_, _, err := s.Quarantine(ctx, "", 10)
			return err
		}},
	}
	principals := []struct {
		name       string
		token      string
		breakGlass string
		wantFlag   string
	}{
		{"tenant", acme, "", ""},
		{"admin break-glass", testAdminToken, "incident 7", audit.ViolationBreakGlass},
	}
	for _, pr := range principals {
		for _, r := range reads {
			t.Run(pr.name+"/"+string(r.action), func(t *testing.T) {
				p := tv.mustAuth(t, pr.token)
				s, err := tv.v.Session(ctx, p, vault.Access{Tenant: "acme", Action: r.action, Resource: "x", BreakGlass: pr.breakGlass})
				if err != nil {
					t.Fatalf("Session(%q) = %v, want nil", "acme", err)
				}
				defer s.Close()
				n := tv.audit.Size()
				reads := tv.v.Stats().Reads.Load()
				if err := r.read(s); err != nil {
					t.Fatalf("%s: %v", r.action, err)
				}
				rec := tv.onlyRecord(t, n)
				if string(rec.Principal) != p.String() || rec.Tenant != "acme" || rec.Action != r.action || rec.Outcome != audit.OutcomeOK || rec.Count != r.count {
					t.Errorf("audit record = %s, want %s acme %s ok count %d", dump(rec), p, r.action, r.count)
				}
				if !slices.Equal(rec.KeyIDs, []uint32{primary}) {
					t.Errorf("audit record key ids = %v, want [%d]", rec.KeyIDs, primary)
				}
				checkFlag(t, rec, pr.wantFlag)
				if got := rec.Details[audit.DetailBreakGlass]; got != pr.breakGlass {
					t.Errorf("audit record break-glass = %q, want %q", got, pr.breakGlass)
				}
				if strings.Contains(rec.Resource, "order-1") {
					t.Errorf("audit record resource %q names the stream in clear", rec.Resource)
				}
				if got := tv.v.Stats().Reads.Load(); got != reads+1 {
					t.Errorf("Stats().Reads = %d, want %d", got, reads+1)
				}
			})
		}
	}
}

func TestSessionNotFound(t *testing.T) {
	tv := MustOpenVault(t, nil)
	s := tv.mustSession(t, tv.mustCreateTenant(t, "acme"), "acme")
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		read func() error
	}{
		{"State", func() error { _, err := s.State(ctx, "nope"); return err }},
		{"History", func() error { _, err := s.History(ctx, "nope", 0, 10); return err }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := tv.audit.Size()
			if err := tt.read(); codeOf(err) != events.ENOTFOUND {
				t.Fatalf("%s(%q) = %v, want code %q", tt.name, "nope", err, events.ENOTFOUND)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Outcome != audit.OutcomeError || rec.Reason != "not found" || rec.Flagged {
				t.Errorf("audit record = %s, want error \"not found\", unflagged", dump(rec))
			}
		})
	}
}

// A session is opened only for an action that reads tenant data: under any
// other, the boundary check would not flag an admin's break-glass access, so
// the request is refused as the caller's bug, with no session and no record.
func TestSessionRefusesActionsNotOnTenantData(t *testing.T) {
	tv := MustOpenVault(t, nil)
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	for _, action := range []audit.Action{"", audit.ActionTenantList, audit.ActionKeysRead, audit.ActionAuditRead, "stream.write"} {
		for _, token := range []string{acme, testAdminToken} {
			p := tv.mustAuth(t, token)
			n := tv.audit.Size()
			s, err := tv.v.Session(ctx, p, vault.Access{Tenant: "acme", Action: action, Resource: "streams", BreakGlass: "incident 7"})
			if codeOf(err) != events.EINTERNAL || s != nil {
				if s != nil {
					s.Close()
				}
				t.Errorf("Session(%s, action %q) = %v, want code %q and no session", p, action, err, events.EINTERNAL)
			}
			if got := tv.audit.Size(); got != n {
				t.Errorf("Session(%s, action %q) appended %d audit records, want none", p, action, got-n)
			}
		}
	}
	for _, action := range audit.TenantDataActions() {
		s, err := tv.v.Session(ctx, tv.mustAuth(t, acme), vault.Access{Tenant: "acme", Action: action, Resource: "streams"})
		if err != nil {
			t.Fatalf("Session(action %q) = %v, want a session", action, err)
		}
		s.Close()
	}
}

// A value sealed under tenant B's key found in tenant A's store is refused
// and flagged, naming B as the key's owner.
func TestSessionForeignCiphertext(t *testing.T) {
	tv := MustOpenVault(t, nil)
	acme := tv.mustCreateTenant(t, "acme")
	tv.mustCreateTenant(t, "globex")
	ctx := context.Background()
	globex := tv.cipher(t, "globex")

	st, release, err := tv.stores.Acquire("acme")
	if err != nil {
		t.Fatalf("Acquire(acme): %v", err)
	}
	ev, err := events.Decode(event(t, "e-1", "order-1", `{"x":1}`), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	topic := events.TopicFor("acme")
	res, err := st.Apply(globex, []projections.Record{
		{Topic: topic, Offset: 0, Event: &ev},
		{Topic: topic, Offset: 1, Reject: &projections.Rejection{Code: events.EINVALID, Reason: "planted", Raw: []byte("x")}},
	})
	release()
	if err != nil || res.Applied != 1 || res.Quarantined != 1 {
		t.Fatalf("Apply(globex cipher, acme store) = %+v, %v", res, err)
	}

	s := tv.mustSession(t, acme, "acme")
	for _, tt := range []struct {
		action audit.Action
		read   func() error
	}{
		{audit.ActionStreamList, func() error { _, _, err := s.Streams(ctx, "", 10); return err }},
		{audit.ActionQuarantineRead, func() error { _, _, err := s.Quarantine(ctx, "", 10); return err }},
	} {
		t.Run(string(tt.action), func(t *testing.T) {
			n := tv.audit.Size()
			err := tt.read()
			if codeOf(err) != events.EFORBIDDEN {
				t.Fatalf("%s = %v, want code %q", tt.action, err, events.EFORBIDDEN)
			}
			var fk vault.ForeignKey
			if errors.As(err, &fk) {
				t.Errorf("%s error %v exposes the foreign key id to the caller", tt.action, err)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Principal != "tenant:acme" || rec.Tenant != "acme" || rec.Action != tt.action || rec.Outcome != audit.OutcomeDenied || rec.Count != 0 {
				t.Errorf("audit record = %s, want tenant:acme acme %s denied count 0", dump(rec), tt.action)
			}
			if got := rec.Details[audit.DetailKeyOwner]; got != "globex" {
				t.Errorf("audit record key_owner = %q, want %q", got, "globex")
			}
			if got, want := rec.Details["key_id"], fmt.Sprint(globex.PrimaryKeyID()); got != want {
				t.Errorf("audit record key_id = %q, want %q", got, want)
			}
			checkFlag(t, rec, audit.ViolationForeignKey)
		})
	}
}

// A cursor the vault did not hand out is bad input: refused with
// EINVALID and audited as a rejection with its reason code, not as an
// internal error, and never with the cursor itself.
func TestSessionInvalidCursor(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tok := tv.mustCreateTenant(t, "acme")
	s := tv.mustSession(t, tok, "acme")
	ctx := context.Background()
	const marker = "zz-MARKER-cursor"
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"streams", func() error { _, _, err := s.Streams(ctx, marker, 10); return err }},
		{"quarantine", func() error { _, _, err := s.Quarantine(ctx, marker, 10); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tv.audit.Size()
			err := tc.do()
			if events.ErrorCode(err) != events.EINVALID {
				t.Fatalf("%s(cursor %q) = %v, want code %s", tc.name, marker, err, events.EINVALID)
			}
			rec := tv.onlyRecord(t, n)
			if rec.Outcome != audit.OutcomeRejected || rec.Reason != events.ReasonCursorInvalid {
				t.Errorf("audit record = %s, want outcome %s, reason %s", dump(rec), audit.OutcomeRejected, events.ReasonCursorInvalid)
			}
			if strings.Contains(dump(rec), marker) {
				t.Errorf("audit record %s holds the cursor", dump(rec))
			}
		})
	}
}
