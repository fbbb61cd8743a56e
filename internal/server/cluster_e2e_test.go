package server_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"

	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
)

const (
	clusterPass       = "cluster-test-password-0123456789abcdef"
	clusterAdminToken = "tva_cluster-test-admin-token-0123456789abcdef"
)

// clusterBroker is one embedded broker with a SCRAM superuser, as a real
// cluster the nodes reach with --brokers.
type clusterBroker struct {
	addr, user, passFile, kms string
}

func startClusterBroker(t *testing.T) clusterBroker {
	t.Helper()
	const user, pass = "tenantvault", clusterPass
	e, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t),
		Auth: &kafka.EmbeddedAuth{SuperUser: user, SuperPassword: pass}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	passFile := filepath.Join(t.TempDir(), "kafka.password")
	if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return clusterBroker{addr: e.Addr(), user: user, passFile: passFile, kms: t.TempDir()}
}

// freeAddr returns a loopback host:port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNode starts vaultd node id of the cluster on b, on dataDir, with
// the cluster's per-tenant master keys (one local key file per tenant in
// b.kms, standing in for a KMS the nodes share).
func startNode(t *testing.T, b clusterBroker, id, dataDir string) *vault {
	t.Helper()
	addr := freeAddr(t)
	return mustStartWith(t, dataDir, "", func(c *server.Config) {
		c.HTTPAddr = addr
		c.NodeID, c.AdvertiseAddr = id, "http://"+addr
		c.Brokers = []string{b.addr}
		c.KafkaSASLUser, c.KafkaSASLPasswordFile = b.user, b.passFile
		c.MasterKey = "local://" + filepath.Join(b.kms, "{tenant}.key")
		c.AuditOrigin = id + ".example/audit"
		c.AdminToken = clusterAdminToken // the nodes of a cluster share one (routed admin requests)
	})
}

func TestClusterConfig(t *testing.T) {
	base := server.DefaultConfig()
	base.Brokers, base.NodeID, base.AdvertiseAddr = []string{"127.0.0.1:9092"}, "vault-0", "http://10.0.0.1:8200"
	base.MasterKey = "local:///kms/{tenant}.key"
	for name, tc := range map[string]struct {
		edit func(*server.Config)
		want string
	}{
		"ok":                 {func(*server.Config) {}, ""},
		"no brokers":         {func(c *server.Config) { c.Brokers = nil }, "--node-id needs --brokers"},
		"bad node id":        {func(c *server.Config) { c.NodeID = "../x" }, "--node-id"},
		"no advertise":       {func(c *server.Config) { c.AdvertiseAddr = "" }, "--advertise-addr"},
		"advertise path":     {func(c *server.Config) { c.AdvertiseAddr = "http://x:1/v1" }, "--advertise-addr"},
		"partitions":         {func(c *server.Config) { c.Partitions = 3 }, "--partitions=1"},
		"kafka-go":           {func(c *server.Config) { c.IngestConsumer = "kafka-go" }, "--ingest-consumer=kgo"},
		"advertise, no node": {func(c *server.Config) { c.NodeID = "" }, "--advertise-addr needs --node-id"},
	} {
		c := base
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", name, err, tc.want)
		}
	}
	// A shared master key is refused at Open: a shred could not reach
	// the keyset copies the other nodes and the directory topic hold.
	b := startClusterBroker(t)
	srv := &server.Server{Config: server.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NodeID: "vault-0", AdvertiseAddr: "http://127.0.0.1:1",
		Brokers: []string{b.addr}, KafkaSASLUser: b.user, KafkaSASLPasswordFile: b.passFile}}
	if err := srv.Open(t.Context()); err == nil || !strings.Contains(err.Error(), "per-tenant master key") {
		t.Errorf("Open with a shared master key = %v", err)
	}
	srv.Close()
}

