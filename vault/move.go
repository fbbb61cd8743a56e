package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
	"github.com/tenantvault/tenantvault/vault/bundle"
)

// DetailMovedTo is the Details key naming the vault a tenant moved to.
const DetailMovedTo = "moved_to"

// KeyMover moves tenants' keys between vaults: the keyset leaves one
// vault encrypted (HPKE, inside the keystore) to the other's public import
// key, and only that vault's keystore opens it. internal/server adapts
// *keys.Keystore to it.
type KeyMover interface {
	// ImportKey returns this vault's public import key (a Tink public
	// keyset, JSON) and its fingerprint.
	ImportKey() (publicKeyset []byte, fingerprint string, err error)
	// ImportKeyFingerprint checks a public import key and returns its
	// fingerprint.
	ImportKeyFingerprint(publicKeyset []byte) (string, error)
	// ExportKeyset returns t's keys encrypted to publicKeyset, bound to t
	// and context.
	ExportKeyset(t events.TenantID, publicKeyset, context []byte) ([]byte, error)
	// OpenImport decrypts keys ExportKeyset made for this vault, without
	// installing them.
	OpenImport(t events.TenantID, blob, context []byte) (ImportedKeys, error)
	// Install makes imported keys their tenant's, here.
	Install(k ImportedKeys) (Cipher, error)
	// Discard removes the keys of a tenant whose import failed.
	Discard(t events.TenantID) error
}

// ImportedKeys are a moved tenant's keys before they are installed: they
// open its sealed values (a trial before anything is written).
type ImportedKeys interface {
	projections.Cipher
	KeyIDs() []uint32
}

// IngressResumer is an Ingress that can consume a tenant's topic again
// (after an export that did not lead to a move).
type IngressResumer interface {
	Resume(ctx context.Context, t events.TenantID) error
}

// IngressHolder is an Ingress that can hold a tenant's topic — apply
// nothing of it — until OnTenantImported starts it at the bundle's
// offsets: records fetched before would otherwise be applied first, and
// the earlier ones then skipped as redeliveries.
type IngressHolder interface {
	Hold(ctx context.Context, t events.TenantID) error
}

// ImportKey returns this vault's public HPKE import key (no credential
// needed: it is public).
func (v *Vault) ImportKey() (publicKeyset []byte, fingerprint string, err error) {
	if v.cfg.Mover == nil {
		return nil, "", events.Errorf(events.EUNAVAILABLE, "this vault does not import tenants")
	}
	return v.cfg.Mover.ImportKey()
}

// ExportResult describes an export.
type ExportResult struct {
	Tenant         events.TenantID `json:"tenant"`
	Records        uint64          `json:"records"`
	RecordBytes    uint64          `json:"record_bytes"`
	AuditRecords   uint64          `json:"audit_records"`
	ManifestSHA256 string          `json:"manifest_sha256"`
}

// ExportProgress, when set on an export, is told of each record written.
type ExportProgress func(records uint64, bytes uint64)

// PrepareExport checks an export of tenant to the destination whose public
// import key is importKey, and returns the tenant and the key's fingerprint;
// nothing is written to w yet (an HTTP handler answers errors before it
// streams). It is audited when refused.
func (v *Vault) PrepareExport(ctx context.Context, p Principal, tenant string, importKey []byte) (events.TenantID, string, error) {
	const action = audit.ActionTenantExport
	resource := "tenants/" + tenant + "/export"
	if err := v.requireAdminOn(ctx, p, action, resource, tenant); err != nil {
		return "", "", err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		rec.Reason = "invalid tenant id"
		return "", "", v.auditDenied(ctx, rec, err)
	}
	if v.cfg.Mover == nil || v.cfg.SignNote == nil {
		rec.Reason = "export not configured"
		return "", "", v.auditDenied(ctx, rec, events.Errorf(events.EUNAVAILABLE, "this vault does not export tenants"))
	}
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		rec.Reason = "unknown tenant"
		return "", "", v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	case e.State == StateMoved:
		rec.Reason = "tenant moved"
		return "", "", v.auditDenied(ctx, rec, events.Reasonf(events.EGONE, events.ReasonTenantMoved, "tenant %s moved to %s", t, e.MovedTo))
	case !e.active():
		rec.Reason = "tenant shredded"
		return "", "", v.auditDenied(ctx, rec, events.Errorf(events.EGONE, "tenant %s was shredded: there is nothing to export", t))
	}
	fp, err := v.cfg.Mover.ImportKeyFingerprint(importKey)
	if err != nil {
		rec.Reason = "invalid import key"
		return "", "", v.auditDenied(ctx, rec, err)
	}
	return t, fp, nil
}

