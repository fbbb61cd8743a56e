package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault/agent"
)

func TestOpen(t *testing.T) {
	v, tokens, done := exampleVault()
	defer done()
	ctx := context.Background()
	tests := []struct {
		name, token, code string
	}{
		{"tenant", tokens["globex"], ""},
		{"admin", "admin-token-0123456789abcdef", events.EFORBIDDEN},
		{"unknown", "tv_forged", events.EUNAUTHORIZED},
		{"none", "", events.EUNAUTHORIZED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ac, err := agent.Open(ctx, v, tt.token)
			if got := events.ErrorCode(err); got != tt.code {
				t.Fatalf("Open = %v, want code %q", err, tt.code)
			}
			if err != nil {
				return
			}
			if ac.Tenant() != "globex" {
				t.Fatalf("Tenant() = %q, want globex", ac.Tenant())
			}
			hits, err := ac.Retriever().Search(ctx, agent.Query{Text: "acme refunds take 14 days", K: 10})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hits {
				if !strings.HasPrefix(h.ID, "globex-") {
					t.Errorf("globex's agent got %s", h.ID)
				}
			}
			if len(hits) != 1 {
				t.Errorf("globex's agent got %d hits, want its 1 document", len(hits))
			}
		})
	}
}

// After a shred, the agent's retriever answers EGONE.
func TestRetrieverAfterShred(t *testing.T) {
	v, tokens, done := exampleVault()
	defer done()
	ctx := context.Background()
	ac, err := agent.Open(ctx, v, tokens["acme"])
	if err != nil {
		t.Fatal(err)
	}
	admin, err := v.Authenticate(ctx, "admin-token-0123456789abcdef", "tenant.shred", "tenants/acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Shred(ctx, admin, "acme", "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Retriever().Search(ctx, agent.Query{Text: "refunds"}); events.ErrorCode(err) != events.EGONE {
		t.Fatalf("Search after shred = %v, want %s", err, events.EGONE)
	}
}