// TestClusterReplicatesTenants: a tenant created on one node is known to
// the other (its keys installed, its token accepted, the take audited); a
// shred on one node shreds it on the other; a node that joins later takes
// both from the directory.
func TestClusterReplicatesTenants(t *testing.T) {
	b := startClusterBroker(t)
	na := startNode(t, b, "node-a", t.TempDir())
	nb := startNode(t, b, "node-b", t.TempDir())
	token := na.createTenant("acme")
	na.createTenant("globex")
	waitFor(t, 20*time.Second, "node-b knows acme and globex", func() bool {
		return nb.srv.Vault().Exists("acme") && nb.srv.Vault().Exists("globex")
	})
	if _, err := nb.srv.Vault().Authenticate(t.Context(), token, "stream.read", "tenants/acme"); err != nil {
		t.Fatalf("node-b refuses acme's token: %v", err)
	}
	var au auditResp
	nb.do("GET", "/v1/audit?action=tenant.replicate", nb.srv.AdminToken(), nil, &au)
	if n := countAction(au, "tenant.replicate"); n != 2 {
		t.Fatalf("node-b audited %d tenant.replicate records, want 2: %+v", n, au)
	}

	// An event, so that acme has a changelog; the shred deletes it.
	na.publish(events.TopicFor("acme"), rec("s1", event("e1", "s1", "created", `{}`)))
	waitFor(t, 20*time.Second, "acme's event applied", func() bool {
		st, got := historyOf(nb, "acme", token, "s1")
		return st == 200 && len(got) == 1
	})
	adm, err := kafka.NewAdmin([]string{b.addr}, kafka.Auth{User: b.user, Password: clusterPass})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	hasChangelog := func() bool {
		names, err := adm.ListTopics(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(names, events.ChangelogTopicFor("acme"))
	}
	if !hasChangelog() {
		t.Fatal("acme has no changelog topic after an event")
	}
	if st := na.do("DELETE", "/v1/tenants/acme?confirm=acme", na.srv.AdminToken(), nil, nil); st != 200 {
		t.Fatalf("shred on node-a = %d", st)
	}
	waitFor(t, 20*time.Second, "node-b shreds acme", func() bool { return !nb.srv.Vault().Exists("acme") })
	if st := nb.do("GET", "/v1/tenants/acme/streams", token, nil, nil); st != 410 {
		t.Fatalf("node-b answers a read of the shredded tenant %d, want 410", st)
	}
	if hasChangelog() {
		t.Fatal("acme's changelog topic is still on the brokers after the shred")
	}
	for _, n := range []*vault{na, nb} {
		if st := n.do("GET", "/v1/tenants/acme/streams/s1", token, nil, nil); st != 410 {
			t.Fatalf("%s answers a read of the shredded tenant %d, want 410", n.srv.Config.NodeID, st)
		}
	}
	if _, err := os.Stat(filepath.Join(b.kms, "acme.key")); !os.IsNotExist(err) {
		t.Fatalf("acme's own master key is still there: %v", err)
	}

	nc := startNode(t, b, "node-c", t.TempDir())
	if !nc.srv.Vault().Exists("globex") || nc.srv.Vault().Exists("acme") {
		t.Fatalf("node-c joining later: globex %v, acme %v; want globex only", nc.srv.Vault().Exists("globex"), nc.srv.Vault().Exists("acme"))
	}
}

func countAction(au auditResp, action string) int {
	n := 0
	for _, r := range au.Records {
		if string(r.Action) == action {
			n++
		}
	}
	return n
}

// historyOf is the event ids of tenant's stream read through node v, in
// version order, and the HTTP status.
func historyOf(v *vault, tenant, token, stream string) (int, []string) {
	var h historyResp
	st := v.do("GET", "/v1/tenants/"+tenant+"/streams/"+stream+"/events?limit=1000", token, nil, &h)
	var ids []string
	for i, e := range h.Events {
		if e.Version != uint64(i+1) {
			return -1, nil // renumbered or duplicated
		}
		ids = append(ids, e.ID)
	}
	return st, ids
}

// TestClusterServesAnyTenantAnywhere: three nodes on one broker, tenants
// created on each: every tenant's events are read through every node
// exactly once (proxied to the owner, which restored from the changelog
// what another node wrote); a cross-tenant read through a non-owner is
// still refused and flagged; a node that stops has its tenants taken by
// the others, and events published meanwhile are there exactly once.
func TestClusterServesAnyTenantAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes and a session timeout")
	}
	b := startClusterBroker(t)
	nodes := []*vault{
		startNode(t, b, "node-a", t.TempDir()),
		startNode(t, b, "node-b", t.TempDir()),
		startNode(t, b, "node-c", t.TempDir()),
	}
	const tenants, perRound = 12, 4
	type tenant struct {
		id, token string
		creator   *vault
	}
	var ts []tenant
	for i := range tenants {
		id := fmt.Sprintf("t%02d", i)
		c := nodes[i%len(nodes)]
		ts = append(ts, tenant{id, c.createTenant(id), c})
	}
	publishRound := func(round int) {
		for _, tn := range ts {
			var recs [][2][]byte
			for j := range perRound {
				id := fmt.Sprintf("%s-r%d-e%d", tn.id, round, j)
				recs = append(recs, rec("s1", event(id, "s1", "created", `{"n":1}`)))
			}
			tn.creator.publish(events.TopicFor(events.TenantID(tn.id)), recs...)
		}
	}
	want := func(rounds int, id string) []string {
		var out []string
		for r := range rounds {
			for j := range perRound {
				out = append(out, fmt.Sprintf("%s-r%d-e%d", id, r, j))
			}
		}
		return out
	}
	checkAll := func(rounds int, through []*vault) {
		t.Helper()
		for _, tn := range ts {
			for _, n := range through {
				var st int
				var got []string
				waitFor(t, 60*time.Second, fmt.Sprintf("%s's %d events through %s", tn.id, rounds*perRound, n.srv.Config.NodeID), func() bool {
					st, got = historyOf(n, tn.id, tn.token, "s1")
					return st == 200 && len(got) >= rounds*perRound
				})
				if !slices.Equal(got, want(rounds, tn.id)) {
					t.Fatalf("%s through %s: %q, want %q (exactly once, in order)", tn.id, n.srv.Config.NodeID, got, want(rounds, tn.id))
				}
			}
		}
	}
	publishRound(0)
	checkAll(1, nodes)

	// The cross-tenant matrix through every node that does not own the
	// victim: each crossing refused by the owner and flagged in the
	// owner's audit log, naming the node it came through.
	byID := map[string]*vault{}
	for _, n := range nodes {
		byID[n.srv.Config.NodeID] = n
	}
	crossings := 0
	for _, victim := range ts[:4] {
		ownerID, err := nodes[0].srv.TenantOwner(t.Context(), events.TenantID(victim.id))
		if err != nil {
			t.Fatal(err)
		}
		for _, attacker := range ts[:4] {
			if attacker.id == victim.id {
				continue
			}
			for _, through := range nodes {
				via := through.srv.Config.NodeID
				if via == ownerID {
					continue
				}
				if st := through.do("GET", "/v1/tenants/"+victim.id+"/streams/s1", attacker.token, nil, nil); st != 403 {
					t.Fatalf("%s's token on %s through %s = %d, want 403", attacker.id, victim.id, via, st)
				}
				crossings++
			}
		}
		flaggedVia := map[string]int{}
		for _, r := range byID[ownerID].audit("flagged=true").Records {
			if r.Tenant == victim.id && r.Details["node"] == ownerID {
				flaggedVia[r.Details["via_node"]]++
			}
		}
		for _, through := range nodes {
			if via := through.srv.Config.NodeID; via != ownerID && flaggedVia[via] != 3 {
				t.Fatalf("crossings into %s through %s flagged at its owner %s: %d, want 3 (%v)", victim.id, via, ownerID, flaggedVia[via], flaggedVia)
			}
		}
	}
	t.Logf("%d crossings through non-owners, each 403 and flagged at the owner", crossings)

	// node-c stops; its tenants move to the others, which restore them.
	owners := func() map[string]int {
		out := map[string]int{}
		for _, tn := range ts {
			id, err := nodes[0].srv.TenantOwner(t.Context(), events.TenantID(tn.id))
			if err != nil {
				id = "none"
			}
			out[id]++
		}
		return out
	}
	before := owners()
	if before["node-c"] == 0 || before["node-a"]+before["node-b"]+before["node-c"] != tenants {
		t.Fatalf("owners before the stop: %v; want every tenant owned, some by node-c", before)
	}
	// The keys of node-c's tenants are rotated (through node-a: proxied
	// to the owner, which sends the new keyset to the others), and events
	// sealed under the new keys are written; a rewrap is refused (the
	// changelog keeps values sealed under the older keys).
	for _, tn := range ts {
		if id, _ := nodes[0].srv.TenantOwner(t.Context(), events.TenantID(tn.id)); id != "node-c" {
			continue
		}
		if st := nodes[0].do("POST", "/v1/tenants/"+tn.id+"/keys/rotate", nodes[0].srv.AdminToken(), map[string]any{}, nil); st != 200 {
			t.Fatalf("rotate %s through node-a = %d", tn.id, st)
		}
		if st := nodes[2].do("POST", "/v1/tenants/"+tn.id+"/keys/rotate", nodes[2].srv.AdminToken(), map[string]any{"rewrap": true}, nil); st != 400 {
			t.Fatalf("rotate with rewrap of %s on a cluster node = %d, want 400", tn.id, st)
		}
	}
	publishRound(1)
	checkAll(2, nodes)
	nodes[2].stop()
	publishRound(2)
	checkAll(3, nodes[:2])
	after := owners()
	if after["node-c"] != 0 || after["node-a"]+after["node-b"] != tenants {
		t.Fatalf("owners after node-c stopped: %v; want node-a and node-b only", after)
	}
	// Each tenant's owner recorded taking it.
	for _, tn := range ts {
		id, _ := nodes[0].srv.TenantOwner(t.Context(), events.TenantID(tn.id))
		n := nodes[0]
		if id == "node-b" {
			n = nodes[1]
		}
		waitFor(t, 20*time.Second, tn.id+"'s owner "+id+" records taking it (tenant.acquire)", func() bool {
			for _, r := range n.audit("action=tenant.acquire").Records {
				if r.Tenant == tn.id && r.Details["node"] == id {
					return true
				}
			}
			return false
		})
	}
	t.Logf("owners before %v, after %v", before, after)
}

