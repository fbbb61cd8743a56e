package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/tenantvault/tenantvault/audit"
)

// BundleContentType is the media type of a tenantvault-bundle/v1.
const BundleContentType = "application/vnd.tenantvault.bundle.v1"

// getImportKey answers this vault's public HPKE import key (no credential:
// it is public, as the audit public key is): GET /v1/import-key.
func (h *Handler) getImportKey(w http.ResponseWriter, r *http.Request) {
	k, fp, err := h.v.ImportKey()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keyset": json.RawMessage(k), "fingerprint": fp})
}

// exportTenant streams a tenant's bundle, its keyset encrypted to the
// import key in ?import_key= (base64url of GET /v1/import-key's keyset):
// GET /v1/tenants/{tenant}/export (admin). Errors found before the first
// byte are JSON errors; a failure midway cuts the stream, which the
// importer refuses as truncated.
func (h *Handler) exportTenant(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionTenantExport, "tenants/"+tenant+"/export")
	if !ok {
		return
	}
	// A key that does not decode is refused by PrepareExport, after the
	// credential and the tenant boundary are checked.
	key, _ := base64.RawURLEncoding.DecodeString(queryParams(r).String("import_key"))
	t, fp, err := h.v.PrepareExport(r.Context(), p, tenant, key)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", BundleContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="`+string(t)+`.tvbundle"`)
	w.Header().Set("X-Tenantvault-Import-Key", fp)
	w.WriteHeader(http.StatusOK)
	if _, err := h.v.Export(r.Context(), p, t, key, fp, w, nil); err != nil && r.Context().Err() == nil {
		h.log.Error("tenant export", "tenant", t, "err", err) // the status line is gone: the importer sees a short bundle
	}
}

// thawTenant resumes the ingest an export froze, when no move follows:
// POST /v1/tenants/{tenant}/export/thaw (admin).
func (h *Handler) thawTenant(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionTenantExport, "tenants/"+tenant+"/export")
	if !ok {
		return
	}
	if err := h.v.Thaw(r.Context(), p, tenant); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "ingest": "resumed"})
}

// importTenant reads a bundle from the request body (streamed, up to
// MaxBundleBytes), signed by the vault whose audit public key is
// ?source_key=: POST /v1/tenants/import (admin).
func (h *Handler) importTenant(w http.ResponseWriter, r *http.Request) {
	p, ok := h.auth(w, r, audit.ActionTenantImport, "tenants/import")
	if !ok {
		return
	}
	src := queryParams(r).String("source_key")
	res, err := h.v.Import(r.Context(), p, r.Body, src)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// movedTenant ends a tenant here once its bundle was imported elsewhere:
// POST /v1/tenants/{tenant}/moved (admin) with {"destination", "manifest_sha256"}.
func (h *Handler) movedTenant(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	p, ok := h.auth(w, r, audit.ActionTenantMoved, "tenants/"+tenant)
	if !ok {
		return
	}
	var body struct {
		Destination    string `json:"destination"`
		ManifestSHA256 string `json:"manifest_sha256"`
	}
	if err := decodeBody(r, &body); err != nil {
		h.fail(w, r, err)
		return
	}
	rc, err := h.v.Moved(r.Context(), p, tenant, body.Destination, body.ManifestSHA256)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("X-Audit-Index", strconv.FormatUint(rc.AuditIndex, 10))
	writeJSON(w, http.StatusOK, rc)
}