// Export writes tenant t's bundle (tenantvault-bundle/v1, see package
// vault/bundle) to w, its keyset encrypted to importKey (whose fingerprint
// PrepareExport returned). It freezes t's ingest first — the bundle's
// offsets are where the destination resumes, so this vault must not
// consume (nor delete) past them — until Moved ends the tenant here or
// Thaw resumes it. The records are read from one snapshot of the store,
// as sealed; the audit records of t come with inclusion proofs against a
// checkpoint signed after the export began.
func (v *Vault) Export(ctx context.Context, p Principal, t events.TenantID, importKey []byte, fingerprint string, w io.Writer, progress ExportProgress) (res ExportResult, err error) {
	const action = audit.ActionTenantExport
	resource := "tenants/" + string(t) + "/export"
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: resource, Outcome: audit.OutcomeOK,
		Details: map[string]string{"import_key": fingerprint, "stage": "start"}}
	if err := v.freeze(ctx, t); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			fail := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: resource, Outcome: audit.OutcomeError,
				Reason: "export failed: " + events.ErrorMessage(err)}
			if aerr := v.record(context.WithoutCancel(ctx), fail); aerr != nil {
				err = errors.Join(err, aerr)
			}
		}
	}()
	if err := v.record(ctx, rec); err != nil {
		return res, err
	}
	e, _ := v.reg.get(t)
	st, release, err := v.cfg.Stores.Acquire(t)
	if err != nil {
		return res, fmt.Errorf("export %s: %w", t, err)
	}
	defer release()
	bw, err := bundle.NewWriter(w, bundle.Header{Tenant: t, SourceKey: v.cfg.Audit.PublicKey(), ImportKey: fingerprint, Exported: v.cfg.Now().UTC(),
		Created: e.Created, TokenSHA256: e.TokenSHA256, TopicID: e.TopicID, KafkaUser: e.KafkaUser})
	if err != nil {
		return res, err
	}
	topic := events.TopicFor(t)
	offsets := bundle.Offsets{Topic: topic, Partitions: map[int]int64{}}
	err = st.Export(ctx, func(keyspace string, key, value []byte) error {
		if keyspace == projections.KeyspaceOffset {
			if tp, part, off, ok := projections.OffsetsOf(key, value); ok && tp == topic {
				offsets.Partitions[part] = off
			}
		}
		if err := bw.Record(keyspace, key, value); err != nil {
			return err
		}
		if progress != nil {
			c := bw.Counts()
			progress(c.Records, c.RecordBytes)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("export %s: %w", t, err)
	}
	if err := bw.Offsets(offsets); err != nil {
		return res, err
	}
	if err := v.exportAudit(ctx, t, bw); err != nil {
		return res, err
	}
	sum, err := bw.Manifest()
	if err != nil {
		return res, err
	}
	ks, err := v.cfg.Mover.ExportKeyset(t, importKey, bundle.KeysetContext(sum))
	if err != nil {
		return res, fmt.Errorf("export %s: keys: %w", t, err)
	}
	if err := bw.Finish(ks, sum, v.cfg.SignNote); err != nil {
		return res, err
	}
	c := bw.Counts()
	res = ExportResult{Tenant: t, Records: c.Records, RecordBytes: c.RecordBytes, AuditRecords: c.AuditRecords, ManifestSHA256: hex.EncodeToString(sum[:])}
	v.createMu.Lock()
	e, _ = v.reg.get(t)
	e.ExportManifest = res.ManifestSHA256
	err = v.reg.put(e)
	v.createMu.Unlock()
	if err != nil {
		return res, err
	}
	done := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: resource, Outcome: audit.OutcomeOK,
		Count: int(min(c.Records, 1<<31-1)), Details: map[string]string{"import_key": fingerprint, "stage": "done", "manifest_sha256": res.ManifestSHA256,
			"records": strconv.FormatUint(c.Records, 10), "audit_records": strconv.FormatUint(c.AuditRecords, 10)}}
	if err := v.record(ctx, done); err != nil {
		return res, err
	}
	v.cfg.Logger.Info("tenant exported", "tenant", t, "records", c.Records, "bytes", c.RecordBytes, "manifest", res.ManifestSHA256)
	return res, nil
}

