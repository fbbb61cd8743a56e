package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/cluster"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/keys"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/httpapi"
)

// validateCluster checks the flags of a node of a cluster.
func (c *Config) validateCluster() []error {
	if c.NodeID == "" {
		if c.AdvertiseAddr != "" {
			return []error{errors.New("--advertise-addr needs --node-id")}
		}
		return nil
	}
	var errs []error
	if err := cluster.ValidNodeID(c.NodeID); err != nil {
		errs = append(errs, fmt.Errorf("--node-id: %w", err))
	}
	if err := cluster.ValidAddr(c.AdvertiseAddr); err != nil {
		errs = append(errs, fmt.Errorf("--advertise-addr (required with --node-id): %w", err))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("--node-id needs --brokers: the nodes of a cluster share one Kafka cluster, not an embedded broker each"))
	}
	if c.Partitions != 1 {
		errs = append(errs, errors.New("--node-id needs --partitions=1: a tenant is placed on one node, its topic's one partition"))
	}
	if c.IngestConsumer != "kgo" {
		errs = append(errs, errors.New("--node-id needs --ingest-consumer=kgo (one group membership, static, cooperative-sticky)"))
	}
	return errs
}

// clusterNode is this node's part of a cluster: the directory, and the
// worker that takes, in the directory's order, what other nodes publish.
// The directory's reader only queues (a create here waits for its own
// record to be read back while it holds the vault's create lock).
type clusterNode struct {
	s   *Server
	dir *cluster.Directory

	mu      sync.Mutex
	queue   []cluster.Tenant
	wake    chan struct{}
	seen    map[events.TenantID]bool // tenant → shredded, as last published
	stop    chan struct{}
	stopped chan struct{}

	// ctx ends at close; bg counts the hand-off goroutines, waited for.
	ctx       context.Context
	cancel    context.CancelFunc
	bg        sync.WaitGroup
	closeOnce sync.Once
	closing   bool // under mu: no more background goroutines
}

