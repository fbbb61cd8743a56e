package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// Topic is the cluster's directory topic: compacted, one partition.
const Topic = "tenantvault.cluster"

// Key prefixes of the directory's records.
const (
	nodePrefix    = "node/"
	tenantPrefix  = "tenant/"
	handoffPrefix = "handoff/"
)

// ValidNodeID reports whether id may name a node: 1 to 63 characters of
// [a-z0-9-], starting with a letter or digit (a DNS label, as a
// StatefulSet's pod names are).
func ValidNodeID(id string) error { return events.CheckNodeID(id) }

// ValidAddr reports whether addr is a node's base URL: http or https, a
// host, no path, query, fragment or credentials.
func ValidAddr(addr string) error {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid advertise address %.200q: want http(s)://host:port", addr)
	}
	return nil
}

// Node is one vaultd of the cluster.
type Node struct {
	ID      string    `json:"id"`
	Addr    string    `json:"addr"` // base URL other nodes proxy to
	Started time.Time `json:"started"`
}

// Tenant is a tenant as the directory holds it.
type Tenant struct {
	ID events.TenantID `json:"id"`
	// Keyset is the tenant's keyset file, wrapped by its own master key
	// (keys.Keystore.WrappedKeyset); nil in a tombstone.
	Keyset []byte `json:"keyset,omitempty"`
	// Entry is the tenant's registry entry (no secrets: its token as a
	// hash); the vault package defines it.
	Entry json.RawMessage `json:"entry,omitempty"`
	// Shredded: the tenant's keys were destroyed; every node destroys its
	// copy and tombstones the id.
	Shredded bool `json:"shredded,omitempty"`
	// By is the node that wrote the record.
	By string `json:"by"`
}

// HandOff is the audit checkpoint a node took when it released a
// tenant's topic, for the node that acquires it to name.
type HandOff struct {
	Tenant     events.TenantID `json:"tenant"`
	Node       string          `json:"node"`
	Size       uint64          `json:"size"`
	Root       string          `json:"root"`
	Checkpoint []byte          `json:"checkpoint,omitempty"`
	At         time.Time       `json:"at"`
}

// Config configures a Directory.
type Config struct {
	Brokers []string // required
	Auth    kafka.Auth
	Self    Node // this node; ID and Addr required
	// Group is the consumer group the nodes consume tenant topics in;
	// Owner asks it who holds a tenant's topic. Required.
	Group string
	// OnTenant is called with every tenant record, in the order of the
	// topic, from one goroutine (the node's own records included).
	OnTenant func(Tenant)
	// OwnersMaxAge bounds how old the group's assignment Owner answers
	// from may be; default 1s.
	OwnersMaxAge time.Duration
	Logger       *slog.Logger
}

// Directory is this node's view of the cluster.
type Directory struct {
	cfg   Config
	log   *kafka.TopicLog
	admin *kafka.Admin

	mu       sync.Mutex
	nodes    map[string]Node
	handoffs map[events.TenantID]HandOff

	ownMu   sync.Mutex
	owners  map[string]map[int32]string
	ownedAt time.Time
}

