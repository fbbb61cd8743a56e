package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// KeyDestroyer crypto-shreds a tenant's keys, as a shred needs it.
// *keys.Keystore satisfies it.
type KeyDestroyer interface {
	// Destroy destroys every key of t and returns their ids; destroying
	// destroyed keys again returns the same ids (a resumed shred).
	Destroy(t events.TenantID) ([]uint32, error)
}

// Ingress is the Kafka side of a tenant, as a shred needs it.
type Ingress interface {
	// Stop stops consuming the tenant's topic; no ingest batch of the
	// tenant is in flight when it returns.
	Stop(ctx context.Context, t events.TenantID) error
	// Purge deletes the tenant's topic (with every record the broker still
	// retains) and its consumer group.
	Purge(ctx context.Context, t events.TenantID) error
}

// Receipt is the record of a crypto-shred, signed by the audit log's key
// and appended to the audit log.
type Receipt struct {
	Tenant      events.TenantID `json:"tenant"`
	Operator    string          `json:"operator"`
	Started     time.Time       `json:"started"`
	Unreadable  time.Time       `json:"unreadable"` // when the keys were destroyed
	Completed   time.Time       `json:"completed"`
	KeyIDs      []uint32        `json:"key_ids_destroyed"`
	Events      uint64          `json:"events"`
	Streams     uint64          `json:"streams"`
	Quarantined uint64          `json:"quarantined"`
	// DestroyKeysNanos is how long destroying the keys took: the time to
	// make the tenant unreadable, which does not depend on its data.
	DestroyKeysNanos int64 `json:"destroy_keys_ns"`
	Resumed          bool  `json:"resumed,omitempty"`
	// AuditIndex is the index of the tenant.shred audit record that holds
	// the receipt; it is signed.
	AuditIndex uint64 `json:"audit_index"`
	// Signature is the receipt's JSON (without this field) as a signed
	// note by the audit log's key: audit.SignReceipt's form, checked by
	// audit.OpenReceipt and by every audit verify (VERIFYING.md).
	Signature string `json:"signature,omitempty"`
}

// Shred crypto-shreds tenant: destroys its keys (from that moment nothing
// it ever wrote can be read), stops its ingest, removes its store, purges
// its topic from the broker, tombstones its id, and appends a signed
// receipt to the audit log. confirm must repeat the tenant id. Every step
// is idempotent: a shred interrupted by a crash is finished by
// ResumeShreds at the next start.
func (v *Vault) Shred(ctx context.Context, p Principal, tenant, confirm string) (Receipt, error) {
	const action = audit.ActionTenantShred
	resource := "tenants/" + tenant
	if err := v.requireAdminOn(ctx, p, action, resource, tenant); err != nil {
		return Receipt{}, err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		rec.Reason = "invalid tenant id"
		return Receipt{}, v.auditDenied(ctx, rec, err)
	}
	if confirm != tenant {
		rec.Reason = "confirmation does not repeat the tenant id"
		return Receipt{}, v.auditDenied(ctx, rec, events.Errorf(events.EINVALID, "shred of %s needs confirm=%s", t, t))
	}
	v.createMu.Lock()
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		rec.Reason = "unknown tenant"
		return Receipt{}, v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	case e.State == StateMoved:
		rec.Reason = "tenant moved"
		return Receipt{}, v.auditDenied(ctx, rec, events.Reasonf(events.EGONE, events.ReasonTenantMoved, "tenant %s moved to %s: shred it there", t, e.MovedTo))
	case e.State == StateShredded:
		rec.Reason = "already shredded"
		return Receipt{}, v.auditDenied(ctx, rec, events.Errorf(events.EGONE, "tenant %s was already shredded", t))
	}
	r, err := v.shred(ctx, e, p.String())
	if err != nil {
		return r, err
	}
	if v.cfg.ReplicateShred != nil {
		// The keys are destroyed here and, with the tenant's own KMS key,
		// everywhere; the other nodes also drop their copies and stores.
		if err := v.cfg.ReplicateShred(ctx, t); err != nil {
			return r, fmt.Errorf("tenant %s is shredded on this node, but the shred did not reach the cluster (it is sent again at the next start): %w", t, err)
		}
	}
	return r, nil
}

