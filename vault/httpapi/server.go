package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/audit/alerts"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// BreakGlassHeader carries an admin's stated reason to read tenant data.
const BreakGlassHeader = "X-Tenantvault-Break-Glass"

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 64 << 10

// Ready reports whether the vault is ready to serve (ingest running).
type Ready func() error

// Options configures a Handler.
type Options struct {
	Ready Ready // readiness check; default always ready
	// Logger takes internal errors and an access log line per request
	// (info); default discard.
	Logger *slog.Logger
	// Metrics, when set, gets the vault's counters and each request's
	// duration, and is served on /metrics to the admin and to
	// MetricsToken. Nil: /metrics answers 404.
	Metrics Metrics
	// MetricsToken, when set, is a bearer token that may read /metrics
	// (and nothing else), for a Prometheus scraper that must not hold
	// the admin token.
	MetricsToken string
	// AuthFailureLimit is how many failed authentications (a wrong or
	// missing token) a source — the client's IP address — may have in
	// AuthFailureInterval: past it, its requests are answered 429 Too
	// Many Requests (with Retry-After) until the interval ends, before
	// their credential is looked at. Default DefaultAuthFailureLimit
	// (100); negative: no limit. The failures, and the refusals, are
	// audited aggregated per source (vault.Config.AggregateInterval).
	AuthFailureLimit int
	// AuthFailureInterval is the interval of AuthFailureLimit; default
	// DefaultAuthFailureInterval (10s).
	AuthFailureInterval time.Duration
	// AuthFailureSources bounds the sources the limit tracks at once;
	// past them, new sources are not limited. Default
	// DefaultAuthFailureSources (1024).
	AuthFailureSources int

	// Router, when set, makes this vault one node of a cluster: a request
	// of a routed endpoint (RoutedRoutes) for a tenant another node owns
	// is proxied to that node, and one for a tenant no node owns right
	// now is answered 503 tenant_moving with Retry-After (see proxy.go).
	// Nil: a single node, every request served here.
	Router Router
	// NodeID is this node's id (vault.ValidNodeID), sent to the owner in
	// ForwardedByHeader and written (audit.DetailNode) into the audit
	// records of the requests it serves. Required with Router.
	NodeID string
	// ForwardTransport carries forwarded requests (TLS to the other
	// nodes, say); default NewForwardTransport(), one per Handler.
	ForwardTransport http.RoundTripper
	// ClusterStatus, on a node of a cluster, answers GET /v1/cluster;
	// nil: 404.
	ClusterStatus ClusterStatusFunc
}

// Validate reports every problem of o, joined.
func (o Options) Validate() error {
	var errs []error
	if o.NodeID != "" && !vault.ValidNodeID(o.NodeID) {
		errs = append(errs, fmt.Errorf("httpapi: NodeID %.80q is not a node id (2 to 63 characters of [a-z0-9-], starting with [a-z0-9])", o.NodeID))
	}
	if o.Router != nil && o.NodeID == "" {
		errs = append(errs, errors.New("httpapi: NodeID is required with Router"))
	}
	return errors.Join(errs...)
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Ready == nil {
		o.Ready = func() error { return nil }
	}
	if o.AuthFailureLimit == 0 {
		o.AuthFailureLimit = DefaultAuthFailureLimit
	}
	if o.AuthFailureInterval <= 0 {
		o.AuthFailureInterval = DefaultAuthFailureInterval
	}
	if o.AuthFailureSources <= 0 {
		o.AuthFailureSources = DefaultAuthFailureSources
	}
	if o.Router != nil && o.ForwardTransport == nil {
		o.ForwardTransport = NewForwardTransport()
	}
}

// Handler serves the API.
type Handler struct {
	v     *vault.Vault
	ready Ready
	log   *slog.Logger
	mux   *http.ServeMux
	limit *limiter
	serve http.Handler // mux behind the access log

	metricsHandler http.Handler // nil: /metrics is not served
	metricsToken   *tokenMatcher

	router    Router // nil: a single node
	nodeID    string
	transport http.RoundTripper // forwarded requests
	cluster   ClusterStatusFunc
}