// freeze marks t exported and stops its ingest.
func (v *Vault) freeze(ctx context.Context, t events.TenantID) error {
	v.createMu.Lock()
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	if !ok || !e.active() {
		return events.Errorf(events.ECONFLICT, "tenant %s changed state", t)
	}
	if e.Exported == nil {
		now := v.cfg.Now().UTC()
		e.Exported = &now
		if err := v.reg.put(e); err != nil {
			return err
		}
	}
	if v.cfg.Ingress != nil {
		if err := v.cfg.Ingress.Stop(ctx, t); err != nil {
			return fmt.Errorf("export %s: stop ingest: %w", t, err)
		}
	}
	return nil
}

// exportAudit writes the checkpoint and t's audit records below it, each
// with its inclusion proof.
func (v *Vault) exportAudit(ctx context.Context, t events.TenantID, bw *bundle.Writer) error {
	signed, size, _, err := v.cfg.Audit.CheckpointNow()
	if err != nil {
		return fmt.Errorf("export %s: audit checkpoint: %w", t, err)
	}
	if err := bw.Checkpoint(signed, size); err != nil {
		return err
	}
	var after *uint64
	for {
		recs, err := v.cfg.Audit.List(ctx, audit.Filter{Tenant: string(t), After: after, Limit: audit.MaxListLimit})
		if err != nil {
			return fmt.Errorf("export %s: audit: %w", t, err)
		}
		for _, r := range recs {
			if r.Index >= size {
				return nil
			}
			line, err := audit.MarshalRecord(r)
			if err != nil {
				return fmt.Errorf("export %s: audit: %w", t, err)
			}
			hashes, err := v.cfg.Audit.InclusionProof(r.Index, size)
			if err != nil {
				return fmt.Errorf("export %s: audit proof: %w", t, err)
			}
			if err := bw.Audit(bundle.AuditEntry{Index: r.Index, Line: string(line), Proof: bundle.ProofHex(hashes)}); err != nil {
				return err
			}
		}
		if len(recs) < audit.MaxListLimit {
			return nil
		}
		last := recs[len(recs)-1].Index
		after = &last
	}
}

// Thaw resumes the ingest of tenant that an export froze, when the move
// did not happen: the bundle exported is then stale, and the move must
// start again from a new export.
func (v *Vault) Thaw(ctx context.Context, p Principal, tenant string) error {
	const action = audit.ActionTenantExport
	resource := "tenants/" + tenant + "/export"
	if err := v.requireAdminOn(ctx, p, action, resource, tenant); err != nil {
		return err
	}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		return err
	}
	v.createMu.Lock()
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	if !ok || !e.active() || e.Exported == nil {
		return events.Errorf(events.ECONFLICT, "tenant %s is not frozen by an export", t)
	}
	e.Exported, e.ExportManifest = nil, ""
	if err := v.reg.put(e); err != nil {
		return err
	}
	if r, ok := v.cfg.Ingress.(IngressResumer); ok {
		if err := r.Resume(ctx, t); err != nil {
			return err
		}
	}
	return v.record(ctx, audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: resource, Outcome: audit.OutcomeOK,
		Details: map[string]string{"stage": "thawed"}})
}

// ImportResult describes an import.
type ImportResult struct {
	Tenant         events.TenantID `json:"tenant"`
	Records        uint64          `json:"records"`
	RecordBytes    uint64          `json:"record_bytes"`
	AuditRecords   uint64          `json:"audit_records_verified"`
	Checkpoint     uint64          `json:"checkpoint_size"`
	ManifestSHA256 string          `json:"manifest_sha256"`
	Offsets        map[int]int64   `json:"offsets"`
	Source         string          `json:"source"` // the source's audit origin
	AuditIndex     uint64          `json:"audit_index"`
}

// maxTrials bounds the sealed values tried with the imported keys before
// anything is written (every value is opened again as it is written).
const maxTrials = 64

