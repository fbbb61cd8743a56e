package vault

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// Session is a principal's access to one tenant's store and cipher: the only
// way to read tenant data. It is made by Session from an authenticated
// Principal whose credential belongs to that tenant. Close it when done.
type Session struct {
	v       *Vault
	p       Principal
	tenant  events.TenantID
	cipher  Cipher
	store   *projections.Store
	release func()
	once    sync.Once
}

// Session opens tenant's data for p. A credential of another tenant, or the
// admin credential, is refused with EFORBIDDEN and a flagged audit record —
// before the tenant's existence is even looked up, so a refusal reveals
// nothing about other tenants. An invalid id is EINVALID, an unknown
// tenant ENOTFOUND.
func (v *Vault) Session(ctx context.Context, p Principal, tenant, action, resource string) (*Session, error) {
	rec := audit.Record{Principal: p.String(), Tenant: tenant, Action: action, Resource: resource, Outcome: "denied"}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		rec.Tenant, rec.Outcome, rec.Reason = topicTenant("tenant."+tenant+".events"), "rejected", "invalid tenant id"
		return nil, v.auditDenied(ctx, rec, err)
	}
	switch {
	case p.admin:
		v.stats.Denied.Add(1)
		v.stats.BoundaryViolations.Add(1)
		rec.Flagged, rec.Reason = true, "admin credential used on tenant data"
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.EFORBIDDEN, "the admin credential cannot read tenant data"))
	case p.tenant != t:
		v.stats.Denied.Add(1)
		v.stats.BoundaryViolations.Add(1)
		rec.Flagged, rec.Reason = true, "token tenant differs from path tenant"
		rec.Details = map[string]string{"token_tenant": string(p.tenant)}
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.EFORBIDDEN, "credential does not grant access to this tenant"))
	}
	if _, ok := v.reg.get(t); !ok {
		rec.Reason = "unknown tenant"
		return nil, v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	}
	c, err := v.cfg.Keys.Cipher(t)
	if err != nil {
		return nil, fmt.Errorf("session %s: keys: %w", t, err)
	}
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", t, err)
	}
	return &Session{v: v, p: p, tenant: t, cipher: c, store: st, release: release}, nil
}

// Tenant is the session's tenant.
func (s *Session) Tenant() events.TenantID { return s.tenant }

// Close releases the session's store.
func (s *Session) Close() { s.once.Do(s.release) }

// State returns the current state of stream.
func (s *Session) State(ctx context.Context, stream string) (projections.State, error) {
	var st projections.State
	err := s.read(ctx, "stream.read", s.streamResource(stream), func(c projections.Cipher) (int, error) {
		var err error
		st, err = s.store.State(c, stream)
		return 1, err
	})
	return st, err
}

// History returns up to limit events of stream with version > after.
func (s *Session) History(ctx context.Context, stream string, after uint64, limit int) ([]projections.StoredEvent, error) {
	var evs []projections.StoredEvent
	err := s.read(ctx, "events.read", s.streamResource(stream), func(c projections.Cipher) (int, error) {
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
	err := s.read(ctx, "stream.list", "streams", func(c projections.Cipher) (int, error) {
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
	err := s.read(ctx, "quarantine.read", "quarantine", func(c projections.Cipher) (int, error) {
		var err error
		out, next, err = s.store.Quarantine(c, cursor, limit)
		return len(out), err
	})
	return out, next, err
}

// read runs fn with a cipher that records the key ids it decrypts with, and
// appends the audit record before any data is returned. A ciphertext sealed
// under another tenant's key is refused and flagged.
func (s *Session) read(ctx context.Context, action, resource string, fn func(projections.Cipher) (int, error)) error {
	rc := &recordingCipher{Cipher: s.cipher}
	n, err := fn(rc)
	rec := audit.Record{Principal: s.p.String(), Tenant: string(s.tenant), Action: action, Resource: resource, Outcome: "ok", Count: n, KeyIDs: rc.keyIDs()}
	if err != nil {
		n = 0
	}
	var fk ForeignKey
	switch {
	case err == nil:
		s.v.stats.Reads.Add(1)
	case errors.As(err, &fk):
		s.v.stats.BoundaryViolations.Add(1)
		rec.Outcome, rec.Flagged, rec.Reason = "denied", true, "ciphertext sealed under another tenant's key"
		rec.Details = map[string]string{"foreign_key_id": fmt.Sprint(fk.ForeignKeyID())}
		err = events.Errorf(events.EFORBIDDEN, "stored record is sealed under a key of another tenant")
	case errors.Is(err, projections.ErrNotFound):
		rec.Outcome, rec.Reason = "error", "not found"
		err = events.Errorf(events.ENOTFOUND, "not found")
	default:
		rec.Outcome, rec.Reason = "error", "internal error"
	}
	if _, aerr := s.v.cfg.Audit.Append(ctx, rec); aerr != nil {
		return fmt.Errorf("audit: %w", aerr)
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