// New returns the API handler of v. It panics if opts.Validate fails (a
// wiring error, as a bad pattern is to http.ServeMux).
func New(v *vault.Vault, opts Options) *Handler {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts.setDefaults()
	h := &Handler{v: v, ready: opts.Ready, log: opts.Logger, mux: http.NewServeMux(),
		limit:        newLimiter(opts.AuthFailureLimit, opts.AuthFailureInterval, opts.AuthFailureSources),
		metricsToken: newTokenMatcher(opts.MetricsToken),
		router:       opts.Router, nodeID: opts.NodeID, transport: opts.ForwardTransport, cluster: opts.ClusterStatus}
	if opts.Metrics != nil {
		h.registerStats(opts.Metrics)
		h.metricsHandler = opts.Metrics.Handler()
	}
	h.serve = accessLog(h.mux, h.log, opts.Metrics)
	for _, rt := range h.routes() {
		if resource, ok := routedRoutes[rt.pattern]; ok && h.router != nil {
			rt.handler = h.routed(resource, rt.handler)
		}
		h.mux.HandleFunc(rt.pattern, rt.handler)
	}
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /openapi.json", h.openapi)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, events.Errorf(events.ENOTFOUND, "no such endpoint: %s %.100q", r.Method, r.URL.Path))
	})
	return h
}

// route is one endpoint of the API.
type route struct {
	pattern string // as net/http's ServeMux takes it: "METHOD /path/{wildcard}"
	handler http.HandlerFunc
}

// routes are the API's endpoints, but for /healthz, /readyz and /metrics.
func (h *Handler) routes() []route {
	return []route{
		{"POST /v1/tenants", h.createTenant},
		{"GET /v1/tenants", h.listTenants},
		{"DELETE /v1/tenants/{tenant}", h.shredTenant},
		{"POST /v1/master-key/rotate", h.rotateMaster},
		{"POST /v1/tenants/{tenant}/keys/rotate", h.rotateKeys},
		{"POST /v1/tenants/{tenant}/kafka-credential/rotate", h.rotateKafkaCredential},
		{"GET /v1/tenants/{tenant}/keys", h.getKeys},
		{"POST /v1/tenants/{tenant}/keys/{id}/disable", h.retireKey(false)},
		{"POST /v1/tenants/{tenant}/keys/{id}/destroy", h.retireKey(true)},
		{"GET /v1/tenants/{tenant}/streams", h.listStreams},
		{"GET /v1/tenants/{tenant}/streams/{stream}", h.getStream},
		{"GET /v1/tenants/{tenant}/streams/{stream}/events", h.getEvents},
		{"GET /v1/tenants/{tenant}/quarantine", h.getQuarantine},
		{"POST /v1/tenants/{tenant}/search", h.search},
		{"GET /v1/audit", h.getAudit},
		{"GET /v1/alerts", h.getAlerts},
		{"GET /v1/cluster", h.getCluster},
		{"GET /v1/audit/checkpoint", h.getCheckpoint},
		{"GET /v1/audit/public-key", h.getPublicKey},
		{"GET /v1/audit/proof/inclusion", h.getInclusion},
		{"GET /v1/audit/proof/consistency", h.getConsistency},
		{"GET /v1/audit/export", h.getExport},
		{"GET /v1/import-key", h.getImportKey},
		{"GET /v1/tenants/{tenant}/export", h.exportTenant},
		{"POST /v1/tenants/{tenant}/export/thaw", h.thawTenant},
		{"POST /v1/tenants/import", h.importTenant},
		{"POST /v1/tenants/{tenant}/moved", h.movedTenant},
	}
}