// shred runs (or resumes) the steps of a shred. Called with createMu held.
func (v *Vault) shred(ctx context.Context, e registryEntry, operator string) (Receipt, error) {
	t := e.ID
	r := Receipt{Tenant: t, Operator: operator, Resumed: e.State == StateShredding}
	now := v.cfg.Now().UTC()
	if e.State != StateShredding {
		e.State, e.ShredStarted, e.ShredBy = StateShredding, &now, operator
		if err := v.reg.put(e); err != nil { // the journal: from here the shred is finished even across a crash
			return Receipt{}, err
		}
	}
	r.Started = *e.ShredStarted

	// Counts for the receipt, before the store goes (metadata only).
	if st, release, err := v.cfg.Stores.Acquire(t); err == nil {
		if s, err := st.Stats(); err == nil {
			r.Events, r.Streams, r.Quarantined = s.Events, s.Streams, s.Quarantined
		}
		release()
	}

	// 1. Destroy the keys: unreadable from this moment, everywhere.
	t0 := time.Now()
	ids, err := v.cfg.Keys.Destroyer.Destroy(t)
	if err != nil {
		return Receipt{}, v.shredFailed(ctx, r, "destroy keys", err)
	}
	r.DestroyKeysNanos = time.Since(t0).Nanoseconds()
	r.Unreadable = v.cfg.Now().UTC()
	r.KeyIDs = ids

	// 2 and 3: nothing of the tenant left in the vault or on the broker.
	if step, err := v.removeTenantData(ctx, t); err != nil {
		return Receipt{}, v.shredFailed(ctx, r, step, err)
	}
	// 4. Tombstone.
	done := v.cfg.Now().UTC()
	e.State, e.Shredded = StateShredded, &done
	if err := v.reg.put(e); err != nil {
		return Receipt{}, v.shredFailed(ctx, r, "tombstone", err)
	}
	r.Completed = done

	// 5. The signed receipt, in the audit log, signed for the record that
	// holds it (its audit_index).
	rec := audit.Record{
		Principal: audit.Principal(operator), Tenant: string(t), Action: audit.ActionTenantShred, Resource: "tenants/" + string(t), Outcome: audit.OutcomeOK,
		KeyIDs: ids, Count: int(min(r.Events, uint64(1<<31-1))),
		Details: map[string]string{
			"events":          strconv.FormatUint(r.Events, 10),
			"streams":         strconv.FormatUint(r.Streams, 10),
			"quarantined":     strconv.FormatUint(r.Quarantined, 10),
			"destroy_keys_ns": strconv.FormatInt(r.DestroyKeysNanos, 10),
			"resumed":         strconv.FormatBool(r.Resumed),
		},
	}
	var appended audit.Record
	if v.cfg.SignReceipt == nil {
		appended, err = v.cfg.Audit.Append(ctx, rec)
	} else {
		appended, err = v.cfg.Audit.AppendReceipt(ctx, rec, func(index uint64) ([]byte, error) {
			r.AuditIndex = index
			body, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			sig, err := v.cfg.SignReceipt(body)
			if err != nil {
				return nil, fmt.Errorf("sign shred receipt: %w", err)
			}
			r.Signature = string(sig)
			return sig, nil
		})
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("audit: %w", err)
	}
	r.AuditIndex = appended.Index
	v.cfg.Logger.Info("tenant shredded", "tenant", t, "key_ids", ids, "destroy_keys", time.Duration(r.DestroyKeysNanos), "resumed", r.Resumed)
	return r, nil
}

// removeTenantData is what a shred removes once t's keys are destroyed:
// its store, the records of its topic and its producers' principal. It
// returns the step that failed.
func (v *Vault) removeTenantData(ctx context.Context, t events.TenantID) (step string, err error) {
	// 2. Stop ingest and any rewrap, then close and physically remove the
	// store (this waits for reads in flight: none returns data after Shred
	// returns).
	v.stopRewrap(t)
	if v.cfg.Ingress != nil {
		if err := v.cfg.Ingress.Stop(ctx, t); err != nil {
			return "stop ingest", err
		}
	}
	if err := v.cfg.Stores.Remove(t); err != nil && !errors.Is(err, projections.ErrNotFound) {
		return "remove store", err
	}
	// 3. Nothing of the tenant left on the broker.
	if v.cfg.Ingress != nil {
		if err := v.cfg.Ingress.Purge(ctx, t); err != nil {
			return "purge topic", err
		}
	}
	// ... nor its changelog (in a cluster).
	if v.cfg.Changelog != nil {
		if err := v.cfg.Changelog.Delete(ctx, t); err != nil {
			return "delete changelog", err
		}
	}
	// ... nor a principal of its producers.
	if v.cfg.Producers != nil {
		if err := v.cfg.Producers.RemoveProducer(ctx, events.ProducerPrincipal(t)); err != nil {
			return "remove producer credential", err
		}
	}
	return "", nil
}

// shredFailed audits a shred step that failed; the shred stays journaled
// and is finished at the next start (or by repeating the request).
func (v *Vault) shredFailed(ctx context.Context, r Receipt, step string, err error) error {
	rec := audit.Record{Principal: audit.Principal(r.Operator), Tenant: string(r.Tenant), Action: audit.ActionTenantShred, Resource: "tenants/" + string(r.Tenant),
		Outcome: audit.OutcomeError, Reason: "shred step failed: " + step, KeyIDs: r.KeyIDs}
	if aerr := v.record(ctx, rec); aerr != nil {
		return errors.Join(fmt.Errorf("shred %s: %s: %w", r.Tenant, step, err), aerr)
	}
	return fmt.Errorf("shred %s: %s (it will be resumed): %w", r.Tenant, step, err)
}

// ResumeShreds finishes every shred a crash interrupted. Call it at start.
func (v *Vault) ResumeShreds(ctx context.Context) error {
	v.createMu.Lock()
	defer v.createMu.Unlock()
	var errs []error
	for _, e := range v.reg.list() {
		if e.State != StateShredding {
			continue
		}
		if _, err := v.shred(ctx, e, e.ShredBy); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
