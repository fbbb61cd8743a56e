package vault

import (
	"context"
	"maps"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// Hop names the nodes of a cluster a request met: Node is the node
// serving it (this vault), Via the node that forwarded it here ("" when it
// came from the client). Both are node ids, valid as ValidNodeID says.
type Hop struct {
	Node string
	Via  string
}

type hopKey struct{}

// WithHop returns ctx carrying h: every audit record the vault writes for
// a request made with it names the nodes (audit.DetailNode,
// audit.DetailViaNode), whatever the operation. Fields that are not valid
// node ids are left out; a zero Hop changes nothing.
func WithHop(ctx context.Context, h Hop) context.Context {
	if !ValidNodeID(h.Node) {
		h.Node = ""
	}
	if !ValidNodeID(h.Via) {
		h.Via = ""
	}
	if h == (Hop{}) {
		return ctx
	}
	return context.WithValue(ctx, hopKey{}, h)
}

// hopOf returns the Hop ctx carries, or the zero Hop.
func hopOf(ctx context.Context) Hop {
	h, _ := ctx.Value(hopKey{}).(Hop)
	return h
}

// ValidNodeID reports whether s is a node id (events.CheckNodeID: a DNS
// label), so that it is safe in an audit record and a header.
func ValidNodeID(s string) bool { return events.CheckNodeID(s) == nil }

// addHop adds the nodes of h to rec's details.
func addHop(rec *audit.Record, h Hop) {
	if h == (Hop{}) {
		return
	}
	rec.Details = maps.Clone(rec.Details) // the caller's map may be shared
	if rec.Details == nil {
		rec.Details = map[string]string{}
	}
	if h.Node != "" {
		rec.Details[audit.DetailNode] = h.Node
	}
	if h.Via != "" {
		rec.Details[audit.DetailViaNode] = h.Via
	}
}

// ForwardFailure is a request this node could not forward to the node
// owning its tenant.
type ForwardFailure struct {
	Source   string          // the client's address, as for AuthenticateFrom
	Tenant   events.TenantID // the request's tenant (validated)
	Resource string          // the audit resource of the request ("streams", ...)
	Node     string          // this node
	Owner    string          // the owner node it was to go to
	Reason   string          // why, without request data ("owner unreachable")
}

// ForwardFailed audits f (audit.ActionRequestForward, outcome error; the
// request was not authenticated here) aggregated per source as failed
// authentications are — anyone can cause one — and returns the audit
// failure, if any.
func (v *Vault) ForwardFailed(ctx context.Context, f ForwardFailure) error {
	if f.Source == "" {
		f.Source = "unknown"
	}
	rec := audit.Record{Principal: audit.PrincipalAnonymous, Tenant: string(f.Tenant), Action: audit.ActionRequestForward,
		Resource: f.Resource, Outcome: audit.OutcomeError, Reason: f.Reason, Details: map[string]string{}}
	if ValidNodeID(f.Node) {
		rec.Details[audit.DetailNode] = f.Node
	}
	if ValidNodeID(f.Owner) {
		rec.Details[audit.DetailOwnerNode] = f.Owner
	}
	return v.agg.record(context.WithoutCancel(ctx), f.Source, rec)
}
