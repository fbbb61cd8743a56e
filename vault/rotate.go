package vault

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// KeyAdmin rotates, lists and retires a tenant's keys, as the key
// administration requests need it. *keys.Keystore satisfies it.
type KeyAdmin interface {
	// Rotate adds a new primary key and returns its id.
	Rotate(t events.TenantID) (uint32, error)
	// Keys lists t's keys.
	Keys(t events.TenantID) ([]KeyInfo, error)
	// DisableKey and DestroyKey retire a key that is not the primary.
	DisableKey(t events.TenantID, id uint32) error
	DestroyKey(t events.TenantID, id uint32) error
}

// RewrapStatus is the progress of a tenant's rewrap job.
type RewrapStatus struct {
	Running   bool   `json:"running"`
	Scanned   uint64 `json:"scanned"`
	Rewrapped uint64 `json:"rewrapped"`
	Total     uint64 `json:"total"`
	Done      bool   `json:"done"`
	Error     string `json:"error,omitempty"`
}

// KeysStatus is a tenant's keys and its rewrap job.
type KeysStatus struct {
	Tenant events.TenantID   `json:"tenant"`
	Keys   []KeyInfo         `json:"keys"`
	Usage  map[string]uint64 `json:"values_per_key,omitempty"` // key id → sealed values under it
	Rewrap *RewrapStatus     `json:"rewrap,omitempty"`
}

// rewrapJob is one background rewrap. Its goroutine is owned by the vault
// (jobs) and stopped by cancel.
type rewrapJob struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	st     RewrapStatus
}

func (j *rewrapJob) status() RewrapStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.st
}

// adminTenant checks an admin request on tenant's keys and returns its id,
// auditing a refusal.
func (v *Vault) adminTenant(ctx context.Context, p Principal, tenant string, action audit.Action) (events.TenantID, error) {
	return v.adminTenantAt(ctx, p, tenant, action, "tenants/"+tenant+"/keys")
}

// adminTenantAt checks an admin request on resource of an active tenant and
// returns its id, auditing a refusal: a principal that is not the admin (a
// crossing when it is another tenant's), an invalid id, an unknown tenant,
// a shredded one.
func (v *Vault) adminTenantAt(ctx context.Context, p Principal, tenant string, action audit.Action, resource string) (events.TenantID, error) {
	if err := v.requireAdminOn(ctx, p, action, resource, tenant); err != nil {
		return "", err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		rec.Reason = "invalid tenant id"
		return "", v.auditDenied(ctx, rec, err)
	}
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		rec.Reason = "unknown tenant"
		return "", v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	case !e.active():
		return "", v.gone(ctx, rec)
	}
	return t, nil
}

// RotateKeys adds a new primary key to tenant's keyset: new writes use it
// at once, older keys keep decrypting. With rewrap, a background job
// re-seals the tenant's whole store under the new key (KeysStatus shows its
// progress; it resumes after a crash).
func (v *Vault) RotateKeys(ctx context.Context, p Principal, tenant string, rewrap bool) (KeysStatus, error) {
	const action = audit.ActionKeysRotate
	t, err := v.adminTenant(ctx, p, tenant, action)
	if err != nil {
		return KeysStatus{}, err
	}
	if rewrap && v.cfg.Changelog != nil {
		return KeysStatus{}, v.auditDenied(ctx, audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: "tenants/" + string(t) + "/keys",
			Outcome: audit.OutcomeRejected, Reason: "rewrap on a cluster node"}, errClusterKeys)
	}
	id, err := v.cfg.Keys.Admin.Rotate(t)
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: "tenants/" + string(t) + "/keys", Outcome: audit.OutcomeOK,
		KeyIDs: []uint32{id}, Details: map[string]string{"rewrap": strconv.FormatBool(rewrap)}}
	if err != nil {
		rec.Outcome, rec.Reason, rec.KeyIDs = audit.OutcomeError, "rotate failed", nil
		return KeysStatus{}, errors.Join(fmt.Errorf("rotate keys of %s: %w", t, err), v.record(ctx, rec))
	}
	if err := v.record(ctx, rec); err != nil {
		return KeysStatus{}, err
	}
	if err := v.republish(ctx, t); err != nil {
		return KeysStatus{}, err
	}
	if rewrap {
		if err := v.startRewrap(t); err != nil {
			return KeysStatus{}, err
		}
	}
	return v.keysStatus(t, false)
}

