package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		want string
	}{
		{"own tenant", Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead}, ""},
		{"token of another tenant", Record{Principal: "tenant:acme", Tenant: "globex", Action: ActionStreamRead}, ViolationTokenTenant},
		{"foreign key", Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Details: map[string]string{DetailKeyOwner: "globex"}}, ViolationForeignKey},
		{"own key", Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Details: map[string]string{DetailKeyOwner: "acme"}}, ""},
		{"event names another tenant", Record{Principal: "ingest", Tenant: "acme", Action: ActionIngestReject, Details: map[string]string{DetailEventTenant: "globex"}}, ViolationEventTenant},
		{"event names its own tenant", Record{Principal: "ingest", Tenant: "acme", Action: ActionIngestReject, Details: map[string]string{DetailEventTenant: "acme"}}, ""},
		{"foreign topic", Record{Principal: "ingest", Tenant: "acme", Action: ActionIngestReject, Details: map[string]string{DetailTopicID: "aa", DetailTenantTopicID: "bb"}}, ViolationForeignTopic},
		{"the vault's topic", Record{Principal: "ingest", Tenant: "acme", Action: ActionIngestBatch, Details: map[string]string{DetailTopicID: "aa", DetailTenantTopicID: "aa"}}, ""},
		{"admin on tenant data", Record{Principal: "admin", Tenant: "acme", Action: ActionEventsRead}, ViolationAdminOnTenant},
		{"break-glass", Record{Principal: "admin", Tenant: "acme", Action: ActionQuarantineRead, Details: map[string]string{DetailBreakGlass: "INC-1"}}, ViolationBreakGlass},
		{"admin managing tenants", Record{Principal: "admin", Tenant: "acme", Action: ActionTenantCreate}, ""},
		{"shredded", Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Details: map[string]string{DetailTenantState: "shredded"}}, ViolationShredded},
		{"anonymous", Record{Principal: "anonymous", Action: ActionStreamRead, Outcome: OutcomeDenied, Reason: "missing credential"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flagged, code, reason := Classify(tt.r)
			if code != tt.want || flagged != (tt.want != "") || (flagged && reason == "") {
				t.Fatalf("Classify(%+v) = %v, %q, %q, want code %q", tt.r, flagged, code, reason, tt.want)
			}
			r := tt.r
			Flag(&r)
			if !CheckFlag(r) {
				t.Fatalf("CheckFlag(Flag(%+v)) = false", tt.r)
			}
			r.Flagged = !r.Flagged
			if CheckFlag(r) {
				t.Fatalf("CheckFlag accepted a flipped flag on %+v", r)
			}
		})
	}
}

// TestReplayRederivesFlags writes a log through Flag, as the vault does,
// plus one record whose flag was set by hand, and replays it: every record
// replays with the flag its raw fields derive, except the hand-set one.
func TestReplayRederivesFlags(t *testing.T) {
	for _, forged := range []bool{false, true} {
		s, vkey := testKey(t, "tenantvault/test")
		dir := t.TempDir()
		l := MustOpenLog(t, func(o *Options) { o.Dir = dir }, withSigner(s, vkey))
		ctx := context.Background()
		raw := []Record{
			{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Outcome: OutcomeOK},
			{Principal: "tenant:acme", Tenant: "globex", Action: ActionStreamRead, Outcome: OutcomeDenied},
			{Principal: "ingest", Tenant: "acme", Action: ActionIngestReject, Outcome: OutcomeRejected, Details: map[string]string{DetailEventTenant: "globex"}},
			{Principal: "admin", Tenant: "acme", Action: ActionStreamList, Outcome: OutcomeOK, Details: map[string]string{DetailBreakGlass: "INC-7"}},
		}
		for _, r := range raw {
			Flag(&r)
			if _, err := l.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if forged {
			if _, err := l.Append(ctx, Record{Principal: "tenant:acme", Tenant: "acme", Action: ActionStreamRead, Outcome: OutcomeOK, Flagged: true, Reason: "made up"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, err := os.ReadFile(filepath.Join(dir, "checkpoints", "latest"))
		if err != nil {
			t.Fatal(err)
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
		sort.Strings(segs)
		var export bytes.Buffer
		for _, f := range segs {
			b, _ := os.ReadFile(f)
			export.Write(b)
		}
		var flags []bool
		rep, err := ReplayExport(ctx, &export, cp, vkey, func(r Record) error {
			flags = append(flags, r.Flagged)
			return nil
		})
		var inc *InconsistentError
		switch {
		case forged && (!errors.As(err, &inc) || inc.At != 4):
			t.Fatalf("ReplayExport(log with a hand-set flag) = %v, want *InconsistentError at 4", err)
		case !forged && err != nil:
			t.Fatalf("ReplayExport = %v (report %+v)", err, rep)
		}
		if want := []bool{false, true, true, true}; !slices.Equal(flags[:4], want) {
			t.Fatalf("replayed flags = %v, want %v", flags, want)
		}
	}
}
