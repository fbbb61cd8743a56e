package vault

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// In a cluster every node knows every tenant: the node that creates one
// publishes its registry entry (Config.Replicate) with its wrapped keyset,
// and each other node takes them with AdoptTenant once its keyset is
// installed; a shred published (Config.ReplicateShred) is done on each
// other node by ShredReplica. Which node writes a tenant's store is the
// consumer group's assignment of its topic; the others hold its keys and
// entry, to authenticate and to take the tenant over.

// ReplicaEntry returns tenant t's registry entry (JSON, no secrets), to
// publish it to the cluster again.
func (v *Vault) ReplicaEntry(t events.TenantID) ([]byte, bool) {
	e, ok := v.reg.get(t)
	if !ok || !e.active() {
		return nil, false
	}
	b, err := json.Marshal(e)
	return b, err == nil
}

// ReplicaStates returns the state of every tenant in the registry (active,
// shredded, ...), to publish to the cluster what it may have missed.
func (v *Vault) ReplicaStates() map[events.TenantID]string {
	out := make(map[events.TenantID]string)
	for _, e := range v.reg.list() {
		out[e.ID] = e.info().State
	}
	return out
}

// AdoptTenant takes here the tenant of entry, which node by created (or
// changed): its keys must be installed already. It creates its store
// (empty: the node that takes the tenant's topic restores it from the
// changelog) and writes its registry entry, and audits it. An entry equal
// to the one here changes nothing; one for a tenant shredded, being
// shredded or moved here is refused (a shred is never undone by a copy).
func (v *Vault) AdoptTenant(ctx context.Context, entry []byte, by string) (changed bool, err error) {
	var e registryEntry
	if err := json.Unmarshal(entry, &e); err != nil {
		return false, events.Errorf(events.EINVALID, "adopt tenant: the registry entry does not parse")
	}
	t, err := events.ParseTenantID(string(e.ID))
	if err != nil {
		return false, err
	}
	if !e.active() || len(e.TokenSHA256) != 64 {
		return false, events.Errorf(events.EINVALID, "adopt tenant %s: not an active tenant's entry", t)
	}
	v.createMu.Lock()
	defer v.createMu.Unlock()
	if old, ok := v.reg.get(t); ok {
		if !old.active() {
			return false, events.Errorf(events.ECONFLICT, "adopt tenant %s: it is %s here", t, old.info().State)
		}
		a, _ := json.Marshal(old)
		if string(a) == string(entry) {
			return false, nil
		}
	}
	if _, err := v.cfg.Keys.Ciphers.Cipher(t); err != nil {
		return false, fmt.Errorf("adopt tenant %s: its keys are not installed: %w", t, err)
	}
	if err := v.cfg.Stores.Create(t); err != nil && !errors.Is(err, projections.ErrExists) {
		return false, fmt.Errorf("adopt tenant %s: create store: %w", t, err)
	}
	if err := v.reg.put(e); err != nil {
		return false, err
	}
	if err := v.record(ctx, audit.Record{Principal: audit.PrincipalVault, Tenant: string(t), Action: audit.ActionTenantReplicate,
		Resource: "tenants/" + string(t), Outcome: audit.OutcomeOK, Details: map[string]string{"from_node": by}}); err != nil {
		return true, err
	}
	if v.cfg.OnTenantCreated != nil {
		v.cfg.OnTenantCreated(t)
	}
	return true, nil
}

// ShredReplica shreds here tenant t, which node by shredded: its keys
// (its copy here; the tenant's own KMS key is already destroyed), its
// store, its tombstone, with a receipt in this node's audit log naming
// the node. A tenant unknown here, or shredded already, changes nothing.
func (v *Vault) ShredReplica(ctx context.Context, t events.TenantID, by string) error {
	v.createMu.Lock()
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	if !ok {
		// Never known here (its create compacted away): the tombstone
		// alone, so no copy of it is ever taken.
		now := v.cfg.Now().UTC()
		return v.reg.put(registryEntry{ID: t, Created: now, State: StateShredded, Shredded: &now, ShredBy: "node:" + by})
	}
	if e.State == StateShredded {
		return nil
	}
	_, err := v.shred(ctx, e, "node:"+by)
	return err
}

// HandOff is a node's audit checkpoint at the moment it released a
// tenant's topic: the tenant.release record it wrote holds it, and the
// tenant.acquire record of the node that takes the topic names it, so the
// two nodes' logs link.
type HandOff struct {
	Node string `json:"node"`
	Size uint64 `json:"size"`
	Root string `json:"root"` // hex
	// Checkpoint is the signed checkpoint (a note) of Size and Root.
	Checkpoint []byte `json:"checkpoint,omitempty"`
}

// Released audits that this node no longer holds tenant t's topic
// (tenant.release, with its audit log's signed checkpoint, taken after the
// tenant's last record here) and returns the hand-off to publish.
func (v *Vault) Release(ctx context.Context, t events.TenantID, node string) (HandOff, error) {
	v.Released(t)
	if err := v.record(ctx, audit.Record{Principal: audit.PrincipalVault, Tenant: string(t), Action: audit.ActionTenantRelease,
		Resource: "tenants/" + string(t), Outcome: audit.OutcomeOK, Details: map[string]string{"node": node}}); err != nil {
		return HandOff{}, err
	}
	signed, size, root, err := v.cfg.Audit.CheckpointNow()
	if err != nil {
		return HandOff{}, err
	}
	return HandOff{Node: node, Size: size, Root: hex.EncodeToString(root[:]), Checkpoint: signed}, nil
}

// Acquire audits that this node took tenant t's topic (tenant.acquire),
// naming the hand-off of the node that released it when known (from
// zero: a node that died released nothing), and starts catching the
// store up with its changelog.
func (v *Vault) Acquire(ctx context.Context, t events.TenantID, node string, from *HandOff) error {
	v.Released(t) // whatever this node held before, catch up again
	d := map[string]string{"node": node}
	if from != nil {
		d["from_node"], d["from_checkpoint_size"], d["from_checkpoint_root"] = from.Node, strconv.FormatUint(from.Size, 10), from.Root
	}
	return v.record(ctx, audit.Record{Principal: audit.PrincipalVault, Tenant: string(t), Action: audit.ActionTenantAcquire,
		Resource: "tenants/" + string(t), Outcome: audit.OutcomeOK, Details: d})
}
