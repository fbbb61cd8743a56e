package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// KeyOwners names the tenant a key id belongs to, as a session needs it to
// audit a read that met another tenant's key. *keys.Keystore satisfies it.
type KeyOwners interface {
	// Owner names the tenant of keyID (also once shredded); false when no
	// tenant's keys hold, or held, it.
	Owner(keyID uint32) (events.TenantID, bool)
}

// Session is a principal's access to one tenant's store and cipher: the only
// way to read tenant data. It is made by Vault.Session from an authenticated
// Principal whose credential belongs to that tenant (or the admin's, with a
// stated break-glass reason). Close it when done.
type Session struct {
	v          *Vault
	p          Principal
	tenant     events.TenantID
	breakGlass string
	cipher     Cipher
	store      *projections.Store
	release    func()
	once       sync.Once
}

// Access describes what a request asks of a tenant's data.
type Access struct {
	Tenant   string       // the tenant the request names: not yet validated
	Action   audit.Action // audit action: one that reads tenant data (Action.IsTenantData)
	Resource string       // audit resource
	// BreakGlass is an admin's stated reason to read tenant data. The admin
	// credential opens a session only with one, and every read it makes is
	// flagged.
	BreakGlass string
}

// MaxBreakGlassLen bounds a break-glass reason.
const MaxBreakGlassLen = 256

// Session opens tenant data for p. A credential of another tenant, or the
// admin credential without a break-glass reason, is refused with EFORBIDDEN
// and a flagged audit record — before the tenant's existence is even looked
// up, so a refusal reveals nothing about other tenants. An invalid id is
// EINVALID, an unknown tenant ENOTFOUND. An a.Action that does not read
// tenant data (audit.Action.IsTenantData) is a caller's bug, refused with
// EINTERNAL before anything else: the boundary check would not flag an
// admin's use of it.
func (v *Vault) Session(ctx context.Context, p Principal, a Access) (*Session, error) {
	if !a.Action.IsTenantData() {
		return nil, events.Errorf(events.EINTERNAL, "session for action %.40q, which does not read tenant data", a.Action)
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: a.Tenant, Action: a.Action, Resource: a.Resource, Outcome: audit.OutcomeDenied}
	breakGlass := strings.TrimSpace(a.BreakGlass)
	if p.admin && breakGlass != "" {
		rec.Details = map[string]string{audit.DetailBreakGlass: breakGlass}
	}
	t, err := events.ParseTenantID(a.Tenant)
	if err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeRejected, "invalid tenant id"
		return nil, v.auditDenied(ctx, rec, err)
	}
	switch {
	case p.admin && breakGlass == "":
		v.stats.Denied.Add(1)
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.EFORBIDDEN, "the admin credential reads tenant data only with a break-glass reason"))
	case p.admin && len(breakGlass) > MaxBreakGlassLen:
		v.stats.Denied.Add(1)
		rec.Details[audit.DetailBreakGlass] = breakGlass[:MaxBreakGlassLen]
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.EINVALID, "break-glass reason is longer than %d bytes", MaxBreakGlassLen))
	case !p.admin && p.tenant != t:
		v.stats.Denied.Add(1)
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.EFORBIDDEN, "credential does not grant access to this tenant"))
	}
	e, ok := v.reg.get(t)
	if !ok {
		rec.Reason = "unknown tenant"
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	}
	if !e.active() {
		return nil, v.gone(ctx, rec)
	}
	c, err := v.cfg.Keys.Ciphers.Cipher(t)
	if err != nil {
		if v.shredded(t) {
			return nil, v.gone(ctx, rec)
		}
		return nil, fmt.Errorf("session %s: keys: %w", t, err)
	}
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		if v.shredded(t) {
			return nil, v.gone(ctx, rec)
		}
		return nil, fmt.Errorf("session %s: %w", t, err)
	}
	if err := v.catchUp(ctx, t, st, c); err != nil {
		release()
		return nil, fmt.Errorf("session %s: %w", t, err)
	}
	s := &Session{v: v, p: p, tenant: t, cipher: c, store: st, release: release}
	if p.admin {
		s.breakGlass = breakGlass
	}
	return s, nil
}

// shredded reports whether t is being or was shredded.
func (v *Vault) shredded(t events.TenantID) bool {
	e, ok := v.reg.get(t)
	return ok && !e.active()
}

// gone records an access to a shredded tenant (flagged) or a moved one
// (not flagged: the destination serves it) and returns EGONE.
func (v *Vault) gone(ctx context.Context, rec audit.Record) error {
	if rec.Details == nil {
		rec.Details = map[string]string{}
	}
	if e, ok := v.reg.get(events.TenantID(rec.Tenant)); ok && e.State == StateMoved {
		rec.Details[audit.DetailTenantState] = StateMoved
		rec.Details[DetailMovedTo] = e.MovedTo
		rec.Outcome, rec.Reason = audit.OutcomeDenied, "tenant moved"
		return v.auditDenied(ctx, rec, events.Reasonf(events.EGONE, events.ReasonTenantMoved, "tenant %s moved to %s", rec.Tenant, e.MovedTo))
	}
	rec.Details[audit.DetailTenantState] = StateShredded
	rec.Outcome, rec.Reason = audit.OutcomeDenied, "tenant shredded"
	return v.auditDenied(ctx, rec, events.Errorf(events.EGONE, "tenant %s was shredded", rec.Tenant))
}