// Import reads a bundle from body, exported by the vault whose audit
// verifier key is sourceKey, and makes its tenant a tenant of this vault.
// Before anything is written it verifies the whole bundle (bundle.Verify:
// frames, counts, hashes, records root, audit proofs against the signed
// checkpoint, the signature), refuses a tenant that exists or existed here
// (shredded, moved), decrypts the keyset with this vault's import key and
// opens sealed values with it. The bundle is spooled meanwhile to
// <data>/import (ciphertext only; removed afterwards). Then it writes the
// store into a staging directory renamed into place (every sealed value
// opened once more), installs the keys (wrapped by this vault's master
// key), registers the tenant (its token keeps working) and calls
// OnTenantImported with the bundle's offsets. Versions, event ids and
// offsets are the source's. Every refusal is an audited error that
// leaves nothing behind.
func (v *Vault) Import(ctx context.Context, p Principal, body io.Reader, sourceKey string) (ImportResult, error) {
	const action = audit.ActionTenantImport
	const resource = "tenants/import"
	if err := v.requireAdmin(ctx, p, action, resource); err != nil {
		return ImportResult{}, err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	res, err := v.importBundle(ctx, body, sourceKey, &rec)
	if err != nil {
		rec.Reason = "import refused: " + events.ErrorMessage(err)
		if events.ErrorCode(err) == events.EINTERNAL {
			rec.Outcome, rec.Reason = audit.OutcomeError, "import failed"
		}
		return ImportResult{}, v.auditDenied(ctx, rec, err)
	}
	rec.Outcome = audit.OutcomeOK
	rec.Count = int(min(res.Records, 1<<31-1))
	rec.Details = map[string]string{"source": res.Source, "manifest_sha256": res.ManifestSHA256, "records": strconv.FormatUint(res.Records, 10),
		"audit_records_verified": strconv.FormatUint(res.AuditRecords, 10), "checkpoint_size": strconv.FormatUint(res.Checkpoint, 10)}
	appended, err := v.cfg.Audit.Append(ctx, rec)
	if err != nil {
		return ImportResult{}, fmt.Errorf("audit: %w", err)
	}
	res.AuditIndex = appended.Index
	if v.cfg.OnTenantImported != nil {
		v.cfg.OnTenantImported(res.Tenant, res.Offsets)
	}
	v.cfg.Logger.Info("tenant imported", "tenant", res.Tenant, "records", res.Records, "source", res.Source, "manifest", res.ManifestSHA256)
	return res, nil
}

func (v *Vault) importBundle(ctx context.Context, body io.Reader, sourceKey string, rec *audit.Record) (ImportResult, error) {
	if v.cfg.Mover == nil {
		return ImportResult{}, events.Errorf(events.EUNAVAILABLE, "this vault does not import tenants")
	}
	_, fp, err := v.cfg.Mover.ImportKey()
	if err != nil {
		return ImportResult{}, err
	}
	spoolDir := filepath.Join(v.cfg.DataDir, "import")
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		return ImportResult{}, fmt.Errorf("import: %w", err)
	}
	spool, err := os.CreateTemp(spoolDir, "bundle-*.spool")
	if err != nil {
		return ImportResult{}, fmt.Errorf("import: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	v.createMu.Lock()
	defer v.createMu.Unlock()

	// 1. Verify everything, spooling.
	type trial struct {
		keyspace   string
		key, value []byte
	}
	var trials []trial
	opts := bundle.VerifyOptions{SourceKey: sourceKey, ImportKey: fp,
		OnHeader: func(h bundle.Header) error {
			rec.Tenant = string(h.Tenant)
			return v.importable(h.Tenant)
		},
		OnRecord: func(keyspace string, key, value []byte) error {
			switch keyspace {
			case projections.KeyspaceLog, projections.KeyspaceState, projections.KeyspaceQuarantine:
				if len(trials) < maxTrials {
					trials = append(trials, trial{keyspace, bytes.Clone(key), bytes.Clone(value)})
				}
			}
			return nil
		}}
	b, err := bundle.Verify(io.TeeReader(body, spool), opts)
	if err != nil {
		return ImportResult{}, err
	}
	t := b.Header.Tenant
	// 2. The keys: only this vault's import key opens them, for this
	// tenant and manifest; then a trial of sealed values.
	imp, err := v.cfg.Mover.OpenImport(t, b.Keyset, bundle.KeysetContext(b.ManifestSum))
	if err != nil {
		return ImportResult{}, err
	}
	for _, tr := range trials {
		if err := projections.CheckRecord(t, imp, tr.keyspace, tr.key, tr.value); err != nil {
			return ImportResult{}, events.Errorf(events.EINVALID, "a sealed value of the bundle does not open with its keyset: %v", err)
		}
	}
	// 3. The store, staged and renamed into place; the spool is read
	// and verified again as it is written.
	storeOffsets := map[int]int64{}
	topic := events.TopicFor(t)
	err = v.cfg.Stores.Import(ctx, t, imp, func(put func(keyspace string, key, value []byte) error) error {
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return err
		}
		again := opts
		again.OnHeader = nil
		again.OnRecord = func(keyspace string, key, value []byte) error {
			if keyspace == projections.KeyspaceOffset {
				if tp, part, off, ok := projections.OffsetsOf(key, value); ok && tp == topic {
					storeOffsets[part] = off
				}
			}
			return put(keyspace, key, value)
		}
		b2, err := bundle.Verify(spool, again)
		if err != nil {
			return err
		}
		if b2.ManifestSum != b.ManifestSum {
			return events.Errorf(events.EINTERNAL, "the spooled bundle changed")
		}
		if len(storeOffsets) != len(b.Offsets.Partitions) {
			return events.Errorf(events.EINVALID, "the bundle's offsets do not match its store's")
		}
		for part, off := range b.Offsets.Partitions {
			if storeOffsets[part] != off {
				return events.Errorf(events.EINVALID, "the bundle's offsets do not match its store's")
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	// 4. Keys, then the registry: the tenant exists from here.
	if _, err := v.cfg.Mover.Install(imp); err != nil {
		return ImportResult{}, errors.Join(err, v.undoImport(t, false))
	}
	if h, ok := v.cfg.Ingress.(IngressHolder); ok {
		if err := h.Hold(ctx, t); err != nil {
			return ImportResult{}, errors.Join(err, v.undoImport(t, true))
		}
	}
	e := registryEntry{ID: t, Created: b.Header.Created, TokenSHA256: b.Header.TokenSHA256, TopicID: b.Header.TopicID, KafkaUser: b.Header.KafkaUser}
	if err := v.reg.put(e); err != nil {
		return ImportResult{}, errors.Join(err, v.undoImport(t, true))
	}
	return ImportResult{Tenant: t, Records: b.Manifest.Records, RecordBytes: b.Manifest.RecordBytes, AuditRecords: b.Manifest.AuditRecords,
		Checkpoint: b.Checkpoint.Size, ManifestSHA256: hex.EncodeToString(b.ManifestSum[:]), Offsets: b.Offsets.Partitions, Source: b.Checkpoint.Origin}, nil
}

// importable refuses a tenant id this vault has or had.
func (v *Vault) importable(t events.TenantID) error {
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		return nil
	case e.State == StateShredded || e.State == StateShredding:
		return events.Errorf(events.ECONFLICT, "tenant %s was shredded in this vault: its id cannot be imported", t)
	case e.State == StateMoved:
		return events.Errorf(events.ECONFLICT, "tenant %s moved away from this vault: its id cannot be imported back", t)
	}
	return events.Errorf(events.ECONFLICT, "tenant %s already exists in this vault", t)
}

func (v *Vault) undoImport(t events.TenantID, keys bool) error {
	var errs []error
	if err := v.cfg.Stores.Remove(t); err != nil && !errors.Is(err, projections.ErrNotFound) {
		errs = append(errs, err)
	}
	if keys {
		errs = append(errs, v.cfg.Mover.Discard(t))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo import of %s: %w", t, err)
	}
	return nil
}

// MoveReceipt is what Moved returns.
type MoveReceipt struct {
	Tenant         events.TenantID `json:"tenant"`
	Destination    string          `json:"destination"`
	ManifestSHA256 string          `json:"manifest_sha256"`
	KeyIDs         []uint32        `json:"key_ids_destroyed"`
	AuditIndex     uint64          `json:"audit_index"`
}

// MaxDestinationLen bounds the destination named by Moved.
const MaxDestinationLen = 256

// Moved ends tenant here once its bundle was imported elsewhere: it is
// what `vaultctl tenant move` calls on the source after the destination
// answered the import (with the manifest hash, which must be that of the
// last bundle this vault exported of tenant). Its keys are destroyed (a
// tombstone in the keystore), its store removed; its topic and producer
// principal are left for the destination (same Kafka cluster); its id
// stays as a moved tombstone: reads answer 410 with reason "moved" and the
// destination, and the id can be neither created nor imported again. The
// tenant.moved audit record names the destination.
func (v *Vault) Moved(ctx context.Context, p Principal, tenant, destination, manifest string) (MoveReceipt, error) {
	const action = audit.ActionTenantMoved
	resource := "tenants/" + tenant
	if err := v.requireAdminOn(ctx, p, action, resource, tenant); err != nil {
		return MoveReceipt{}, err
	}
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeRejected}
	t, err := events.ParseTenantID(tenant)
	if err != nil {
		rec.Reason = "invalid tenant id"
		return MoveReceipt{}, v.auditDenied(ctx, rec, err)
	}
	if destination == "" || len(destination) > MaxDestinationLen || bytes.ContainsAny([]byte(destination), "\r\n\x00") {
		rec.Reason = "invalid destination"
		return MoveReceipt{}, v.auditDenied(ctx, rec, events.Errorf(events.EINVALID, "the destination must be 1 to %d bytes, on one line", MaxDestinationLen))
	}
	v.createMu.Lock()
	defer v.createMu.Unlock()
	e, ok := v.reg.get(t)
	switch {
	case !ok:
		rec.Reason = "unknown tenant"
		return MoveReceipt{}, v.auditDenied(ctx, rec, events.Errorf(events.ENOTFOUND, "tenant %s not found", t))
	case e.State == StateMoved:
		rec.Reason = "already moved"
		return MoveReceipt{}, v.auditDenied(ctx, rec, events.Reasonf(events.EGONE, events.ReasonTenantMoved, "tenant %s already moved to %s", t, e.MovedTo))
	case !e.active():
		rec.Reason = "tenant shredded"
		return MoveReceipt{}, v.auditDenied(ctx, rec, events.Errorf(events.EGONE, "tenant %s was shredded", t))
	case e.Exported == nil || e.ExportManifest == "" || e.ExportManifest != manifest:
		rec.Reason = "not the exported bundle"
		return MoveReceipt{}, v.auditDenied(ctx, rec, events.Errorf(events.ECONFLICT, "tenant %s was not exported with manifest %.64q: export it again and import that bundle", t, manifest))
	}
	ids, err := v.cfg.Keys.Destroyer.Destroy(t)
	if err != nil {
		return MoveReceipt{}, fmt.Errorf("moved %s: destroy keys: %w", t, err)
	}
	v.stopRewrap(t)
	if v.cfg.Ingress != nil {
		if err := v.cfg.Ingress.Stop(ctx, t); err != nil {
			return MoveReceipt{}, fmt.Errorf("moved %s: stop ingest: %w", t, err)
		}
	}
	if err := v.cfg.Stores.Remove(t); err != nil && !errors.Is(err, projections.ErrNotFound) {
		return MoveReceipt{}, fmt.Errorf("moved %s: remove store: %w", t, err)
	}
	now := v.cfg.Now().UTC()
	e.State, e.MovedTo, e.Moved = StateMoved, destination, &now
	if err := v.reg.put(e); err != nil {
		return MoveReceipt{}, err
	}
	rec.Outcome, rec.KeyIDs = audit.OutcomeOK, ids
	rec.Details = map[string]string{DetailMovedTo: destination, "manifest_sha256": manifest}
	appended, err := v.cfg.Audit.Append(ctx, rec)
	if err != nil {
		return MoveReceipt{}, fmt.Errorf("audit: %w", err)
	}
	v.cfg.Logger.Info("tenant moved", "tenant", t, "destination", destination, "key_ids", ids)
	return MoveReceipt{Tenant: t, Destination: destination, ManifestSHA256: manifest, KeyIDs: ids, AuditIndex: appended.Index}, nil
}

// ResumeMoves keeps the ingest of exported and moved tenants stopped after
// a restart. Call it at start, before consuming.
func (v *Vault) ResumeMoves(ctx context.Context) error {
	if v.cfg.Ingress == nil {
		return nil
	}
	var errs []error
	for _, e := range v.reg.list() {
		if e.State == StateMoved || (e.active() && e.Exported != nil) {
			errs = append(errs, v.cfg.Ingress.Stop(ctx, e.ID))
		}
	}
	return errors.Join(errs...)
}
