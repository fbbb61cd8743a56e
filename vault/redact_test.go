package vault_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// marker is planted in every producer-controlled place; lower case letters
// and digits, so that it also makes a valid tenant id and topic name.
const marker = "zq7marker"

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// markedMessages are records on acme's topic carrying the marker in every
// attribute, header, key and extension, each with another defect (and one
// valid), so that every reason of the ingest path is met.
func markedMessages(tb testing.TB) []vault.Message {
	tb.Helper()
	topic := events.TopicFor("acme")
	base := func(edit map[string]any) []byte {
		attrs := map[string]any{"specversion": "1.0", "id": marker + "-id", "source": marker + "-source", "type": marker + ".type", "subject": marker + "-subject",
			"dataschema": "https://" + marker + ".example/schema", marker + "ext": marker + "-ext", "data": map[string]string{marker: marker}}
		for k, v := range edit {
			if v == nil {
				delete(attrs, k)
			} else {
				attrs[k] = v
			}
		}
		return structured(tb, attrs)
	}
	h := func(kv ...string) []events.Header {
		var out []events.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, events.Header{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	values := []struct {
		key     string
		value   []byte
		headers []events.Header
	}{
		{marker + "-subject", base(nil), nil}, // valid: applied
		{"", base(map[string]any{"specversion": marker}), nil},
		{"", base(map[string]any{"id": nil}), nil},
		{"", base(map[string]any{"time": marker}), nil},
		{"", base(map[string]any{"tenant": marker}), nil},                     // a valid id no tenant has: a crossing
		{"", base(map[string]any{"tenant": "Not " + marker + "!"}), nil},      // an invalid id: a crossing
		{"", base(map[string]any{"tenant": marker, "specversion": "2"}), nil}, // a crossing with another defect
		{"", base(map[string]any{"data_base64": marker}), nil},                // and data: two defects
		{"", base(map[string]any{"datacontenttype": marker, "id": 7}), nil},   // not a string
		{marker + "-key", base(nil), nil},                                     // Kafka key differs from subject
		{"", []byte(`{"` + marker + `":`), nil},                               // not JSON
		{"", base(map[string]any{"pad": strings.Repeat(marker, 300)}), nil},   // too large
		{"", []byte(`{` + marker), h("ce_specversion", "1.0", "ce_id", marker, "ce_source", marker, "ce_type", marker, "ce_subject", marker, "content-type", "application/json")},
		{"", []byte(`{}`), h("ce_specversion", marker, "ce_id", marker, "ce_tenant", marker+"-b", "ce_"+marker, marker)},
		{"", []byte(`{}`), h("ce_specversion", "1.0", "ce_time", marker, "ce_tenant", "X"+marker)},
	}
	var msgs []vault.Message
	for i, v := range values {
		msgs = append(msgs, vault.Message{Topic: topic, Offset: int64(i), Key: []byte(v.key), Value: v.value, Headers: v.headers})
	}
	return msgs
}

// TestIngestNoProducerTextInAuditLog: whatever producers put in a record —
// attribute values, extension names, headers, Kafka keys, the topic name —
// none of it reaches the audit log (its files on disk) or the logs; the
// rejected records stay whole in the tenant's quarantine, sealed (the
// marker is on disk nowhere in the data directory); crossings are still
// flagged.
func TestIngestNoProducerTextInAuditLog(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	// Registered before the vault's, so it runs after the sessions and the
	// vault are closed, when every file is complete.
	t.Cleanup(func() { scanForMarker(t, dir, &logs) })
	tv := MustOpenVaultAt(t, dir, func(c *vault.Config) { c.MaxEventBytes = testMaxEventBytes; c.Logger = logger })
	acme := tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	msgs := markedMessages(t)
	if err := tv.v.Ingest(ctx, events.TopicFor("acme"), msgs); err != nil {
		t.Fatalf("Ingest = %v", err)
	}
	for _, topic := range []string{"tenant." + marker + ".events", "tenant." + marker + "-" + strings.ToUpper(marker) + ".events", marker} {
		if err := tv.v.Ingest(ctx, topic, msgs[:2]); err != nil {
			t.Fatalf("Ingest(%q) = %v", topic, err)
		}
	}

	recs := tv.recordsSince(t, 0)
	var rejects, flagged int
	for _, r := range recs {
		if r.Action == audit.ActionIngestReject {
			rejects++
		}
		if r.Flagged {
			flagged++
			if _, code, _ := audit.Classify(r); code != audit.ViolationEventTenant || !strings.HasPrefix(r.Details[audit.DetailEventTenant], vault.KeyedHashPrefix) {
				t.Errorf("flagged record %s, want event_tenant_mismatch with a keyed hash of the claimed tenant", dump(r))
			}
		}
	}
	if rejects != len(msgs)-1 || flagged != 5 {
		t.Errorf("%d ingest.reject records, %d flagged, want %d and 5: %s", rejects, flagged, len(msgs)-1, dump(recs))
	}
	q := tv.quarantine(t, acme, "acme")
	if len(q) != len(msgs)-1 {
		t.Fatalf("quarantine holds %d entries, want %d", len(q), len(msgs)-1)
	}
	for _, e := range q {
		if len(msgs[e.Offset].Headers) > 0 {
			continue // binary mode: the quarantine keeps the value (here "{}"), not the headers
		}
		if !bytes.Contains(e.Value, []byte(marker)) {
			t.Errorf("quarantine entry at offset %d = %q, want the record as received", e.Offset, e.Value)
		}
	}
}

// scanForMarker fails t for every file under dir, and for logs, that holds
// the marker in clear.
func scanForMarker(t *testing.T, dir string, logs *syncBuffer) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if i := bytes.Index(bytes.ToLower(b), []byte(marker)); i >= 0 {
			t.Errorf("%s holds the marker: …%q…", path, b[max(0, i-80):min(len(b), i+40)])
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Errorf("scan %s: %d files, %v", dir, files, err)
	}
	if strings.Contains(strings.ToLower(logs.String()), marker) {
		t.Errorf("the logs hold the marker:\n%s", logs.String())
	}
}

// A claimed tenant is named in the record only when it is a tenant of the
// vault; any other claim is a keyed hash, the same for the same claim, and
// flagged all the same.
func TestIngestClaimedTenantStandIn(t *testing.T) {
	tv := MustOpenVault(t, nil)
	tv.mustCreateTenant(t, "acme")
	tv.mustCreateTenant(t, "globex")
	ctx := context.Background()
	topic := events.TopicFor("acme")
	claim := func(tenant string) []byte {
		return structured(t, map[string]any{"specversion": "1.0", "id": "e", "source": "s", "type": "t", "subject": "s", "tenant": tenant})
	}
	tests := []struct {
		claim  string
		wantAs string // "" : a keyed hash
	}{
		{"globex", "globex"},
		{"ghost-co", ""},
		{"ghost-co", ""},
		{"Ghost Co", ""},
	}
	n := tv.audit.Size()
	var batch []vault.Message
	for i, tt := range tests {
		batch = append(batch, vault.Message{Topic: topic, Offset: int64(i), Value: claim(tt.claim)})
	}
	if err := tv.v.Ingest(ctx, topic, batch); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range tv.recordsSince(t, n) {
		if r.Action == audit.ActionIngestReject {
			if _, code, _ := audit.Classify(r); code != audit.ViolationEventTenant || !r.Flagged {
				t.Errorf("record %s, want flagged event_tenant_mismatch", dump(r))
			}
			got[r.Details["offset"]] = r.Details[audit.DetailEventTenant]
		}
	}
	for i, tt := range tests {
		as := got[string(rune('0'+i))]
		switch {
		case tt.wantAs != "" && as != tt.wantAs:
			t.Errorf("claim %q recorded as %q, want %q", tt.claim, as, tt.wantAs)
		case tt.wantAs == "" && (!strings.HasPrefix(as, vault.KeyedHashPrefix) || strings.Contains(strings.ToLower(as), "ghost")):
			t.Errorf("claim %q recorded as %q, want a keyed hash", tt.claim, as)
		}
	}
	if got["1"] != got["2"] || got["1"] == got["3"] {
		t.Errorf("keyed hashes of ghost-co, ghost-co, Ghost Co = %q %q %q: want the same for the same claim only", got["1"], got["2"], got["3"])
	}
}
