// Package agent is what an AI agent is handed to retrieve a tenant's
// documents: a Context made from a validated credential, holding that
// tenant's name and a Retriever of that tenant's documents, and nothing
// else — the shape of the seed's executeAgentTask wrapper:
//
//	ac, err := agent.Open(ctx, v, token) // the tenant's credential, authenticated and audited
//	hits, err := ac.Retriever().Search(ctx, agent.Query{Text: question, K: 5})
//
// The Retriever has no tenant parameter: every search goes through a
// vault.Session of the Context's tenant, opened per search (so a shred, or
// the store's eviction, is never held up by an agent), audited (action
// search) and refused after a shred (EGONE). There is no way to reach
// another tenant's index, a store, a cipher or the admin's powers from a
// Context: the admin credential is refused.
//
// It imports only events, audit and vault.
package agent