// KeysStatus lists tenant's keys, how many sealed values each still
// protects (usage, which scans the store), and its rewrap job.
func (v *Vault) KeysStatus(ctx context.Context, p Principal, tenant string, usage bool) (KeysStatus, error) {
	t, err := v.adminTenant(ctx, p, tenant, audit.ActionKeysRead)
	if err != nil {
		return KeysStatus{}, err
	}
	return v.keysStatus(t, usage)
}

func (v *Vault) keysStatus(t events.TenantID, usage bool) (KeysStatus, error) {
	ks, err := v.cfg.Keys.Admin.Keys(t)
	if err != nil {
		return KeysStatus{}, fmt.Errorf("keys of %s: %w", t, err)
	}
	out := KeysStatus{Tenant: t, Keys: ks}
	v.jobsMu.Lock()
	if j := v.jobs[t]; j != nil {
		st := j.status()
		out.Rewrap = &st
	}
	v.jobsMu.Unlock()
	if usage {
		c, err := v.cfg.Keys.Ciphers.Cipher(t)
		if err != nil {
			return KeysStatus{}, err
		}
		st, release, err := v.cfg.Stores.Acquire(t)
		if err != nil {
			return KeysStatus{}, err
		}
		defer release()
		u, err := st.KeyUsage(c)
		if err != nil {
			return KeysStatus{}, fmt.Errorf("key usage of %s: %w", t, err)
		}
		out.Usage = make(map[string]uint64, len(u))
		for id, n := range u {
			out.Usage[strconv.FormatUint(uint64(id), 10)] = n
		}
	}
	return out, nil
}

// RetireKey disables (destroy=false) or destroys an old key of tenant.
// A key that still protects sealed values is refused: rewrap first.
func (v *Vault) RetireKey(ctx context.Context, p Principal, tenant string, id uint32, destroy bool) error {
	action := audit.ActionKeysDisable
	if destroy {
		action = audit.ActionKeysDestroy
	}
	t, err := v.adminTenant(ctx, p, tenant, action)
	if err != nil {
		return err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: "tenants/" + string(t) + "/keys", Outcome: audit.OutcomeOK, KeyIDs: []uint32{id}}
	if v.cfg.Changelog != nil {
		rec.Outcome, rec.Reason = audit.OutcomeRejected, "key retired on a cluster node"
		return v.auditDenied(ctx, rec, errClusterKeys)
	}
	st, err := v.keysStatus(t, true)
	if err != nil {
		return err
	}
	if n := st.Usage[strconv.FormatUint(uint64(id), 10)]; n > 0 {
		rec.Outcome, rec.Reason = audit.OutcomeRejected, "key still protects sealed values"
		return v.auditDenied(ctx, rec, events.Errorf(events.ECONFLICT, "key %d still protects %d sealed values: rewrap first", id, n))
	}
	if destroy {
		err = v.cfg.Keys.Admin.DestroyKey(t, id)
	} else {
		err = v.cfg.Keys.Admin.DisableKey(t, id)
	}
	if err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeRejected, events.ErrorMessage(err)
		if events.ErrorCode(err) == events.EINTERNAL {
			rec.Outcome, rec.Reason = audit.OutcomeError, "internal error"
		}
		return errors.Join(err, v.record(ctx, rec))
	}
	return v.record(ctx, rec)
}