// Routes lists the patterns of the API's endpoints (but for /healthz,
// /readyz and /metrics), as "METHOD /path/{wildcard}", for tests that must
// cover every one of them: a new route cannot be left out of the
// cross-tenant matrix.
func Routes() []string {
	var out []string
	for _, rt := range (&Handler{}).routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// MaxBundleBytes bounds the body of POST /v1/tenants/import (a bundle).
const MaxBundleBytes = 1 << 40

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	limit := int64(MaxBodyBytes)
	if r.Method == http.MethodPost && r.URL.Path == "/v1/tenants/import" {
		limit = MaxBundleBytes
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if h.nodeID != "" {
		r = r.WithContext(vault.WithHop(r.Context(), vault.Hop{Node: h.nodeID}))
	}
	h.serve.ServeHTTP(w, r)
}

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// auth authenticates the request. A source over its failure limit is
// refused (429) before its credential is looked at; failures and refusals
// are audited aggregated per source.
func (h *Handler) auth(w http.ResponseWriter, r *http.Request, action audit.Action, resource string) (vault.Principal, bool) {
	src := clientIP(r)
	if limited, wait := h.limit.limited(src); limited {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		h.fail(w, r, h.v.RefuseFrom(r.Context(), src, action, resource))
		return vault.Principal{}, false
	}
	p, err := h.v.AuthenticateFor(r.Context(), src, bearer(r), action, resource, r.PathValue("tenant"))
	if err != nil {
		if events.ErrorCode(err) == events.EUNAUTHORIZED {
			h.limit.fail(src)
		}
		h.fail(w, r, err)
		return vault.Principal{}, false
	}
	return p, true
}

// session authenticates the request and opens the session of the path's tenant.
func (h *Handler) session(w http.ResponseWriter, r *http.Request, action audit.Action, resource string) (*vault.Session, bool) {
	p, ok := h.auth(w, r, action, resource)
	if !ok {
		return nil, false
	}
	s, err := h.v.Session(r.Context(), p, vault.Access{
		Tenant: r.PathValue("tenant"), Action: action, Resource: resource,
		BreakGlass: r.Header.Get(BreakGlassHeader),
	})
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return s, true
}

func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionTenantCreate, "tenants")
	if !ok {
		return
	}
	var req struct {
		ID       string `json:"id"`
		Recreate bool   `json:"recreate"` // re-create a shredded id (empty, new keys)
	}
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	create := h.v.CreateTenant
	if req.Recreate {
		create = h.v.RecreateTenant
	}
	info, token, err := create(r.Context(), p, req.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		vault.TenantInfo
		Token string `json:"token"`
	}{info, token})
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionTenantList, "tenants")
	if !ok {
		return
	}
	ts, err := h.v.ListTenants(r.Context(), p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": ts})
}

// shredTenant crypto-shreds a tenant: DELETE /v1/tenants/{t}?confirm={t}.
func (h *Handler) shredTenant(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionTenantShred, "tenants/"+tenant)
	if !ok {
		return
	}
	receipt, err := h.v.Shred(r.Context(), p, tenant, queryParams(r).String("confirm"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, receipt)
}

// rotateKafkaCredential gives a tenant's producers a new broker secret:
// POST /v1/tenants/{t}/kafka-credential/rotate.
func (h *Handler) rotateKafkaCredential(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionKafkaCredentialRotate, "tenants/"+tenant+"/kafka-credential")
	if !ok {
		return
	}
	c, err := h.v.RotateKafkaCredential(r.Context(), p, tenant)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": tenant, "kafka": c})
}

// rotateMaster re-wraps every keyset under a new master key:
// POST /v1/master-key/rotate {"new_master_key":"URI"}.
func (h *Handler) rotateMaster(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionMasterRotate, "master-key")
	if !ok {
		return
	}
	var req struct {
		NewMasterKey string `json:"new_master_key"`
	}
	if err := decodeBody(r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.v.RotateMasterKey(r.Context(), p, req.NewMasterKey); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "rotated", "next": "restart vaultd with --master-key set to the new URI"})
}

func (h *Handler) rotateKeys(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionKeysRotate, "tenants/"+tenant+"/keys")
	if !ok {
		return
	}
	var req struct {
		Rewrap bool `json:"rewrap"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	st, err := h.v.RotateKeys(r.Context(), p, tenant, req.Rewrap)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) getKeys(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionKeysRead, "tenants/"+tenant+"/keys")
	if !ok {
		return
	}
	st, err := h.v.KeysStatus(r.Context(), p, tenant, queryParams(r).Bool("usage"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *Handler) retireKey(destroy bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant := r.PathValue("tenant")
		p, ok := h.auth(w, r, audit.ActionKeysRetire, "tenants/"+tenant+"/keys")
		if !ok {
			return
		}
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 32)
		if err != nil {
			h.fail(w, r, events.Errorf(events.EINVALID, "key id must be a 32-bit unsigned integer"))
			return
		}
		if err := h.v.RetireKey(r.Context(), p, tenant, uint32(id), destroy); err != nil {
			h.fail(w, r, err)
			return
		}
		st, err := h.v.KeysStatus(r.Context(), p, tenant, false)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	}
}

type streamJSON struct {
	Stream    string          `json:"stream"`
	Version   uint64          `json:"version"`
	Deleted   bool            `json:"deleted,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// The tenant-data handlers open the session (authorization and the
// boundary check, audited) before they validate anything else: a request
// that crosses a boundary is refused and flagged whatever its parameters.

func (h *Handler) listStreams(w http.ResponseWriter, r *http.Request) {
	s, ok := h.session(w, r, audit.ActionStreamList, "streams")
	if !ok {
		return
	}
	defer s.Close()
	q := queryParams(r)
	cursor, limit := q.String("cursor"), q.Limit()
	if err := q.Err(); err != nil {
		h.fail(w, r, s.Reject(r.Context(), audit.ActionStreamList, "streams", err))
		return
	}
	list, next, err := s.Streams(r.Context(), cursor, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]streamJSON, len(list))
	for i, st := range list {
		out[i] = streamJSON{Stream: st.Stream, Version: st.Version, Deleted: st.Deleted, UpdatedAt: st.UpdatedAt}
	}
	writeJSON(w, http.StatusOK, map[string]any{"streams": out, "next_cursor": next})
}