// Open joins the directory: it publishes this node's record and returns
// once it read every record the topic had.
func Open(ctx context.Context, cfg Config) (*Directory, error) {
	if err := ValidNodeID(cfg.Self.ID); err != nil {
		return nil, err
	}
	if err := ValidAddr(cfg.Self.Addr); err != nil {
		return nil, err
	}
	if cfg.Group == "" {
		return nil, errors.New("cluster: no consumer group")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OwnersMaxAge == 0 {
		cfg.OwnersMaxAge = time.Second
	}
	if cfg.Self.Started.IsZero() {
		cfg.Self.Started = time.Now().UTC()
	}
	d := &Directory{cfg: cfg, nodes: make(map[string]Node), handoffs: make(map[events.TenantID]HandOff)}
	var err error
	if d.admin, err = kafka.NewAdmin(cfg.Brokers, cfg.Auth); err != nil {
		return nil, err
	}
	d.log, err = kafka.OpenTopicLog(ctx, kafka.TopicLogConfig{Brokers: cfg.Brokers, Auth: cfg.Auth, Topic: Topic, Apply: d.apply, Logger: cfg.Logger})
	if err != nil {
		d.admin.Close()
		return nil, err
	}
	self, err := json.Marshal(cfg.Self)
	if err == nil {
		var off int64
		if off, err = d.log.Put(ctx, []byte(nodePrefix+cfg.Self.ID), self); err == nil {
			err = d.log.WaitApplied(ctx, off)
		}
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("cluster: join: %w", err)
	}
	return d, nil
}

// apply takes one directory record; malformed ones are skipped.
func (d *Directory) apply(key, value []byte, offset int64) {
	k := string(key)
	switch {
	case strings.HasPrefix(k, nodePrefix):
		id := strings.TrimPrefix(k, nodePrefix)
		if ValidNodeID(id) != nil {
			d.skip(offset, "invalid node id")
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if value == nil {
			delete(d.nodes, id)
			return
		}
		var n Node
		if err := json.Unmarshal(value, &n); err != nil || n.ID != id || ValidAddr(n.Addr) != nil {
			d.skip(offset, "malformed node record")
			return
		}
		d.nodes[id] = n
	case strings.HasPrefix(k, tenantPrefix):
		id, err := events.ParseTenantID(strings.TrimPrefix(k, tenantPrefix))
		if err != nil {
			d.skip(offset, "invalid tenant id")
			return
		}
		if value == nil {
			return // compaction of a tombstone: nothing to undo
		}
		var t Tenant
		if err := json.Unmarshal(value, &t); err != nil || t.ID != id || (!t.Shredded && (len(t.Keyset) == 0 || len(t.Entry) == 0)) {
			d.skip(offset, "malformed tenant record")
			return
		}
		if d.cfg.OnTenant != nil {
			d.cfg.OnTenant(t)
		}
	case strings.HasPrefix(k, handoffPrefix):
		id, err := events.ParseTenantID(strings.TrimPrefix(k, handoffPrefix))
		if err != nil {
			d.skip(offset, "invalid tenant id")
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if value == nil {
			delete(d.handoffs, id)
			return
		}
		var h HandOff
		if err := json.Unmarshal(value, &h); err != nil || h.Tenant != id || ValidNodeID(h.Node) != nil {
			d.skip(offset, "malformed hand-off record")
			return
		}
		d.handoffs[id] = h
	default:
		d.skip(offset, "unknown record key")
	}
}

func (d *Directory) skip(offset int64, why string) {
	d.cfg.Logger.Warn("cluster directory: record skipped", "topic", Topic, "offset", offset, "why", why)
}

// PublishTenant writes t's record and returns once this node applied it
// (OnTenant ran with it).
func (d *Directory) PublishTenant(ctx context.Context, t Tenant) error {
	if _, err := events.ParseTenantID(string(t.ID)); err != nil {
		return err
	}
	t.By = d.cfg.Self.ID
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	off, err := d.log.Put(ctx, []byte(tenantPrefix+string(t.ID)), v)
	if err != nil {
		return fmt.Errorf("cluster: publish tenant %s: %w", t.ID, err)
	}
	return d.log.WaitApplied(ctx, off)
}

// CaughtUp returns once every record the directory had is applied here.
func (d *Directory) CaughtUp(ctx context.Context) error { return d.log.CaughtUp(ctx) }

// Nodes returns the nodes known, by id.
func (d *Directory) Nodes() map[string]Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]Node, len(d.nodes))
	for id, n := range d.nodes {
		out[id] = n
	}
	return out
}

// ErrNoOwner: no node holds the tenant's topic now (the group is
// rebalancing, the owner left, or the topic is new). Retry shortly.
var ErrNoOwner error = &events.Error{Code: events.EUNAVAILABLE, Message: "no node holds the tenant now (it is moving); retry shortly"}

// Owner returns the node that holds tenant t's topic (partition 0) in the
// group's current assignment, and whether it is this node. It answers
// from an assignment at most OwnersMaxAge old, read again once when the
// owner is unknown or not in the directory. It fails with ErrNoOwner when
// no node holds it.
func (d *Directory) Owner(ctx context.Context, t events.TenantID) (Node, bool, error) {
	topic := events.TopicFor(t)
	for attempt := 0; attempt < 2; attempt++ {
		owners, err := d.groupOwners(ctx, attempt > 0)
		if err != nil {
			return Node{}, false, err
		}
		id, ok := owners[topic][0]
		if !ok {
			continue
		}
		if id == d.cfg.Self.ID {
			return d.cfg.Self, true, nil
		}
		d.mu.Lock()
		n, known := d.nodes[id]
		d.mu.Unlock()
		if known {
			return n, false, nil
		}
	}
	return Node{}, false, ErrNoOwner
}

func (d *Directory) groupOwners(ctx context.Context, fresh bool) (map[string]map[int32]string, error) {
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	if !fresh && d.owners != nil && time.Since(d.ownedAt) < d.cfg.OwnersMaxAge {
		return d.owners, nil
	}
	owners, err := d.admin.GroupOwners(ctx, d.cfg.Group)
	if err != nil {
		return nil, &events.Error{Code: events.EUNAVAILABLE, Message: "the consumer group's assignment is unavailable: " + err.Error()}
	}
	d.owners, d.ownedAt = owners, time.Now()
	return owners, nil
}

// Close stops following the directory. The node's record stays: a node
// restarted with the same id (static membership) answers at its address
// again.
func (d *Directory) Close() {
	_ = d.log.Close()
	d.admin.Close()
}

// PublishHandOff writes h, the checkpoint this node took releasing
// h.Tenant's topic.
func (d *Directory) PublishHandOff(ctx context.Context, h HandOff) error {
	h.Node = d.cfg.Self.ID
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	_, err = d.log.Put(ctx, []byte(handoffPrefix+string(h.Tenant)), v)
	return err
}

// LastHandOff returns the last hand-off of tenant t published, if any.
func (d *Directory) LastHandOff(t events.TenantID) (HandOff, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.handoffs[t]
	return h, ok
}