// startRewrap starts (or restarts) t's rewrap job in the background.
func (v *Vault) startRewrap(t events.TenantID) error {
	c, err := v.cfg.Keys.Ciphers.Cipher(t)
	if err != nil {
		return err
	}
	var kc projections.KeyedCipher = c // a vault Cipher names key ids
	v.jobsMu.Lock()
	defer v.jobsMu.Unlock()
	if v.closed {
		return events.Errorf(events.EUNAVAILABLE, "vault is closing")
	}
	if j := v.jobs[t]; j != nil && j.status().Running {
		return nil // already running: it rewraps to the newest primary when it reaches the end
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &rewrapJob{cancel: cancel, done: make(chan struct{}), st: RewrapStatus{Running: true}}
	v.jobs[t] = j
	v.jobsWG.Add(1)
	go func() {
		defer v.jobsWG.Done()
		defer close(j.done)
		st, release, err := v.cfg.Stores.Acquire(t)
		if err == nil {
			_, err = st.Rewrap(ctx, kc, func(p projections.RewrapProgress) {
				j.mu.Lock()
				j.st.Scanned, j.st.Rewrapped, j.st.Total = p.Scanned, p.Rewrapped, p.Total
				j.mu.Unlock()
			})
			release()
		}
		j.mu.Lock()
		j.st.Running = false
		j.st.Done = err == nil
		if err != nil && ctx.Err() == nil {
			j.st.Error = events.ErrorMessage(err)
			v.cfg.Logger.Error("rewrap failed", "tenant", t, "err", err)
		}
		j.mu.Unlock()
		if err == nil {
			v.record(context.Background(), audit.Record{Principal: audit.PrincipalVault, Tenant: string(t), Action: audit.ActionKeysRewrap, Resource: "tenants/" + string(t) + "/keys",
				Outcome: audit.OutcomeOK, KeyIDs: []uint32{kc.PrimaryKeyID()}, Count: int(min(j.st.Rewrapped, 1<<31-1))})
		}
	}()
	return nil
}

// stopRewrap cancels t's rewrap job and waits for it.
func (v *Vault) stopRewrap(t events.TenantID) {
	v.jobsMu.Lock()
	j := v.jobs[t]
	delete(v.jobs, t)
	v.jobsMu.Unlock()
	if j != nil {
		j.cancel()
		<-j.done
	}
}

// ResumeRewraps restarts the rewrap of every tenant whose store holds an
// unfinished one (the process died during it).
func (v *Vault) ResumeRewraps() error {
	var errs []error
	for _, t := range v.reg.ids() {
		st, release, err := v.cfg.Stores.Acquire(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pending, err := st.RewrapPending()
		release()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pending {
			v.cfg.Logger.Info("resuming rewrap", "tenant", t)
			errs = append(errs, v.startRewrap(t))
		}
	}
	return errors.Join(errs...)
}

// Close stops the vault's background jobs (rewraps; their progress is kept
// and they resume at the next start) and waits for them, and writes the
// aggregate records of the open aggregation windows, so that a clean
// shutdown loses no count. Call it before the audit log is closed.
func (v *Vault) Close() error {
	v.jobsMu.Lock()
	v.closed = true
	for _, j := range v.jobs {
		j.cancel()
	}
	v.jobsMu.Unlock()
	v.jobsWG.Wait()
	return v.agg.close(context.Background())
}

// RotateMasterKey re-wraps every tenant keyset (and the audit signer) under
// the master key newURI, without touching tenant data. The vault uses the
// new master key at once; it must be restarted with --master-key newURI.
// The audit record names the new key's scheme only (a URI may carry
// credentials or, for test KMSs, key material).
func (v *Vault) RotateMasterKey(ctx context.Context, p Principal, newURI string) error {
	const action = audit.ActionMasterRotate
	if err := v.requireAdmin(ctx, p, action, "master-key"); err != nil {
		return err
	}
	scheme, _, ok := strings.Cut(newURI, "://")
	rec := audit.Record{Principal: p.auditPrincipal(), Action: action, Resource: "master-key", Outcome: audit.OutcomeOK, Details: map[string]string{"scheme": scheme}}
	if !ok || scheme == "" || v.cfg.RotateMaster == nil {
		rec.Outcome, rec.Reason, rec.Details = audit.OutcomeRejected, "not a master key URI", nil
		return v.auditDenied(ctx, rec, events.Errorf(events.EINVALID, "new master key must be a URI such as local://PATH or aws-kms://ARN"))
	}
	if err := v.cfg.RotateMaster(ctx, newURI); err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeError, "master key rotation failed"
		return errors.Join(err, v.record(ctx, rec))
	}
	v.cfg.Logger.Warn("master key rotated: restart vaultd with the new --master-key", "scheme", scheme)
	return v.record(ctx, rec)
}

// errClusterKeys refuses, on a node of a cluster, what would leave values
// in a tenant's changelog that its keys no longer open: a rewrap re-seals
// the store but not the changelog's older records, and a disabled or
// destroyed key no longer opens them, so no node could restore the store.
var errClusterKeys error = &events.Error{Code: events.EINVALID, Message: "not on a node of a cluster yet: the tenant's changelog keeps values sealed under its older keys (rotate works; rewrap, disable and destroy of a key do not)"}

// republish sends tenant t's keys again to the other nodes of a cluster,
// after they changed here (a rotation): a new primary key's values must
// open on the node that takes the tenant next. No-op on one node.
func (v *Vault) republish(ctx context.Context, t events.TenantID) error {
	if v.cfg.Replicate == nil {
		return nil
	}
	entry, ok := v.ReplicaEntry(t)
	if !ok {
		return nil
	}
	if err := v.cfg.Replicate(ctx, t, entry); err != nil {
		return fmt.Errorf("keys of %s rotated here, but not sent to the cluster: %w", t, err)
	}
	return nil
}
