package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// cluster is several nodes, each a real vault with its own data directory
// served by httptest, routed by a static table: the Router interface is
// what a cluster's membership provides, and a table is one.
type cluster struct {
	nodes map[string]*testAPI
	calls atomic.Int64 // Router.Owner calls, on every node

	mu     sync.Mutex
	owners map[string]string    // tenant → owner node; absent: ErrOwnerUnknown
	views  map[[2]string]string // (node, tenant) → owner as that node sees it, over owners
	addrs  map[string]string    // node → base URL
}

// nodeRouter is the cluster's table as one node sees it.
type nodeRouter struct {
	c    *cluster
	self string
}

var _ httpapi.Router = nodeRouter{}

func (r nodeRouter) Owner(_ context.Context, t events.TenantID) (httpapi.Owner, error) {
	r.c.calls.Add(1)
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	n, ok := r.c.views[[2]string{r.self, string(t)}]
	if !ok {
		n, ok = r.c.owners[string(t)]
	}
	if !ok {
		return httpapi.Owner{}, httpapi.ErrOwnerUnknown
	}
	return httpapi.Owner{Node: n, Addr: r.c.addrs[n], Local: n == r.self}, nil
}

// mustStartCluster starts a node of each id.
func mustStartCluster(tb testing.TB, edit func(node string, o *httpapi.Options), ids ...string) *cluster {
	tb.Helper()
	c := &cluster{nodes: map[string]*testAPI{}, owners: map[string]string{}, views: map[[2]string]string{}, addrs: map[string]string{}}
	for _, id := range ids {
		api := mustStartAPIWith(tb, nil, func(o *httpapi.Options) {
			o.Router, o.NodeID = nodeRouter{c, id}, id
			if edit != nil {
				edit(id, o)
			}
		})
		c.nodes[id] = api
		c.mu.Lock()
		c.addrs[id] = api.srv.URL
		c.mu.Unlock()
	}
	return c
}

// mustCreate creates tenant t on node and makes node its owner.
func (c *cluster) mustCreate(tb testing.TB, node, t string) string {
	tb.Helper()
	token := c.nodes[node].mustCreateTenant(tb, t)
	c.setOwner(t, node)
	return token
}

func (c *cluster) setOwner(t, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if node == "" {
		delete(c.owners, t)
	} else {
		c.owners[t] = node
	}
}