// Tenant is the session's tenant.
func (s *Session) Tenant() events.TenantID { return s.tenant }

// Close releases the session's store.
func (s *Session) Close() { s.once.Do(s.release) }

// State returns the current state of stream.
func (s *Session) State(ctx context.Context, stream string) (projections.State, error) {
	var st projections.State
	err := s.read(ctx, audit.ActionStreamRead, s.streamResource(stream), func(c projections.Cipher) (int, error) {
		var err error
		st, err = s.store.State(c, stream)
		return 1, err
	})
	return st, err
}

// History returns up to limit events of stream with version > after.
func (s *Session) History(ctx context.Context, stream string, after uint64, limit int) ([]projections.StoredEvent, error) {
	var evs []projections.StoredEvent
	err := s.read(ctx, audit.ActionEventsRead, s.streamResource(stream), func(c projections.Cipher) (int, error) {
		var err error
		evs, err = s.store.History(c, stream, after, limit)
		return len(evs), err
	})
	return evs, err
}

// Streams lists the tenant's streams, a page at a time.
func (s *Session) Streams(ctx context.Context, cursor string, limit int) ([]projections.StreamSummary, string, error) {
	var out []projections.StreamSummary
	var next string
	err := s.read(ctx, audit.ActionStreamList, "streams", func(c projections.Cipher) (int, error) {
		var err error
		out, next, err = s.store.Streams(c, cursor, limit)
		return len(out), err
	})
	return out, next, err
}

// Quarantine lists the tenant's rejected input, a page at a time.
func (s *Session) Quarantine(ctx context.Context, cursor string, limit int) ([]projections.Quarantined, string, error) {
	var out []projections.Quarantined
	var next string
	err := s.read(ctx, audit.ActionQuarantineRead, "quarantine", func(c projections.Cipher) (int, error) {
		var err error
		out, next, err = s.store.Quarantine(c, cursor, limit)
		return len(out), err
	})
	return out, next, err
}

// read runs fn with a cipher that records the key ids it decrypts with, and
// appends the audit record before any data is returned. A ciphertext sealed
// under another tenant's key is refused and flagged.
func (s *Session) read(ctx context.Context, action audit.Action, resource string, fn func(projections.Cipher) (int, error)) error {
	rc := &recordingCipher{Cipher: s.cipher}
	n, err := fn(rc)
	if err != nil {
		n = 0
	}
	rec := audit.Record{Principal: s.p.auditPrincipal(), Tenant: string(s.tenant), Action: action, Resource: resource, Outcome: audit.OutcomeOK, Count: n, KeyIDs: rc.keyIDs()}
	if s.breakGlass != "" {
		rec.Details = map[string]string{audit.DetailBreakGlass: s.breakGlass}
	}
	var fk ForeignKey
	switch {
	case err == nil:
		s.v.stats.Reads.Add(1)
	case errors.As(err, &fk):
		owner, _ := s.v.cfg.Keys.Owners.Owner(fk.ForeignKeyID())
		if owner == "" {
			owner = "unknown"
		}
		rec.Outcome = audit.OutcomeDenied
		if rec.Details == nil {
			rec.Details = map[string]string{}
		}
		rec.Details[audit.DetailKeyOwner] = string(owner)
		rec.Details["key_id"] = fmt.Sprint(fk.ForeignKeyID())
		err = events.Errorf(events.EFORBIDDEN, "stored record is sealed under a key of another tenant")
	case s.v.shredded(s.tenant):
		rec.Outcome, rec.Reason = audit.OutcomeDenied, "tenant shredded"
		if rec.Details == nil {
			rec.Details = map[string]string{}
		}
		rec.Details[audit.DetailTenantState] = StateShredded
		err = events.Errorf(events.EGONE, "tenant %s was shredded", s.tenant)
	case errors.Is(err, projections.ErrNotFound):
		rec.Outcome, rec.Reason = audit.OutcomeError, "not found"
		err = events.Errorf(events.ENOTFOUND, "not found")
	case events.ErrorCode(err) == events.EINVALID || events.ErrorCode(err) == events.ETOOLARGE:
		// Bad input of the request (a cursor the vault did not hand out,
		// a search that is not as documented, a body too large): a
		// rejection, named by its reason code, never by the input.
		rec.Outcome, rec.Reason = audit.OutcomeRejected, events.ErrorReason(err)
	default:
		rec.Outcome, rec.Reason = audit.OutcomeError, "internal error"
	}
	if aerr := s.v.record(ctx, rec); aerr != nil {
		return aerr
	}
	return err
}

// streamResource names a stream in the audit log by a keyed hash: stream
// ids may be personal data and the log outlives the tenant.
func (s *Session) streamResource(stream string) string {
	return "streams/" + hex.EncodeToString(s.cipher.Hash("audit-stream", []byte(stream))[:8])
}

// recordingCipher notes the key id of every ciphertext it decrypts.
type recordingCipher struct {
	Cipher
	mu  sync.Mutex
	ids []uint32
}

func (r *recordingCipher) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	if id, ok := r.Cipher.KeyIDOf(ciphertext); ok {
		r.mu.Lock()
		if !slices.Contains(r.ids, id) {
			r.ids = append(r.ids, id)
		}
		r.mu.Unlock()
	}
	return r.Cipher.Decrypt(ciphertext, associatedData)
}

func (r *recordingCipher) keyIDs() []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.ids))
}
