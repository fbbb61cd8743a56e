package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/internal/kafka"
)

// clusterNode is a vaultd child process that is a node of a cluster.
type clusterNode struct {
	id, httpAddr, base, dir string
	p                       *proc
}

// startClusterNode starts vaultd node id on dir, on the brokers at
// brokers (SCRAM user tenantvault with the password in passFile), with
// the cluster's per-tenant master keys in kms and admin token admin.
func startClusterNode(t *testing.T, id, dir, brokers, passFile, kms, admin string) *clusterNode {
	t.Helper()
	n := &clusterNode{id: id, httpAddr: freePort(t), dir: dir}
	n.base = "http://" + n.httpAddr
	n.p = startProc(t, n.httpAddr,
		"TENANTVAULT_DATA_DIR="+dir, "TENANTVAULT_HTTP_ADDR="+n.httpAddr, "TENANTVAULT_BROKERS="+brokers,
		"TENANTVAULT_KAFKA_SASL_USER=tenantvault", "TENANTVAULT_KAFKA_SASL_PASSWORD_FILE="+passFile,
		"TENANTVAULT_MASTER_KEY=local://"+filepath.Join(kms, "{tenant}.key"), "TENANTVAULT_ADMIN_TOKEN="+admin,
		"TENANTVAULT_NODE_ID="+id, "TENANTVAULT_ADVERTISE_ADDR="+n.base, "TENANTVAULT_AUDIT_ORIGIN="+id+".example/audit")
	return n
}

// TestClusterKillNode: three vaultd processes on one broker, 50 tenants
// created through all three; under a steady load one node is killed with
// SIGKILL; its tenants are taken over by the others (from their sealed
// changelogs), and every event published, before, during and after the
// kill, is read exactly once through either surviving node.
func TestClusterKillNode(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes and a session timeout")
	}
	const user, pass = "tenantvault", "cluster-process-test-password-0123456789"
	broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		Auth: &kafka.EmbeddedAuth{SuperUser: user, SuperPassword: pass}})
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	passFile := filepath.Join(t.TempDir(), "kafka.password")
	if err := os.WriteFile(passFile, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	admin := "tva_" + hex.EncodeToString(raw)
	kms := t.TempDir()
	var nodes []*clusterNode
	for _, id := range []string{"node-a", "node-b", "node-c"} {
		nodes = append(nodes, startClusterNode(t, id, t.TempDir(), broker.Addr(), passFile, kms, admin))
	}

	const tenants = 50
	type tenant = clusterTenant
	var ts []tenant
	for i := range tenants {
		id := fmt.Sprintf("k%02d", i)
		n := nodes[i%len(nodes)]
		var created struct {
			Token string
			Kafka struct{ User, Password string }
		}
		if st := api(t, "POST", n.base+"/v1/tenants", admin, `{"id":"`+id+`"}`, &created); st != 201 {
			t.Fatalf("create %s on %s = %d", id, n.id, st)
		}
		producers.Store(id, kafka.Auth{User: created.Kafka.User, Password: created.Kafka.Password})
		ts = append(ts, tenant{id, created.Token})
	}

	// The load: rounds of 5 events to every tenant, until told to stop;
	// a round that fails is published again (the producer's retries may
	// have written it: the vault must not apply an event id twice).
	var published sync.Map // tenant -> int (events published, in order)
	var stop atomic.Bool
	var rounds atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; !stop.Load(); round++ {
			for _, tn := range ts {
				from := round * 5
				for publishQuiet(broker.Addr(), tn.id, from, 5) != nil {
					time.Sleep(100 * time.Millisecond)
				}
				published.Store(tn.id, from+5)
			}
			rounds.Add(1)
		}
	}()
	waitRounds := func(n int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for rounds.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the load did only %d rounds", rounds.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitRounds(2)
	killed := nodes[2]
	if err := killed.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-killed.p.done
	start := rounds.Load()
	waitRounds(start + 3)
	stop.Store(true)
	<-done

	checkExactlyOnce(t, ts, &published, nodes[:2])
	t.Logf("%d tenants, %d rounds of 5 events each (%d after the kill), read exactly once through node-a and node-b", tenants, rounds.Load(), rounds.Load()-start)

	// node-c comes back (same id, same data dir): the group gives it its
	// share again, and the events published after are there exactly once
	// through all three.
	nodes[2] = startClusterNode(t, "node-c", killed.dir, broker.Addr(), passFile, kms, admin)
	back := 0
	deadline := time.Now().Add(90 * time.Second)
	for back == 0 && time.Now().Before(deadline) {
		back = ownedBy(t, nodes[0].base, admin, "node-c")
		time.Sleep(500 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("node-c owns no tenant 90s after it came back; log:\n%s", tail(nodes[2].p.log(), 40))
	}
	stop.Store(false)
	done = make(chan struct{})
	go func() {
		defer close(done)
		r, _ := published.Load(ts[0].id)
		base := r.(int) / 5
		for round := base; round < base+2; round++ {
			for _, tn := range ts {
				for publishQuiet(broker.Addr(), tn.id, round*5, 5) != nil {
					time.Sleep(100 * time.Millisecond)
				}
				published.Store(tn.id, round*5+5)
			}
		}
	}()
	<-done
	checkExactlyOnce(t, ts, &published, nodes)
	t.Logf("node-c back: it holds %d tenants; every event exactly once through all three", back)
}

type clusterTenant struct{ id, token string }

func checkExactlyOnce(t *testing.T, ts []clusterTenant, published *sync.Map, nodes []*clusterNode) {
	t.Helper()
	for _, tn := range ts {
		v, _ := published.Load(tn.id)
		want := v.(int)
		for _, n := range nodes {
			var got []string
			deadline := time.Now().Add(90 * time.Second)
			for {
				got = eventIDs(n.base, tn.id, tn.token)
				if len(got) >= want || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if len(got) != want {
				t.Fatalf("%s through %s: %d events, want %d\nlog of %s:\n%s", tn.id, n.id, len(got), want, n.id, tail(n.p.log(), 40))
			}
			seen := map[string]bool{}
			for _, id := range got {
				if seen[id] {
					t.Fatalf("%s through %s: event %s twice", tn.id, n.id, id)
				}
				seen[id] = true
			}
			for j := range want {
				if !seen[fmt.Sprintf("ev-%d", j)] {
					t.Fatalf("%s through %s: event ev-%d lost", tn.id, n.id, j)
				}
			}
		}
	}
}

// ownedBy counts the tenants node holds, as the cluster's status says.
func ownedBy(t *testing.T, base, admin, node string) int {
	var out struct {
		Tenants []struct {
			ID, Owner string
		}
	}
	if apiQuiet(base+"/v1/cluster", admin, &out) != 200 {
		return 0
	}
	n := 0
	for _, tn := range out.Tenants {
		if tn.Owner == node {
			n++
		}
	}
	return n
}

// eventIDs returns the ids of every event of tenant's 20 streams (as
// publishN spreads them) read through base.
func eventIDs(base, tenant, token string) []string {
	var ids []string
	for s := range 20 {
		var h struct{ Events []struct{ ID string } }
		if apiQuiet(fmt.Sprintf("%s/v1/tenants/%s/streams/stream-%d/events?limit=1000", base, tenant, s), token, &h) != 200 {
			continue
		}
		for _, e := range h.Events {
			ids = append(ids, e.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