// TestClusterHandOff: a node that joins takes its share of the tenants
// from the node that held them all (cooperative-sticky: the others stay);
// the releasing node writes tenant.release with its checkpoint, and the
// acquiring node's tenant.acquire names that node and checkpoint, so the
// two logs link; reads through either node still see every event once.
func TestClusterHandOff(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a rebalance")
	}
	b := startClusterBroker(t)
	na := startNode(t, b, "node-a", t.TempDir())
	var tokens []string
	for i := range 6 {
		id := fmt.Sprintf("h%d", i)
		tokens = append(tokens, na.createTenant(id))
		na.publish(events.TopicFor(events.TenantID(id)), rec("s1", event(id+"-e0", "s1", "created", `{}`)))
	}
	for i := range 6 {
		id := fmt.Sprintf("h%d", i)
		waitFor(t, 30*time.Second, id+" applied on node-a", func() bool {
			st, got := historyOf(na, id, tokens[i], "s1")
			return st == 200 && len(got) == 1
		})
	}
	nb := startNode(t, b, "node-b", t.TempDir())
	moved := map[string]bool{}
	waitFor(t, 60*time.Second, "node-b owns some tenants", func() bool {
		clear(moved)
		for i := range 6 {
			id := fmt.Sprintf("h%d", i)
			if o, err := na.srv.TenantOwner(t.Context(), events.TenantID(id)); err == nil && o == "node-b" {
				moved[id] = true
			}
		}
		return len(moved) > 0
	})
	releases := map[string]map[string]string{}
	waitFor(t, 30*time.Second, "node-b's acquire records name node-a's hand-off", func() bool {
		for _, r := range na.audit("action=tenant.release").Records {
			releases[r.Tenant] = r.Details
		}
		n := 0
		for _, r := range nb.audit("action=tenant.acquire").Records {
			if moved[r.Tenant] && r.Details["from_node"] == "node-a" && r.Details["from_checkpoint_size"] != "" {
				n++
			}
		}
		return n == len(moved)
	})
	for id := range moved {
		if releases[id] == nil {
			t.Errorf("node-a wrote no tenant.release of %s", id)
		}
	}
	for i := range 6 {
		id := fmt.Sprintf("h%d", i)
		for _, n := range []*vault{na, nb} {
			if st, got := historyOf(n, id, tokens[i], "s1"); st != 200 || !slices.Equal(got, []string{id + "-e0"}) {
				t.Fatalf("%s through %s after the hand-off: %d %q", id, n.srv.Config.NodeID, st, got)
			}
		}
	}
	t.Logf("moved to node-b: %v", moved)
}
