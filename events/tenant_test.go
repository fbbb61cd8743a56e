package events_test

import (
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

func TestParseTenantID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"acme", true},
		{"a1", true},
		{"0-tenant-9", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"a", false},
		{"-acme", false},
		{"Acme", false},
		{"../x", false},
		{"a/b", false},
		{"a.b", false},
		{"a_b", false},
		{"acmé", false},
		{"ａｃｍｅ", false},
		{"acme\x00", false},
		{"acme ", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := events.ParseTenantID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseTenantID(%q) = %q, %v, want ok=%v", tt.in, got, err, tt.ok)
			}
			if err != nil && events.ErrorCode(err) != events.EINVALID {
				t.Fatalf("ParseTenantID(%q) code = %q, want %q", tt.in, events.ErrorCode(err), events.EINVALID)
			}
			if err == nil && got.String() != tt.in {
				t.Fatalf("ParseTenantID(%q) = %q", tt.in, got)
			}
		})
	}
}

func TestTopics(t *testing.T) {
	if got := events.TopicFor("acme"); got != "tenant.acme.events" {
		t.Fatalf("TopicFor(acme) = %q", got)
	}
	tests := []struct {
		topic string
		want  events.TenantID
		ok    bool
	}{
		{"tenant.acme.events", "acme", true},
		{"tenant.a.b.events", "", false},
		{"tenant..events", "", false},
		{"tenant.ACME.events", "", false},
		{"tenants.acme.events", "", false},
		{"tenant.acme.event", "", false},
		{"vault.alerts", "", false},
	}
	for _, tt := range tests {
		got, err := events.TenantFromTopic(tt.topic)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("TenantFromTopic(%q) = %q, %v, want %q ok=%v", tt.topic, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseTenantID(f *testing.F) {
	for _, s := range []string{"acme", "../x", "A", "", "ａ", strings.Repeat("z", 64), "a-", "-a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := events.ParseTenantID(s)
		if err != nil {
			return
		}
		// Anything accepted must be safe as a path element and topic part.
		if len(id) < 2 || len(id) > events.MaxTenantIDLen || strings.ContainsAny(string(id), "./\\ \x00") || id[0] == '-' {
			t.Fatalf("ParseTenantID(%q) accepted an unsafe id", s)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Fatalf("ParseTenantID(%q) accepted rune %q", s, r)
			}
		}
		back, err := events.TenantFromTopic(events.TopicFor(id))
		if err != nil || back != id {
			t.Fatalf("TenantFromTopic(TopicFor(%q)) = %q, %v", id, back, err)
		}
	})
}

func TestCheckNodeID(t *testing.T) {
	for _, id := range []string{"a", "vault-0", "n1", "0", strings.Repeat("a", 63)} {
		if err := events.CheckNodeID(id); err != nil {
			t.Errorf("CheckNodeID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", "A", "a/b", "a.b", "../x", "a b", "é", strings.Repeat("a", 64)} {
		if events.CheckNodeID(id) == nil {
			t.Errorf("CheckNodeID(%q) = nil", id)
		}
	}
}
