package vault_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/vaulttest"
	"github.com/tenantvault/tenantvault/vault"
	"github.com/tenantvault/tenantvault/vault/bundle"
)

// mover is a vault that can export and import, with what a test needs.
type mover struct {
	*vaulttest.Harness
}

func mustMover(tb testing.TB, origin string) mover {
	tb.Helper()
	return mover{vaulttest.MustOpen(tb, vaulttest.Movable(origin))}
}

func (m mover) importKey(tb testing.TB) []byte {
	tb.Helper()
	k, _, err := m.Vault.ImportKey()
	if err != nil {
		tb.Fatalf("ImportKey: %v", err)
	}
	return k
}

// ingestN ingests n events of tenant t on streams s0..s(k-1), offsets 0..n-1.
func (m mover) ingestN(tb testing.TB, t string, n, streams int) {
	tb.Helper()
	msgs := make([]vault.Message, n)
	for i := range msgs {
		stream := fmt.Sprintf("s%d", i%streams)
		msgs[i] = vault.Message{Topic: events.TopicFor(events.TenantID(t)), Offset: int64(i), Key: []byte(stream),
			Value: event(tb, fmt.Sprintf("e%d", i), stream, fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := m.Vault.Ingest(context.Background(), events.TopicFor(events.TenantID(t)), msgs); err != nil {
		tb.Fatalf("Ingest: %v", err)
	}
}

func (m mover) export(tb testing.TB, t string, importKey []byte) ([]byte, vault.ExportResult) {
	tb.Helper()
	ctx := context.Background()
	admin := m.Admin(tb)
	id, fp, err := m.Vault.PrepareExport(ctx, admin, t, importKey)
	if err != nil {
		tb.Fatalf("PrepareExport: %v", err)
	}
	var buf bytes.Buffer
	res, err := m.Vault.Export(ctx, admin, id, importKey, fp, &buf, nil)
	if err != nil {
		tb.Fatalf("Export: %v", err)
	}
	return buf.Bytes(), res
}

// history reads every event of stream through a tenant session.
func (m mover) history(tb testing.TB, token, t, stream string) []string {
	tb.Helper()
	s, err := m.Vault.Session(context.Background(), m.MustAuthenticate(tb, token), vault.Access{Tenant: t, Action: audit.ActionEventsRead, Resource: "x"})
	if err != nil {
		tb.Fatalf("Session: %v", err)
	}
	defer s.Close()
	evs, err := s.History(context.Background(), stream, 0, 1000)
	if err != nil {
		tb.Fatalf("History: %v", err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("v%d %s %s", e.Version, e.Event.ID, e.Event.Data))
	}
	return out
}

func TestMoveTenantBetweenVaults(t *testing.T) {
	ctx := context.Background()
	src, dst := mustMover(t, "src.example/audit"), mustMover(t, "dst.example/audit")
	token := src.MustCreateTenant(t, "acme")
	src.ingestN(t, "acme", 50, 3)
	want := src.history(t, token, "acme", "s1")

	b, res := src.export(t, "acme", dst.importKey(t))
	if res.Records == 0 || res.AuditRecords == 0 {
		t.Fatalf("Export = %+v, want records and audit records", res)
	}
	// The export froze the source's ingest of acme.
	if src.Vault.Holds(events.TopicFor("acme")) {
		t.Errorf("Holds(acme's topic) after export = true, want false")
	}
	got, err := dst.Vault.Import(ctx, dst.Admin(t), bytes.NewReader(b), src.Audit.PublicKey())
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if got.ManifestSHA256 != res.ManifestSHA256 || got.Records != res.Records || got.Offsets[0] != 49 {
		t.Errorf("Import = %+v, want manifest %s, %d records, offset 49", got, res.ManifestSHA256, res.Records)
	}
	// Same events, versions and ids; the tenant's token works there.
	if h := dst.history(t, token, "acme", "s1"); !slices.Equal(h, want) {
		t.Errorf("history on the destination = %q, want %q", h, want)
	}
	// A redelivery of what the source applied is skipped: offsets moved too.
	dst.ingestN(t, "acme", 50, 3)
	if h := dst.history(t, token, "acme", "s1"); !slices.Equal(h, want) {
		t.Errorf("history after a redelivery = %q, want %q", h, want)
	}

	// The source learns of the import and ends the tenant.
	if _, err := src.Vault.Moved(ctx, src.Admin(t), "acme", "https://dst.example", "0000"); events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("Moved(wrong manifest) = %v, want ECONFLICT", err)
	}
	rcpt, err := src.Vault.Moved(ctx, src.Admin(t), "acme", "https://dst.example", got.ManifestSHA256)
	if err != nil {
		t.Fatalf("Moved: %v", err)
	}
	if len(rcpt.KeyIDs) == 0 {
		t.Errorf("Moved = %+v, want destroyed key ids", rcpt)
	}
	_, err = src.Vault.Session(ctx, src.MustAuthenticate(t, token), vault.Access{Tenant: "acme", Action: audit.ActionEventsRead, Resource: "x"})
	var ee *events.Error
	if !errors.As(err, &ee) || ee.Code != events.EGONE || ee.Reason != events.ReasonTenantMoved {
		t.Errorf("Session on the source after the move = %v, want EGONE with reason moved", err)
	}
	if _, err := os.Stat(filepath.Join(src.Dir, "tenants", "acme")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the source's store is still there: %v", err)
	}
	recs, err := src.Audit.List(ctx, audit.Filter{Tenant: "acme", Action: audit.ActionTenantMoved})
	if err != nil || len(recs) != 2 || recs[1].Outcome != audit.OutcomeOK || recs[1].Details[vault.DetailMovedTo] != "https://dst.example" {
		t.Errorf("tenant.moved records = %+v, %v, want a refusal and then one naming the destination", recs, err)
	}
	// Nor can it come back to the source, nor be imported twice.
	if _, err := src.Vault.Import(ctx, src.Admin(t), bytes.NewReader(b), src.Audit.PublicKey()); events.ErrorCode(err) != events.EINVALID && events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("Import into the source = %v, want a refusal", err)
	}
	if _, err := dst.Vault.Import(ctx, dst.Admin(t), bytes.NewReader(b), src.Audit.PublicKey()); events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("second Import = %v, want ECONFLICT", err)
	}
}

