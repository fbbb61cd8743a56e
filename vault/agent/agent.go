package agent

import (
	"context"
	"fmt"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// Query is a search of the Context's tenant's documents (vault.SearchRequest):
// Text (embedded by the vault's embedder) or Vector, K results at most,
// and a Filter on the documents' attributes.
type Query = vault.SearchRequest

// Hit is a document found: id, score, text and attributes.
type Hit = vault.Hit

// Retriever searches one tenant's documents. Its implementation here
// takes no tenant: it is bound to the Context's.
type Retriever interface {
	Search(ctx context.Context, q Query) ([]Hit, error)
}

// Vault is what a Context needs of the vault: *vault.Vault satisfies it.
type Vault interface {
	Authenticate(ctx context.Context, token string, action audit.Action, resource string) (vault.Principal, error)
	Session(ctx context.Context, p vault.Principal, a vault.Access) (*vault.Session, error)
}

var _ Vault = (*vault.Vault)(nil)

// Context is an agent's view of one tenant: its name and its retriever.
type Context struct {
	tenant    events.TenantID
	retriever *retriever
}

// Open authenticates token (audited as a search credential; an unknown
// token is EUNAUTHORIZED) and returns the Context of its tenant. The
// admin credential is refused (EFORBIDDEN): an agent works for one tenant.
func Open(ctx context.Context, v Vault, token string) (*Context, error) {
	p, err := v.Authenticate(ctx, token, audit.ActionSearch, "agent")
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return FromPrincipal(v, p)
}

// FromPrincipal returns the Context of an authenticated tenant principal
// (the admin's is refused, EFORBIDDEN).
func FromPrincipal(v Vault, p vault.Principal) (*Context, error) {
	if p.IsAdmin() || p.Tenant() == "" {
		return nil, events.Errorf(events.EFORBIDDEN, "agent: an agent context is made from a tenant's credential, not the admin's")
	}
	return &Context{tenant: p.Tenant(), retriever: &retriever{v: v, p: p}}, nil
}

// Tenant is the name of the Context's tenant.
func (c *Context) Tenant() string { return string(c.tenant) }

// Retriever returns the Context's tenant's retriever.
func (c *Context) Retriever() Retriever { return c.retriever }

// retriever searches the tenant of its principal through a session.
type retriever struct {
	v Vault
	p vault.Principal
}

var _ Retriever = (*retriever)(nil)

// Search opens a session of the principal's own tenant, searches, and
// closes it.
func (r *retriever) Search(ctx context.Context, q Query) ([]Hit, error) {
	s, err := r.v.Session(ctx, r.p, vault.Access{Tenant: string(r.p.Tenant()), Action: audit.ActionSearch, Resource: "search"})
	if err != nil {
		return nil, fmt.Errorf("agent search: %w", err)
	}
	defer s.Close()
	hits, err := s.Search(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("agent search: %w", err)
	}
	return hits, nil
}