// openCluster joins the cluster directory, takes what it holds, and
// publishes what this node has that the directory lacks (a create or a
// shred whose publication a crash cut short).
func (s *Server) openCluster(ctx context.Context) error {
	cfg := &s.Config
	if cfg.NodeID == "" {
		return nil
	}
	n := &clusterNode{s: s, wake: make(chan struct{}, 1), seen: make(map[events.TenantID]bool), stop: make(chan struct{}), stopped: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	go n.work()
	dir, err := cluster.Open(ctx, cluster.Config{Brokers: s.brokers, Auth: s.kafkaAuth, Self: cluster.Node{ID: cfg.NodeID, Addr: cfg.AdvertiseAddr},
		Group: cfg.ConsumerGroup, OnTenant: n.enqueue, Logger: s.Logger})
	if err != nil {
		n.cancel()
		close(n.stop)
		<-n.stopped
		return fmt.Errorf("cluster: %w", err)
	}
	n.dir = dir
	s.cluster = n
	if err := n.drain(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	seen := make(map[events.TenantID]bool, len(n.seen))
	for t, shredded := range n.seen {
		seen[t] = shredded
	}
	n.mu.Unlock()
	for t, state := range s.vault.ReplicaStates() {
		shredded, known := seen[t]
		switch {
		case state == vault.StateActive && !known:
			entry, ok := s.vault.ReplicaEntry(t)
			if !ok {
				continue
			}
			if err := n.publish(ctx, t, entry); err != nil {
				return err
			}
		case state == vault.StateShredded && !shredded:
			if err := n.publishShred(ctx, t); err != nil {
				return err
			}
		}
	}
	s.Logger.Info("cluster: joined", "node", cfg.NodeID, "addr", cfg.AdvertiseAddr, "nodes", len(dir.Nodes()))
	return nil
}

// publish sends tenant t (entry, and its wrapped keyset) to the cluster.
func (n *clusterNode) publish(ctx context.Context, t events.TenantID, entry []byte) error {
	ks, err := n.s.keystore.WrappedKeyset(t)
	if err != nil {
		return err
	}
	return n.dir.PublishTenant(ctx, cluster.Tenant{ID: t, Keyset: ks, Entry: entry})
}

func (n *clusterNode) publishShred(ctx context.Context, t events.TenantID) error {
	return n.dir.PublishTenant(ctx, cluster.Tenant{ID: t, Shredded: true})
}

func (n *clusterNode) enqueue(t cluster.Tenant) {
	n.mu.Lock()
	n.seen[t.ID] = t.Shredded
	n.queue = append(n.queue, t)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// drain returns once everything the directory had is taken here.
func (n *clusterNode) drain(ctx context.Context) error {
	if err := n.dir.CaughtUp(ctx); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for {
		n.mu.Lock()
		left := len(n.queue)
		n.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (n *clusterNode) work() {
	defer close(n.stopped)
	for {
		n.mu.Lock()
		var next *cluster.Tenant
		if len(n.queue) > 0 {
			next = &n.queue[0]
		}
		n.mu.Unlock()
		if next == nil {
			select {
			case <-n.wake:
				continue
			case <-n.stop:
				return
			}
		}
		n.take(*next)
		n.mu.Lock()
		n.queue = n.queue[1:]
		n.mu.Unlock()
	}
}

// take applies one tenant record another node published. Errors are
// logged (never a keyset or an entry) and the record skipped: a keyset
// that does not open here is not installed.
func (n *clusterNode) take(rec cluster.Tenant) {
	if rec.By == n.s.Config.NodeID {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := n.s.Logger.With("tenant", rec.ID, "from_node", rec.By)
	if rec.Shredded {
		if err := n.s.vault.ShredReplica(ctx, rec.ID, rec.By); err != nil {
			log.Error("cluster: shred of a tenant shredded on another node failed (retried at the next start)", "err", err)
		}
		return
	}
	if _, _, err := n.s.keystore.InstallWrapped(rec.ID, rec.Keyset); err != nil {
		if !errors.Is(err, keys.ErrStaleKeyset) {
			log.Error("cluster: the tenant's keyset from another node is not installed", "err", err)
		}
		return
	}
	if _, err := n.s.vault.AdoptTenant(ctx, rec.Entry, rec.By); err != nil {
		log.Error("cluster: the tenant from another node is not taken", "err", err)
	}
}

func (n *clusterNode) close() {
	if n == nil {
		return
	}
	n.closeOnce.Do(n.doClose)
}

// goBackground counts one more background goroutine, unless the node is
// closing (false).
func (n *clusterNode) goBackground() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return false
	}
	n.bg.Add(1)
	return true
}

func (n *clusterNode) doClose() {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.cancel()
	n.bg.Wait()
	close(n.stop)
	<-n.stopped
	n.dir.Close()
}

// openTxnIngest makes the ingest of a node of a cluster: a RoundRunner
// whose rounds are Kafka transactions (a round's changelog records and
// its ingress offsets are committed together, or not at all), on a static
// member of the group that tells the vault which tenants it lost.
func (s *Server) openTxnIngest(keep bool) error {
	cfg := &s.Config
	var err error
	if s.txn, err = kafka.NewTxnConsumer(kafka.TxnConsumerConfig{
		ConsumerConfig: kafka.ConsumerConfig{Brokers: s.brokers, Group: cfg.ConsumerGroup, Topics: events.TenantTopicShape,
			InstanceID: cfg.NodeID, OnAssigned: s.assigned, OnRevoked: s.released, OnLost: s.released, Auth: s.kafkaAuth, Logger: s.Logger},
		TransactionalID: "tenantvault-" + cfg.NodeID,
	}); err != nil {
		return fmt.Errorf("kafka txn consumer: %w", err)
	}
	s.runner, err = ingest.NewRoundRunner(ingest.RoundsConfig{Txn: s.txn, Vault: s.vault, Deleter: s.admin, KeepIngress: keep, Logger: s.Logger,
		EnsureChangelog: func(ctx context.Context, topic string) error { return kafka.EnsureChangelogTopic(ctx, s.admin, topic) },
		StuckAfter:      cfg.IngestStallAfter, LagInterval: cfg.IngestLagInterval, Lag: groupLag{s.admin, cfg.ConsumerGroup}, ObserveBatch: s.metrics.ObserveBatch})
	return err
}

// changelogs is vault.Changelog on the cluster's tenant.<id>.sealed
// topics: restore and shred. The ingest round writes them, in its
// transaction.
type changelogs struct{ c *kafka.Changelogs }

func (c changelogs) Read(ctx context.Context, t events.TenantID, from int64, fn func(int64, []byte) error) error {
	return c.c.Read(ctx, events.ChangelogTopicFor(t), from, fn)
}

func (c changelogs) Delete(ctx context.Context, t events.TenantID) error {
	err := c.c.Delete(ctx, events.ChangelogTopicFor(t))
	if errors.Is(err, kafka.ErrTopicNotFound) {
		return nil
	}
	return err
}

// router is httpapi.Router on the cluster directory: a tenant is served
// by the node the consumer group gave its topic to.
type router struct{ s *Server }

func (r router) Owner(ctx context.Context, t events.TenantID) (httpapi.Owner, error) {
	n := r.s.cluster
	if n == nil || !r.s.vault.Exists(string(t)) {
		// One node, or a tenant unknown, shredded or moved: answered
		// here (404, 410), as every node knows every tenant.
		return httpapi.Owner{Local: true}, nil
	}
	node, local, err := n.dir.Owner(ctx, t)
	if errors.Is(err, cluster.ErrNoOwner) {
		return httpapi.Owner{}, httpapi.ErrOwnerUnknown
	}
	if err != nil {
		return httpapi.Owner{}, err
	}
	return httpapi.Owner{Node: node.ID, Addr: node.Addr, Local: local}, nil
}

// released hands off the tenants whose topics this node lost: each gets
// a tenant.release record, and the checkpoint taken after it is published
// for the node that acquires the tenant. In the background: kgo's
// goroutine calls it.
func (s *Server) released(m map[string][]int32) {
	n := s.cluster
	for _, t := range tenantsOf(m) {
		s.vault.Released(t)
		if n == nil || !n.goBackground() {
			continue // one node, or closing: nothing to hand off
		}
		go func() {
			defer n.bg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
			defer cancel()
			h, err := s.vault.Release(ctx, t, s.Config.NodeID)
			if err == nil {
				err = n.dir.PublishHandOff(ctx, cluster.HandOff{Tenant: t, Size: h.Size, Root: h.Root, Checkpoint: h.Checkpoint, At: time.Now().UTC()})
			}
			if err != nil {
				s.Logger.Warn("cluster: hand-off of a released tenant", "tenant", t, "err", err)
			}
		}()
	}
}

// assigned takes the tenants whose topics this node was given: a
// tenant.acquire record naming the last hand-off, and the store caught up
// with its changelog at once, so that reads do not wait for it.
func (s *Server) assigned(m map[string][]int32) {
	n := s.cluster
	if n == nil {
		return
	}
	for _, t := range tenantsOf(m) {
		if !n.goBackground() {
			return
		}
		go func() {
			defer n.bg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Minute)
			defer cancel()
			start := time.Now()
			// A tenant just created on another node: its topic may be
			// assigned here before the directory brought it.
			for !s.vault.Exists(string(t)) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				if time.Since(start) > 30*time.Second {
					return
				}
			}
			if err := s.vault.Restore(ctx, t); err != nil {
				s.Logger.Warn("cluster: restore from the changelog (retried at the next use)", "tenant", t, "err", err)
			}
			// The releasing node's hand-off: published when it let the
			// topic go, just before or just after this assignment; none
			// from a node that died.
			var from *vault.HandOff
			for wait := time.Now(); from == nil && ctx.Err() == nil && time.Since(wait) < handOffWait; time.Sleep(50 * time.Millisecond) {
				if h, ok := n.dir.LastHandOff(t); ok && h.Node != s.Config.NodeID && time.Since(h.At) < handOffRecent {
					from = &vault.HandOff{Node: h.Node, Size: h.Size, Root: h.Root, Checkpoint: h.Checkpoint}
				}
			}
			if err := s.vault.Acquire(ctx, t, s.Config.NodeID, from); err != nil {
				s.Logger.Warn("cluster: acquire", "tenant", t, "err", err)
			}
		}()
	}
}

// handOffWait is how long an acquire waits for the releasing node's
// hand-off; handOffRecent how old one may be to be this acquire's.
const handOffWait, handOffRecent = 3 * time.Second, 30 * time.Second

func tenantsOf(m map[string][]int32) []events.TenantID {
	var out []events.TenantID
	for topic := range m {
		if t, err := events.TenantFromTopic(topic); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// TenantOwner returns the id of the node that holds tenant t's topic now
// ("" on one node).
func (s *Server) TenantOwner(ctx context.Context, t events.TenantID) (string, error) {
	if s.cluster == nil {
		return "", nil
	}
	n, _, err := s.cluster.dir.Owner(ctx, t)
	return n.ID, err
}

// clusterStatus answers GET /v1/cluster.
func (s *Server) clusterStatus(ctx context.Context) (httpapi.ClusterStatus, error) {
	n := s.cluster
	if n == nil {
		return httpapi.ClusterStatus{}, errors.New("not a cluster")
	}
	st := httpapi.ClusterStatus{Node: s.Config.NodeID, Nodes: []httpapi.ClusterNodeStatus{}, Tenants: []httpapi.TenantOwnerStatus{}}
	for _, nd := range n.dir.Nodes() {
		st.Nodes = append(st.Nodes, httpapi.ClusterNodeStatus{ID: nd.ID, Addr: nd.Addr})
	}
	slices.SortFunc(st.Nodes, func(a, b httpapi.ClusterNodeStatus) int { return strings.Compare(a.ID, b.ID) })
	for _, t := range s.vault.Tenants() {
		if !s.vault.Exists(string(t)) {
			continue
		}
		owner, _, err := n.dir.Owner(ctx, t)
		if err != nil && !errors.Is(err, cluster.ErrNoOwner) {
			return httpapi.ClusterStatus{}, err
		}
		st.Tenants = append(st.Tenants, httpapi.TenantOwnerStatus{ID: string(t), Owner: owner.ID})
	}
	return st, nil
}