// recordsSince returns the records api's log appended from index n on.
func recordsSince(tb testing.TB, api *testAPI, n uint64) []audit.Record {
	tb.Helper()
	f := audit.Filter{Limit: audit.MaxListLimit}
	if n > 0 {
		after := n - 1
		f.After = &after
	}
	recs, err := api.audit.List(context.Background(), f)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// checkMoving fails unless r is a 503 tenant_moving with Retry-After.
func checkMoving(tb testing.TB, r response) {
	tb.Helper()
	if r.status != http.StatusServiceUnavailable {
		tb.Fatalf("status = %d, want 503; body %s", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "1" {
		tb.Errorf("Retry-After = %q, want 1", ra)
	}
	var e struct {
		Error map[string]string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		tb.Fatalf("body %s: %v", r.body, err)
	}
	want := map[string]string{"code": events.EUNAVAILABLE, "reason": events.ReasonTenantMoving, "message": "the tenant is moving between nodes: retry later"}
	if len(e.Error) != len(want) || e.Error["code"] != want["code"] || e.Error["reason"] != want["reason"] || e.Error["message"] != want["message"] {
		tb.Errorf("error = %v, want %v", e.Error, want)
	}
}

// A tenant's data read through a node that does not own it is exactly
// what the owner answers, and the owner's audit record names the node it
// came through; the forwarding node writes nothing.
func TestProxiedReadIsTheOwners(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	a, b := c.nodes["node-a"], c.nodes["node-b"]
	acme := c.mustCreate(t, "node-a", "acme")
	a.ingest(t, "acme", [4]string{"s-1", "e-1", "t", `{"n":1}`}, [4]string{"s-1", "e-2", "t", `{"n":2}`}, [4]string{"s-2", "e-3", "t", `{"n":3}`})
	reqs := []struct{ method, path, body string }{
		{"GET", "/v1/tenants/acme/streams", ""},
		{"GET", "/v1/tenants/acme/streams?limit=1", ""},
		{"GET", "/v1/tenants/acme/streams/s-1", ""},
		{"GET", "/v1/tenants/acme/streams/s-1/events?after=1", ""},
		{"GET", "/v1/tenants/acme/streams/nope", ""},
		{"GET", "/v1/tenants/acme/quarantine", ""},
		{"GET", "/v1/tenants/acme/keys?usage=true", ""},
		{"POST", "/v1/tenants/acme/search", `{"vector":[1,0],"k":2}`},
		{"GET", "/v1/tenants/acme/streams?limit=0", ""},
	}
	for _, rq := range reqs {
		t.Run(rq.method+" "+rq.path, func(t *testing.T) {
			do := func(api *testAPI) response {
				var body *bytes.Buffer
				if rq.body != "" {
					body = bytes.NewBufferString(rq.body)
				}
				if body == nil {
					return api.do(t, rq.method, rq.path, acme, nil)
				}
				return api.do(t, rq.method, rq.path, acme, body)
			}
			direct := do(a)
			na, nb := a.audit.Size(), b.audit.Size()
			proxied := do(b)
			if proxied.status != direct.status || !bytes.Equal(proxied.body, direct.body) {
				t.Fatalf("through node-b: %d %s\nwant (node-a): %d %s", proxied.status, proxied.body, direct.status, direct.body)
			}
			if got, want := proxied.header.Get("Content-Type"), direct.header.Get("Content-Type"); got != want {
				t.Errorf("Content-Type through node-b = %q, want %q", got, want)
			}
			if n := b.audit.Size(); n != nb {
				t.Errorf("node-b appended %d audit records for a forwarded request, want none: %+v", n-nb, recordsSince(t, b, nb))
			}
			recs := recordsSince(t, a, na)
			if len(recs) == 0 {
				t.Fatal("the owner appended no audit record")
			}
			for _, r := range recs {
				if r.Details[audit.DetailViaNode] != "node-b" || r.Details[audit.DetailNode] != "node-a" {
					t.Errorf("owner's record %+v: want via_node node-b, node node-a", r)
				}
			}
		})
	}
	// Served by the owner itself: its node named, no via_node.
	na := a.audit.Size()
	if r := a.get(t, "/v1/tenants/acme/streams/s-1", acme); r.status != http.StatusOK {
		t.Fatalf("direct read = %d %s", r.status, r.body)
	}
	for _, r := range recordsSince(t, a, na) {
		if _, ok := r.Details[audit.DetailViaNode]; ok || r.Details[audit.DetailNode] != "node-a" {
			t.Errorf("owner's record of a direct read %+v: want node node-a and no via_node", r)
		}
	}
}

// The owner checks the credential of a forwarded request: a wrong token is
// its 401; a token of one tenant on another's path is its 403, flagged in
// its log as a crossing, through whichever node it came; the break-glass
// header reaches it.
func TestProxiedAuthorizationIsTheOwners(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	a, b := c.nodes["node-a"], c.nodes["node-b"]
	acme := c.mustCreate(t, "node-a", "acme")
	c.mustCreate(t, "node-a", "globex")
	a.ingest(t, "globex", [4]string{"s", "e-1", "t", `{}`})

	t.Run("wrong token", func(t *testing.T) {
		for _, tok := range []string{"", "not-a-token"} {
			r := b.get(t, "/v1/tenants/acme/streams", tok)
			checkError(t, r, events.EUNAUTHORIZED)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		}
	})
	t.Run("cross tenant", func(t *testing.T) {
		na, nb := a.audit.Size(), b.audit.Size()
		checkError(t, b.get(t, "/v1/tenants/globex/streams/s", acme), events.EFORBIDDEN)
		recs := recordsSince(t, a, na)
		i := slices.IndexFunc(recs, func(r audit.Record) bool { return r.Flagged })
		if i < 0 {
			t.Fatalf("owner's records %+v: none flagged", recs)
		}
		r := recs[i]
		if _, code, _ := audit.Classify(r); code != audit.ViolationTokenTenant || r.Tenant != "globex" ||
			r.Principal != audit.PrincipalTenant("acme") || r.Details[audit.DetailViaNode] != "node-b" || r.Details[audit.DetailNode] != "node-a" {
			t.Errorf("owner's flagged record %+v: want %s of tenant:acme on globex via node-b", r, audit.ViolationTokenTenant)
		}
		flagged, err := a.audit.List(context.Background(), audit.Filter{Flagged: true, Tenant: "globex"})
		if err != nil || len(flagged) == 0 {
			t.Errorf("owner's flagged records of globex: %v, %v; want the crossing", flagged, err)
		}
		if n := b.audit.Size(); n != nb {
			t.Errorf("node-b appended %d records, want none", n-nb)
		}
	})
	t.Run("break glass", func(t *testing.T) {
		checkError(t, b.get(t, "/v1/tenants/globex/streams/s", testAdminToken), events.EFORBIDDEN)
		na := a.audit.Size()
		if r := b.get(t, "/v1/tenants/globex/streams/s", testAdminToken, httpapi.BreakGlassHeader, "incident 7"); r.status != http.StatusOK {
			t.Fatalf("break-glass read through node-b = %d %s, want 200", r.status, r.body)
		}
		recs := recordsSince(t, a, na)
		if len(recs) != 1 || recs[0].Details[audit.DetailBreakGlass] != "incident 7" || !recs[0].Flagged || recs[0].Details[audit.DetailViaNode] != "node-b" {
			t.Errorf("owner's records %+v: want one break-glass read, flagged, via node-b", recs)
		}
	})
	t.Run("client-set forwarded-by", func(t *testing.T) {
		// On the owner it changes no authorization…
		checkError(t, a.get(t, "/v1/tenants/acme/streams", "not-a-token", httpapi.ForwardedByHeader, "node-b"), events.EUNAUTHORIZED)
		checkError(t, a.get(t, "/v1/tenants/globex/streams/s", acme, httpapi.ForwardedByHeader, "node-b"), events.EFORBIDDEN)
		// …a value that is not a node id is not recorded…
		na := a.audit.Size()
		if r := a.get(t, "/v1/tenants/acme/streams", acme, httpapi.ForwardedByHeader, "Node B"); r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		for _, r := range recordsSince(t, a, na) {
			if _, ok := r.Details[audit.DetailViaNode]; ok {
				t.Errorf("record %+v names a via_node from a header that is not a node id", r)
			}
		}
		// …and elsewhere it only keeps the request from being forwarded.
		checkMoving(t, b.get(t, "/v1/tenants/acme/streams", acme, httpapi.ForwardedByHeader, "node-c"))
	})
}

// A request the nodes keep sending to each other ends in 503 at the
// second node, not in a loop.
func TestForwardingLoopEnds(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	acme := c.mustCreate(t, "node-a", "acme")
	c.mu.Lock()
	c.views[[2]string{"node-a", "acme"}] = "node-b"
	c.views[[2]string{"node-b", "acme"}] = "node-a"
	c.mu.Unlock()
	c.calls.Store(0)
	done := make(chan response, 1)
	go func() { done <- c.nodes["node-a"].get(t, "/v1/tenants/acme/streams", acme) }()
	select {
	case r := <-done:
		checkMoving(t, r)
	case <-time.After(10 * time.Second):
		t.Fatal("a forwarding loop: no answer in 10s")
	}
	if n := c.calls.Load(); n != 2 {
		t.Errorf("Router.Owner called %d times, want 2 (once on each node)", n)
	}
}

// An owner that cannot be reached, or no owner at all, is a 503 with
// Retry-After that says nothing of the failure; the forwarding node
// audits an unreachable owner.
func TestOwnerUnavailable(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	b := c.nodes["node-b"]
	acme := c.mustCreate(t, "node-a", "acme")
	t.Run("owner unknown", func(t *testing.T) {
		c.setOwner("acme", "")
		defer c.setOwner("acme", "node-a")
		nb := b.audit.Size()
		checkMoving(t, b.get(t, "/v1/tenants/acme/streams/s", acme))
		if n := b.audit.Size(); n != nb {
			t.Errorf("node-b appended %d records for a tenant without owner, want none", n-nb)
		}
	})
	t.Run("owner down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := "http://" + l.Addr().String()
		l.Close() // nothing listens there now
		c.mu.Lock()
		c.addrs["node-c"] = addr
		c.mu.Unlock()
		c.setOwner("acme", "node-c")
		defer c.setOwner("acme", "node-a")
		nb := b.audit.Size()
		r := b.get(t, "/v1/tenants/acme/streams/secret-stream", acme)
		checkMoving(t, r)
		if bytes.Contains(r.body, []byte("127.0.0.1")) || bytes.Contains(r.body, []byte("secret-stream")) {
			t.Errorf("body %s names the owner's address or the stream", r.body)
		}
		recs := recordsSince(t, b, nb)
		if len(recs) != 1 {
			t.Fatalf("node-b records %+v, want one", recs)
		}
		rec := recs[0]
		if rec.Action != audit.ActionRequestForward || rec.Outcome != audit.OutcomeError || rec.Tenant != "acme" || rec.Principal != audit.PrincipalAnonymous ||
			rec.Details[audit.DetailNode] != "node-b" || rec.Details[audit.DetailOwnerNode] != "node-c" || rec.Resource != "streams" {
			t.Errorf("node-b record %+v: want a failed request.forward of acme to node-c", rec)
		}
		line, _ := json.Marshal(rec)
		if bytes.Contains(line, []byte("secret-stream")) || bytes.Contains(line, []byte(acme)) {
			t.Errorf("record %s holds the stream id or the token", line)
		}
	})
}

// A body over MaxBodyBytes is refused through a forwarding node as by the
// owner itself: 413, after the credential and the boundary are checked,
// the owner audits the rejection.
func TestProxiedBodyLimit(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	a, b := c.nodes["node-a"], c.nodes["node-b"]
	acme := c.mustCreate(t, "node-a", "acme")
	c.mustCreate(t, "node-a", "globex")
	big := `{"text":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `"}`
	direct := a.post(t, "/v1/tenants/acme/search", acme, big)
	checkError(t, direct, events.ETOOLARGE)
	na := a.audit.Size()
	proxied := b.post(t, "/v1/tenants/acme/search", acme, big)
	if proxied.status != direct.status || !bytes.Equal(proxied.body, direct.body) {
		t.Fatalf("through node-b: %d %s, want %d %s", proxied.status, proxied.body, direct.status, direct.body)
	}
	recs := recordsSince(t, a, na)
	if len(recs) != 1 || recs[0].Outcome != audit.OutcomeRejected || recs[0].Action != audit.ActionSearch || recs[0].Details[audit.DetailViaNode] != "node-b" {
		t.Errorf("owner's records %+v: want one rejected search via node-b", recs)
	}
	// A crossing with a large body is still a crossing, flagged.
	na = a.audit.Size()
	checkError(t, b.post(t, "/v1/tenants/globex/search", acme, big), events.EFORBIDDEN)
	if recs := recordsSince(t, a, na); len(recs) != 1 || !recs[0].Flagged {
		t.Errorf("owner's records %+v: want one flagged crossing", recs)
	}
	// Just under the limit goes through whole.
	ok := `{"text":"` + strings.Repeat("x", httpapi.MaxBodyBytes-20) + `"}`
	if d, p := a.post(t, "/v1/tenants/acme/search", acme, ok), b.post(t, "/v1/tenants/acme/search", acme, ok); d.status != p.status || !bytes.Equal(d.body, p.body) || d.status == http.StatusRequestEntityTooLarge {
		t.Errorf("a body under the limit: through node-b %d %s, direct %d %s", p.status, p.body, d.status, d.body)
	}
}

// A path whose tenant is not a valid id never reaches the Router (nor,
// so, another node): it is refused where it arrives, as on a single node.
func TestHostileTenantNeverRouted(t *testing.T) {
	c := mustStartCluster(t, nil, "node-a", "node-b")
	b := c.nodes["node-b"]
	acme := c.mustCreate(t, "node-a", "acme")
	single := MustStartAPI(t)
	single.mustCreateTenant(t, "acme")
	hostile := []string{"ACME", "a", "-acme", "acme_1", strings.Repeat("a", 64), "acme%2F..%2Fglobex", "%2e%2e", "acme%00", "ac%20me"}
	for _, id := range hostile {
		for _, suffix := range []string{"/streams", "/streams/s", "/streams/s/events", "/quarantine", "/keys"} {
			path := "/v1/tenants/" + id + suffix
			c.calls.Store(0)
			r := b.get(t, path, acme)
			want := single.get(t, path, acme)
			if r.status != want.status {
				t.Errorf("GET %s through a cluster node = %d %s, want %d as on a single node", path, r.status, r.body, want.status)
			}
			if n := c.calls.Load(); n != 0 {
				t.Errorf("GET %s: Router.Owner called %d times, want never", path, n)
			}
		}
	}
}

// A forwarding node limits failed authentications per client as a single
// node does: the owner's 401s count at the node the client talks to.
func TestProxiedAuthFailureLimit(t *testing.T) {
	c := mustStartCluster(t, func(node string, o *httpapi.Options) {
		if node == "node-b" {
			o.AuthFailureLimit = 2
		}
	}, "node-a", "node-b")
	c.mustCreate(t, "node-a", "acme")
	b := c.nodes["node-b"]
	for range 2 {
		checkError(t, b.get(t, "/v1/tenants/acme/streams", "wrong"), events.EUNAUTHORIZED)
	}
	r := b.get(t, "/v1/tenants/acme/streams", "wrong")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("third failure through node-b = %d (Retry-After %q), want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

// Without a Router the forwarding header means nothing: a single node's
// records are what they were.
func TestSingleNodeIgnoresForwardedBy(t *testing.T) {
	api := MustStartAPI(t)
	acme := api.mustCreateTenant(t, "acme")
	n := api.audit.Size()
	if r := api.get(t, "/v1/tenants/acme/streams", acme, httpapi.ForwardedByHeader, "node-b"); r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	for _, r := range recordsSince(t, api, n) {
		if r.Details != nil {
			t.Errorf("single node record %+v has details", r)
		}
	}
}

// Every route naming a tenant is decided: routed to the owner, or served
// where it arrives.
func TestRoutedRoutesDecided(t *testing.T) {
	local := []string{
		"DELETE /v1/tenants/{tenant}",
		"GET /v1/tenants/{tenant}/export",
		"POST /v1/tenants/{tenant}/export/thaw",
		"POST /v1/tenants/{tenant}/moved",
	}
	routed := httpapi.RoutedRoutes()
	for _, p := range httpapi.Routes() {
		if !strings.Contains(p, "{tenant}") {
			if slices.Contains(routed, p) {
				t.Errorf("%s is routed but names no tenant", p)
			}
			continue
		}
		if slices.Contains(routed, p) == slices.Contains(local, p) {
			t.Errorf("%s: routed %v, local %v: decide one", p, slices.Contains(routed, p), slices.Contains(local, p))
		}
	}
	if len(routed) != 10 {
		t.Errorf("RoutedRoutes() = %d routes %v, want 10", len(routed), routed)
	}
}

func TestOptionsValidate(t *testing.T) {
	r := nodeRouter{}
	tests := []struct {
		o    httpapi.Options
		want bool
	}{
		{httpapi.Options{}, true},
		{httpapi.Options{NodeID: "node-a"}, true},
		{httpapi.Options{Router: r, NodeID: "node-a"}, true},
		{httpapi.Options{Router: r}, false},
		{httpapi.Options{Router: r, NodeID: "Node A"}, false},
		{httpapi.Options{NodeID: strings.Repeat("n", 64)}, false},
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); (err == nil) != tt.want {
			t.Errorf("Options{Router: %v, NodeID: %q}.Validate() = %v, want ok %v", tt.o.Router != nil, tt.o.NodeID, err, tt.want)
		}
	}
}

func benchRead(b *testing.B, proxied bool) {
	c := mustStartCluster(b, nil, "node-a", "node-b")
	a := c.nodes["node-a"]
	acme := c.mustCreate(b, "node-a", "acme")
	a.ingest(b, "acme", [4]string{"s", "e-1", "t", `{"n":1}`})
	via := a
	if proxied {
		via = c.nodes["node-b"]
	}
	url := via.srv.URL + "/v1/tenants/acme/streams/s"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+acme)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d %s", resp.StatusCode, buf.Bytes())
				return
			}
		}
	})
}

// BenchmarkLocalRead reads a stream's state from its owner.
func BenchmarkLocalRead(b *testing.B) { benchRead(b, false) }

// BenchmarkProxiedRead reads it through another node: the cost of one
// proxy hop over BenchmarkLocalRead.
func BenchmarkProxiedRead(b *testing.B) { benchRead(b, true) }
