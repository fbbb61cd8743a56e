package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// Several vaultd nodes on one Kafka cluster: each node owns some tenants
// (their keysets, stores and registry entries are on its disk alone), and
// any node answers any request. A request for a tenant another node owns
// is proxied to the owner — not redirected: Go's HTTP client, like many,
// drops Authorization on a redirect to another host — and the owner checks
// the credential itself. The forwarding node authenticates nothing and
// reads nothing of the tenant.
//
// Which requests are routed (Options.Router asked for the owner of the
// path's tenant), and why:
//
//	route                                             | where   | why
//	--------------------------------------------------+---------+---------------------------------------------
//	GET    /v1/tenants/{tenant}/streams               | owner   | reads the tenant's store
//	GET    /v1/tenants/{tenant}/streams/{stream}      | owner   | reads the tenant's store
//	GET    /v1/tenants/{tenant}/streams/{stream}/events | owner | reads the tenant's store
//	GET    /v1/tenants/{tenant}/quarantine            | owner   | reads the tenant's store
//	POST   /v1/tenants/{tenant}/search                | owner   | reads the tenant's vector index (its store)
//	GET    /v1/tenants/{tenant}/keys                  | owner   | the tenant's keyset (and, ?usage, its store)
//	POST   /v1/tenants/{tenant}/keys/rotate           | owner   | writes the keyset (a rewrap writes the store)
//	POST   /v1/tenants/{tenant}/keys/{id}/disable     | owner   | writes the keyset
//	POST   /v1/tenants/{tenant}/keys/{id}/destroy     | owner   | writes the keyset
//	POST   /v1/tenants/{tenant}/kafka-credential/rotate | owner | the owner's registry entry of the tenant
//	POST   /v1/tenants, GET /v1/tenants               | local   | this node's registry (admin)
//	DELETE /v1/tenants/{tenant}                       | local   | shred: a cluster's shred is its own part
//	GET    /v1/tenants/{tenant}/export                | local   | the move protocol addresses nodes itself:
//	POST   /v1/tenants/{tenant}/export/thaw           | local   |   "moved" proxied to the new owner would
//	POST   /v1/tenants/{tenant}/moved                 | local   |   end the tenant at its destination
//	POST   /v1/tenants/import, GET /v1/import-key     | local   | this node's import key and registry
//	/v1/audit..., /v1/alerts, /v1/master-key/rotate   | local   | this node's own audit log and master key
//	/healthz, /readyz, /metrics, /openapi.json        | local   | this node
//
// The path's tenant id is validated before the Router is asked: a request
// naming an invalid id is served here, refused and audited as on a single
// node, and never reaches the Router or another node.
//
// The loop guard: a forwarded request carries ForwardedByHeader (the
// forwarding node's id) and is never forwarded again; if the node it
// reaches does not own the tenant either, it answers 503 tenant_moving. A
// client may set the header itself: that only keeps its request from being
// forwarded (a 503 on any node but the owner), and on the owner it only
// names a via_node in the audit record. It changes no authorization: the
// owner checks the request's credential as for any request. A header
// value that is not a node id is not recorded.
//
// Audit: the owner's records of a forwarded request name the node it came
// through (audit.DetailViaNode) and, with Options.NodeID, the owner
// (audit.DetailNode). The forwarding node writes no record of its own for
// a forwarded request, but one (audit.ActionRequestForward, aggregated per
// client address) when it could not reach the owner.
var routedRoutes = map[string]string{ // pattern → audit resource of a failed forward
	"GET /v1/tenants/{tenant}/streams":                  "streams",
	"GET /v1/tenants/{tenant}/streams/{stream}":         "streams",
	"GET /v1/tenants/{tenant}/streams/{stream}/events":  "streams",
	"GET /v1/tenants/{tenant}/quarantine":               "quarantine",
	"POST /v1/tenants/{tenant}/search":                  "search",
	"GET /v1/tenants/{tenant}/keys":                     "keys",
	"POST /v1/tenants/{tenant}/keys/rotate":             "keys",
	"POST /v1/tenants/{tenant}/keys/{id}/disable":       "keys",
	"POST /v1/tenants/{tenant}/keys/{id}/destroy":       "keys",
	"POST /v1/tenants/{tenant}/kafka-credential/rotate": "kafka-credential",
}

// RoutedRoutes lists the patterns of the endpoints a cluster node proxies
// to the owner of the path's tenant (see Options.Router); every other
// endpoint is served by the node the request reaches.
func RoutedRoutes() []string {
	var out []string
	for _, p := range Routes() {
		if _, ok := routedRoutes[p]; ok {
			out = append(out, p)
		}
	}
	return out
}

// ForwardedByHeader names the node that forwarded a request to the owner
// of its tenant. A request carrying it is never forwarded again.
const ForwardedByHeader = "X-Tenantvault-Forwarded-By"

// RetryAfterMoving is the Retry-After, in seconds, of a 503 tenant_moving.
const RetryAfterMoving = 1

