package httpapi

import (
	"context"
	"net/http"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
)

// ClusterStatus is what GET /v1/cluster answers: this node, the nodes of
// the cluster, and the node that holds each tenant now ("" while none
// does).
type ClusterStatus struct {
	Node    string              `json:"node"`
	Nodes   []ClusterNodeStatus `json:"nodes"`
	Tenants []TenantOwnerStatus `json:"tenants"`
}

// ClusterNodeStatus is one node of the cluster.
type ClusterNodeStatus struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// TenantOwnerStatus is the node holding a tenant.
type TenantOwnerStatus struct {
	ID    string `json:"id"`
	Owner string `json:"owner"`
}

// ClusterStatusFunc reports the cluster's state (Options.ClusterStatus).
type ClusterStatusFunc func(ctx context.Context) (ClusterStatus, error)

// getCluster answers the cluster's state to the admin; on one node, 404.
func (h *Handler) getCluster(w http.ResponseWriter, r *http.Request) {
	const action = audit.ActionClusterStatus
	p, ok := h.auth(w, r, action, "cluster")
	if !ok {
		return
	}
	if err := h.v.RequireAdmin(r.Context(), p, action, "cluster"); err != nil {
		h.fail(w, r, err)
		return
	}
	if h.cluster == nil {
		h.fail(w, r, events.Errorf(events.ENOTFOUND, "this vaultd is one node, not a node of a cluster (--node-id)"))
		return
	}
	st, err := h.cluster(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