// TestImportRefusesBadBundles is the bundle tamper table: each bundle is
// refused with a clear error, and nothing is written on the destination
// (no store, no keyset, no registry entry).
func TestImportRefusesBadBundles(t *testing.T) {
	ctx := context.Background()
	src, dst, other := mustMover(t, "src.example/audit"), mustMover(t, "dst.example/audit"), mustMover(t, "other.example/audit")
	src.MustCreateTenant(t, "acme")
	src.ingestN(t, "acme", 20, 2)
	good, _ := src.export(t, "acme", dst.importKey(t))
	toOther, _ := src.export(t, "acme", other.importKey(t))
	frames := splitFrames(t, good)

	// A shredded tenant on the destination.
	dst.MustCreateTenant(t, "gone")
	if _, err := dst.Vault.Shred(ctx, dst.Admin(t), "gone", "gone"); err != nil {
		t.Fatal(err)
	}
	src.MustCreateTenant(t, "gone")
	goneBundle, _ := src.export(t, "gone", dst.importKey(t))
	dst.MustCreateTenant(t, "taken")
	src.MustCreateTenant(t, "taken")
	takenBundle, _ := src.export(t, "taken", dst.importKey(t))

	flip := func(kind byte, at int) []byte {
		f := slices.Clone(frames)
		for i := range f {
			if f[i].kind == kind {
				p := slices.Clone(f[i].payload)
				p[min(at, len(p)-1)] ^= 0x01
				f[i].payload = p
				break
			}
		}
		return joinFrames(f)
	}
	drop := func(kind byte) []byte {
		var f []frame
		done := false
		for _, fr := range frames {
			if fr.kind == kind && !done {
				done = true
				continue
			}
			f = append(f, fr)
		}
		return joinFrames(f)
	}
	swapRecords := func() []byte {
		f := slices.Clone(frames)
		for i := 1; i+1 < len(f); i++ {
			if f[i].kind == bundle.KindRecord && f[i+1].kind == bundle.KindRecord {
				f[i], f[i+1] = f[i+1], f[i]
				break
			}
		}
		return joinFrames(f)
	}
	tests := []struct {
		name      string
		bundle    []byte
		sourceKey string
		want      string // in the error message
	}{
		{"empty", nil, "", "not a tenantvault-bundle/v1 file"},
		{"truncated in a record", good[:len(good)/2], "", "truncated or corrupt"},
		{"truncated before the signature", joinFrames(frames[:len(frames)-1]), "", "truncated"},
		{"trailing data", append(slices.Clone(good), 'S', 0), "", "data after the signature"},
		{"record value byte flipped", flip(bundle.KindRecord, 40), "", "records root"},
		{"record dropped", drop(bundle.KindRecord), "", "records"},
		{"records swapped", swapRecords(), "", "records root"},
		{"offsets changed", flip(bundle.KindOffsets, 30), "", "offsets"},
		{"checkpoint altered", flip(bundle.KindCheckpoint, 5), "", "checkpoint"},
		{"audit record altered", flip(bundle.KindAudit, 30), "", "audit"},
		{"audit record dropped", drop(bundle.KindAudit), "", "manifest does not match"},
		{"manifest altered", flip(bundle.KindManifest, 20), "", "manifest"},
		{"keyset altered", flip(bundle.KindKeyset, 100), "", "signature is not of this manifest and keyset"},
		{"signature altered", flip(bundle.KindSignature, 80), "", "signature"},
		{"signed by another vault", good, other.Audit.PublicKey(), "signed by another vault"},
		{"encrypted to another vault", toOther, "", "another vault's import key"},
		{"tenant shredded here", goneBundle, "", "was shredded in this vault"},
		{"tenant exists here", takenBundle, "", "already exists"},
	}
	before := snapshotDir(t, dst.Dir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.sourceKey
			if key == "" {
				key = src.Audit.PublicKey()
			}
			_, err := dst.Vault.Import(ctx, dst.Admin(t), bytes.NewReader(tt.bundle), key)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("Import(%s) = %v, want an error about %q", tt.name, err, tt.want)
			}
			if c := events.ErrorCode(err); c != events.EINVALID && c != events.ECONFLICT {
				t.Errorf("Import(%s) code = %s, want invalid or conflict", tt.name, c)
			}
			if after := snapshotDir(t, dst.Dir); !slices.Equal(after, before) {
				t.Errorf("Import(%s) left files: %q, before %q", tt.name, after, before)
			}
			recs, _ := dst.Audit.List(ctx, audit.Filter{Action: audit.ActionTenantImport})
			if len(recs) == 0 || recs[len(recs)-1].Outcome != audit.OutcomeRejected {
				t.Errorf("no rejected tenant.import audit record")
			}
		})
	}
	// The good bundle still imports.
	if _, err := dst.Vault.Import(ctx, dst.Admin(t), bytes.NewReader(good), src.Audit.PublicKey()); err != nil {
		t.Fatalf("Import(good) = %v", err)
	}
}

// snapshotDir lists the files under dir that a refused import must not
// change: keysets, stores, the registry (not the audit log, which records
// the refusal).
func snapshotDir(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	for _, sub := range []string{"keys", "tenants", "import"} {
		_ = filepath.Walk(filepath.Join(dir, sub), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	reg, _ := os.ReadFile(filepath.Join(dir, "tenants.json"))
	return append(out, string(reg))
}

type frame struct {
	kind    byte
	payload []byte
}

// splitFrames splits a bundle into its frames (after the first line).
func splitFrames(tb testing.TB, b []byte) []frame {
	tb.Helper()
	b = b[len(bundle.Format)+1:]
	var out []frame
	for len(b) > 0 {
		kind := b[0]
		n, k := uvarint(b[1:])
		out = append(out, frame{kind, b[1+k : 1+k+int(n)]})
		b = b[1+k+int(n):]
	}
	return out
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func joinFrames(fs []frame) []byte {
	out := []byte(bundle.Format + "\n")
	for _, f := range fs {
		out = append(out, f.kind)
		n := uint64(len(f.payload))
		for n >= 0x80 {
			out = append(out, byte(n)|0x80)
			n >>= 7
		}
		out = append(out, byte(n))
		out = append(out, f.payload...)
	}
	return out
}