// Router names the node of the cluster that owns a tenant. It is asked for
// every routed request (see RoutedRoutes), so it answers from memory (a
// consumer group's current assignment, a static map).
type Router interface {
	// Owner returns the node owning t, or ErrOwnerUnknown (possibly
	// wrapped) while t has no owner (it is moving between nodes). Any
	// other error is answered as ErrOwnerUnknown is, and logged.
	Owner(ctx context.Context, t events.TenantID) (Owner, error)
}

// Owner is the node owning a tenant.
type Owner struct {
	Node  string // the node's id (vault.ValidNodeID)
	Addr  string // base URL of its API: http(s)://host:port
	Local bool   // the owner is this node: the request is served here
}

// ErrOwnerUnknown is the Router's answer for a tenant that has no owner
// right now (being moved or reassigned): the request is answered 503 with
// Retry-After and the reason tenant_moving.
var ErrOwnerUnknown = events.Reasonf(events.EUNAVAILABLE, events.ReasonTenantMoving, "the tenant is moving between nodes: retry later")

// Defaults of the forwarding transport (Options.ForwardTransport).
const (
	DefaultForwardDialTimeout     = 5 * time.Second
	DefaultForwardResponseTimeout = 30 * time.Second
)

// NewForwardTransport returns the transport a node forwards requests with
// unless Options.ForwardTransport is set: bounded dial, TLS handshake and
// response-header waits, kept-alive connections to the other nodes, and
// no proxy from the environment (nodes talk to each other directly).
func NewForwardTransport() *http.Transport {
	d := &net.Dialer{Timeout: DefaultForwardDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   DefaultForwardDialTimeout,
		ResponseHeaderTimeout: DefaultForwardResponseTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// routed serves a routed endpoint: here when this node owns the path's
// tenant (or the id is invalid: refused here), else forwarded to its owner.
func (h *Handler) routed(resource string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, err := events.ParseTenantID(r.PathValue("tenant"))
		if err != nil {
			next(w, r) // refused and audited here, as on a single node
			return
		}
		vias := r.Header.Values(ForwardedByHeader)
		owner, err := h.router.Owner(r.Context(), t)
		if err != nil {
			if !errors.Is(err, ErrOwnerUnknown) {
				h.log.Error("route request", "tenant", t, "err", err)
			}
			h.moving(w, r)
			return
		}
		if owner.Local {
			hop := vault.Hop{Node: h.nodeID}
			if len(vias) > 0 {
				hop.Via = vias[0] // dropped by WithHop unless a node id
			}
			next(w, r.WithContext(vault.WithHop(r.Context(), hop)))
			return
		}
		if len(vias) > 0 {
			h.moving(w, r) // forwarded once already: never again
			return
		}
		target, err := ownerURL(owner)
		if err != nil {
			h.log.Error("route request", "tenant", t, "owner_node", owner.Node, "err", err)
			h.moving(w, r)
			return
		}
		h.forward(w, r, t, owner, target, resource)
	}
}

// ownerURL parses o.Addr: a base URL http(s)://host[:port] without user,
// query or fragment.
func ownerURL(o Owner) (*url.URL, error) {
	u, err := url.Parse(o.Addr)
	switch {
	case err != nil:
		return nil, errors.New("owner address is not a URL")
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.User != nil, u.RawQuery != "", u.Fragment != "",
		u.Path != "" && u.Path != "/":
		return nil, errors.New("owner address is not a base URL http(s)://host:port")
	}
	u.Path = ""
	return u, nil
}

// moving answers 503 tenant_moving with Retry-After.
func (h *Handler) moving(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterMoving))
	writeError(w, ErrOwnerUnknown)
}

// forward proxies r to the owner of tenant t at target. The body is read
// first (it is at most MaxBodyBytes): one over the limit is sent as its
// first MaxBodyBytes+1 bytes, so that the owner refuses it as it refuses
// one sent to it directly — after the credential and the tenant boundary
// are checked, audited.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, t events.TenantID, owner Owner, target *url.URL, resource string) {
	src := clientIP(r)
	if limited, wait := h.limit.limited(src); limited {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		h.fail(w, r, h.v.RefuseFrom(r.Context(), src, audit.ActionAuth, resource))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			return // the client went away
		}
		body = append(body, 0) // one byte past the limit: the owner's own limit refuses it
	}
	if len(body) == 0 {
		r.Body, r.ContentLength, r.GetBody = http.NoBody, 0, nil
	} else {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	r.Header.Del("Content-Length") // r.ContentLength is the truth
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded() // informative: nodes trust no forwarding header for authorization or limits
			pr.Out.Header.Set(ForwardedByHeader, h.nodeID)
		},
		Transport: h.transport,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusUnauthorized {
				h.limit.fail(src) // the owner refused the credential: the failure counts here too
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the URL: its path may name a stream
			}
			h.log.Warn("forward request", "tenant", t, "owner_node", owner.Node, "err", err)
			if aerr := h.v.ForwardFailed(r.Context(), vault.ForwardFailure{Source: src, Tenant: t, Resource: resource,
				Node: h.nodeID, Owner: owner.Node, Reason: "owner unreachable"}); aerr != nil {
				h.fail(w, r, aerr)
				return
			}
			h.moving(w, r)
		},
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	rp.ServeHTTP(w, r)
}
