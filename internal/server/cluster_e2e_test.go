package server_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
)

// clusterBroker is one embedded broker with a SCRAM superuser, as a real
// cluster the nodes reach with --brokers.
type clusterBroker struct {
	addr, user, passFile, kms string
}

func startClusterBroker(t *testing.T) clusterBroker {
	t.Helper()
	const user, pass = "tenantvault", "cluster-test-password-0123456789abcdef"
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

	if st := na.do("DELETE", "/v1/tenants/acme?confirm=acme", na.srv.AdminToken(), nil, nil); st != 200 {
		t.Fatalf("shred on node-a = %d", st)
	}
	waitFor(t, 20*time.Second, "node-b shreds acme", func() bool { return !nb.srv.Vault().Exists("acme") })
	if st := nb.do("GET", "/v1/tenants/acme/streams", token, nil, nil); st != 410 {
		t.Fatalf("node-b answers a read of the shredded tenant %d, want 410", st)
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