func (h *Handler) getStream(w http.ResponseWriter, r *http.Request) {
	s, ok := h.session(w, r, audit.ActionStreamRead, "streams")
	if !ok {
		return
	}
	defer s.Close()
	st, err := s.State(r.Context(), r.PathValue("stream"))
	if err == nil && st.Deleted {
		err = events.Errorf(events.ENOTFOUND, "stream was deleted at version %d; its history remains", st.Version)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, streamJSON{Stream: st.Stream, Version: st.Version, Deleted: st.Deleted, UpdatedAt: st.UpdatedAt, Data: st.Data})
}

type eventJSON struct {
	Version   uint64          `json:"version"`
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Source    string          `json:"source"`
	Time      *time.Time      `json:"time,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	DataB64   []byte          `json:"data_base64,omitempty"`
	Partition int             `json:"partition"`
	Offset    int64           `json:"offset"`
	StoredAt  time.Time       `json:"stored_at"`
}

func (h *Handler) getEvents(w http.ResponseWriter, r *http.Request) {
	s, ok := h.session(w, r, audit.ActionEventsRead, "streams")
	if !ok {
		return
	}
	defer s.Close()
	q := queryParams(r)
	limit, after := q.Limit(), q.Uint("after", 0)
	if err := q.Err(); err != nil {
		h.fail(w, r, s.Reject(r.Context(), audit.ActionEventsRead, "streams", err))
		return
	}
	evs, err := s.History(r.Context(), r.PathValue("stream"), after, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]eventJSON, len(evs))
	var next uint64
	for i, e := range evs {
		out[i] = eventJSON{Version: e.Version, ID: e.Event.ID, Type: e.Event.Type, Source: e.Event.Source, Data: e.Event.Data,
			DataB64: e.Event.DataBase64, Partition: e.Partition, Offset: e.Offset, StoredAt: e.StoredAt}
		if !e.Event.Time.IsZero() {
			t := e.Event.Time
			out[i].Time = &t
		}
		next = e.Version
	}
	resp := map[string]any{"stream": r.PathValue("stream"), "events": out}
	if len(evs) == limit {
		resp["next_after"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) getQuarantine(w http.ResponseWriter, r *http.Request) {
	s, ok := h.session(w, r, audit.ActionQuarantineRead, "quarantine")
	if !ok {
		return
	}
	defer s.Close()
	q := queryParams(r)
	cursor, limit := q.String("cursor"), q.Limit()
	if err := q.Err(); err != nil {
		h.fail(w, r, s.Reject(r.Context(), audit.ActionQuarantineRead, "quarantine", err))
		return
	}
	list, next, err := s.Quarantine(r.Context(), cursor, limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type qJSON struct {
		Seq       uint64    `json:"seq"`
		Topic     string    `json:"topic"`
		Partition int       `json:"partition"`
		Offset    int64     `json:"offset"`
		Code      string    `json:"code"`
		Reason    string    `json:"reason"`
		Raw       []byte    `json:"raw"`
		At        time.Time `json:"at"`
	}
	out := make([]qJSON, len(list))
	for i, q := range list {
		out[i] = qJSON{q.Seq, q.Topic, q.Partition, q.Offset, q.Code, q.Reason, q.Raw, q.At}
	}
	writeJSON(w, http.StatusOK, map[string]any{"quarantine": out, "next_cursor": next})
}

// search answers the tenant's documents nearest to a vector or a text:
// POST /v1/tenants/{t}/search {"vector":[...] | "text":"...", "k":10,
// "filter":{"lang":"en"}} → {"results":[{"id","score","text","attributes"}],"k"}.
// Every refusal past the session (a body that does not decode, a bad k,
// filter or vector) is audited as a rejection.
func (h *Handler) search(w http.ResponseWriter, r *http.Request) {
	s, ok := h.session(w, r, audit.ActionSearch, "search")
	if !ok {
		return
	}
	defer s.Close()
	var req struct {
		Vector []float32                  `json:"vector"`
		Text   string                     `json:"text"`
		K      int                        `json:"k"`
		Filter map[string]json.RawMessage `json:"filter"`
	}
	if err := decodeBody(r, &req); err != nil {
		if events.ErrorCode(err) == events.EINVALID {
			err = events.Reasonf(events.EINVALID, events.ReasonSearchInvalid, "%s: want {\"vector\":[numbers] or \"text\":\"...\", \"k\", \"filter\":{}}", events.ErrorMessage(err))
		}
		h.fail(w, r, s.Reject(r.Context(), audit.ActionSearch, "search", err))
		return
	}
	filter, err := events.ParseFilter(req.Filter)
	if err != nil {
		h.fail(w, r, s.Reject(r.Context(), audit.ActionSearch, "search", err))
		return
	}
	k := req.K
	if k == 0 {
		k = events.DefaultSearchK
	}
	hits, err := s.Search(r.Context(), vault.SearchRequest{Vector: req.Vector, Text: req.Text, K: req.K, Filter: filter})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if hits == nil {
		hits = []vault.Hit{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": hits, "k": k})
}

func (h *Handler) getAudit(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionAuditRead, "audit")
	if !ok {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	recs, err := h.v.Audit(r.Context(), p, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	resp := map[string]any{"records": recs}
	if len(recs) == f.Limit && len(recs) > 0 {
		resp["next_after"] = recs[len(recs)-1].Index
	}
	writeJSON(w, http.StatusOK, resp)
}

// getAlerts lists boundary violations: the flagged audit records, as alerts.
func (h *Handler) getAlerts(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionAuditRead, "alerts")
	if !ok {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f.Flagged = true
	recs, err := h.v.Audit(r.Context(), p, f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]alerts.Alert, 0, len(recs))
	for _, rec := range recs {
		if a, ok := alerts.FromRecord(rec); ok {
			out = append(out, a)
		}
	}
	resp := map[string]any{"alerts": out}
	if len(recs) == f.Limit && len(recs) > 0 {
		resp["next_after"] = recs[len(recs)-1].Index
	}
	writeJSON(w, http.StatusOK, resp)
}

// AuditLog is what the admin audit endpoints read of the audit log: its
// signed checkpoints, proofs and records as stored. vault.AuditReader,
// which Vault.AuditLog hands an admin, satisfies it.
type AuditLog interface {
	Checkpoint() (signedNote []byte, size uint64, root [audit.HashSize]byte, err error)
	CheckpointAt(size uint64) ([]byte, error)
	InclusionProof(index, size uint64) ([][]byte, error)
	ConsistencyProof(from, to uint64) ([][]byte, error)
	Size() uint64
	Export(ctx context.Context, w io.Writer, from, to uint64) (uint64, error)
}

var _ AuditLog = vault.AuditReader{}

// auditLog authenticates an admin request for the audit log itself.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, resource string) (AuditLog, bool) {
	p, ok := h.auth(w, r, audit.ActionAuditRead, resource)
	if !ok {
		return nil, false
	}
	l, err := h.v.AuditLog(r.Context(), p)
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return l, true
}

// getCheckpoint answers the latest signed checkpoint (or the one of
// ?size=N) as a C2SP signed note, text/plain.
func (h *Handler) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	l, ok := h.auditLog(w, r, "audit/checkpoint")
	if !ok {
		return
	}
	q := queryParams(r)
	size, atSize := q.OptUint("size")
	if err := q.Err(); err != nil {
		h.fail(w, r, err)
		return
	}
	var note []byte
	var err error
	if atSize {
		note, err = l.CheckpointAt(size)
	} else {
		note, _, _, err = l.Checkpoint()
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(note)
}

func (h *Handler) getPublicKey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, h.v.AuditPublicKey()+"\n")
}

type proofJSON struct {
	Index  *uint64  `json:"index,omitempty"`
	From   *uint64  `json:"from,omitempty"`
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
}

// getInclusion answers the RFC 6962 inclusion proof of record index in the
// tree of size records.
func (h *Handler) getInclusion(w http.ResponseWriter, r *http.Request) {
	h.serveProof(w, r, "index", "size", AuditLog.InclusionProof)
}

// getConsistency answers the RFC 6962 consistency proof between the trees
// of from and to records.
func (h *Handler) getConsistency(w http.ResponseWriter, r *http.Request) {
	h.serveProof(w, r, "from", "to", AuditLog.ConsistencyProof)
}

// serveProof answers a proof of the audit log from the record index or
// count in query parameter a (named so in the answer) to the tree size in b.
func (h *Handler) serveProof(w http.ResponseWriter, r *http.Request, a, b string, prove func(AuditLog, uint64, uint64) ([][]byte, error)) {
	l, ok := h.auditLog(w, r, "audit/proof")
	if !ok {
		return
	}
	q := queryParams(r)
	first, size := q.RequiredUint(a), q.RequiredUint(b)
	if err := q.Err(); err != nil {
		h.fail(w, r, err)
		return
	}
	hashes, err := prove(l, first, size)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p := proofJSON{Size: size, Hashes: nonNil(hashes)}
	if a == "index" {
		p.Index = &first
	} else {
		p.From = &first
	}
	writeJSON(w, http.StatusOK, p)
}

func nonNil(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}

// getExport streams records [from, to) as stored: one canonical JSON line
// each, the input of offline verification.
func (h *Handler) getExport(w http.ResponseWriter, r *http.Request) {
	l, ok := h.auditLog(w, r, "audit/export")
	if !ok {
		return
	}
	q := queryParams(r)
	from, to := q.Uint("from", 0), q.Uint("to", math.MaxUint64)
	if err := q.Err(); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Audit-Size", strconv.FormatUint(l.Size(), 10))
	if _, err := l.Export(r.Context(), w, from, to); err != nil && r.Context().Err() == nil {
		h.log.Error("audit export", "err", err) // the status line is gone: the verifier sees a short stream
	}
}

// auditFilter parses the audit query parameters.
func auditFilter(r *http.Request) (audit.Filter, error) {
	q := queryParams(r)
	f := audit.Filter{
		Tenant: q.String("tenant"), Action: audit.Action(q.String("action")), Flagged: q.Bool("flagged"),
		Limit: q.Limit(), Since: q.Time("since"), Until: q.Time("until"),
	}
	if after, ok := q.OptUint("after"); ok {
		f.After = &after
	}
	return f, q.Err()
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.ready(); err != nil {
		writeError(w, events.Errorf(events.EUNAVAILABLE, "not ready: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// fail writes err as a JSON error; internal errors are logged (without
// payloads: errors from lower layers never carry them) and answered
// generically.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if events.ErrorCode(err) == events.EINTERNAL && !errors.Is(err, context.Canceled) {
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, err)
}

var statusOf = map[string]int{
	events.EINVALID:      http.StatusBadRequest,
	events.EUNAUTHORIZED: http.StatusUnauthorized,
	events.EFORBIDDEN:    http.StatusForbidden,
	events.ENOTFOUND:     http.StatusNotFound,
	events.ECONFLICT:     http.StatusConflict,
	events.EGONE:         http.StatusGone,
	events.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	events.EUNAVAILABLE:  http.StatusServiceUnavailable,
	events.ERATELIMITED:  http.StatusTooManyRequests,
	events.EINTERNAL:     http.StatusInternalServerError,
}

// StatusOf maps an error code to its HTTP status.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	code := events.ErrorCode(err)
	if code == events.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenantvault"`)
	}
	body := map[string]string{"code": code, "message": events.ErrorMessage(err)}
	var e *events.Error
	if errors.As(err, &e) && (e.Reason == events.ReasonTenantMoved || e.Reason == events.ReasonTenantMoving) {
		body["reason"] = e.Reason // a client looks for the tenant elsewhere, or retries
	}
	writeJSON(w, StatusOf(code), map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return events.Errorf(events.ETOOLARGE, "request body is over %d bytes", MaxBodyBytes)
		}
		if errors.Is(err, io.EOF) {
			return events.Errorf(events.EINVALID, "request body is empty")
		}
		return events.Errorf(events.EINVALID, "request body is not the expected JSON object")
	}
	return nil
}
