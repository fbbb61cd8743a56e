package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// AuditHash is deterministic, separates kinds and inputs, keeps its key
// across a restart, needs the master key, and stores the key wrapped.
func TestAuditHash(t *testing.T) {
	data := t.TempDir()
	ks := mustOpenAt(t, data)
	h1, err := ks.AuditHash("topic", []byte("tenant.x.events"))
	if err != nil || len(h1) != HashSize {
		t.Fatalf("AuditHash = %x, %v, want %d bytes", h1, err, HashSize)
	}
	tests := []struct {
		name       string
		kind, data string
		same       bool
	}{
		{"same input", "topic", "tenant.x.events", true},
		{"another kind", "tenant", "tenant.x.events", false},
		{"another input", "topic", "tenant.y.events", false},
		{"kind and data shifted", "topi", "ctenant.x.events", false},
	}
	for _, tt := range tests {
		h, err := ks.AuditHash(tt.kind, []byte(tt.data))
		if err != nil {
			t.Fatalf("AuditHash(%q, %q) = %v", tt.kind, tt.data, err)
		}
		if bytes.Equal(h, h1) != tt.same {
			t.Errorf("%s: AuditHash(%q, %q) = %x, equal to the first %v, want %v", tt.name, tt.kind, tt.data, h, !tt.same, tt.same)
		}
	}
	if other, err := mustOpenAt(t, t.TempDir()).AuditHash("topic", []byte("tenant.x.events")); err != nil || bytes.Equal(other, h1) {
		t.Errorf("another vault's AuditHash = %x, %v, want another hash", other, err)
	}

	raw, err := os.ReadFile(filepath.Join(ks.dir, auditHashFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), auditHashFormat) || !strings.Contains(string(raw), "encryptedKeyset") {
		t.Errorf("audit hash file = %s, want a wrapped keyset", raw)
	}
	if fi, err := os.Stat(filepath.Join(ks.dir, auditHashFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit hash file mode = %v, %v, want 0600", fi.Mode(), err)
	}
	ks.Close()
	if _, err := ks.AuditHash("topic", nil); !errors.Is(err, errClosed) {
		t.Errorf("AuditHash after Close = %v, want closed", err)
	}

	ks2 := mustOpenAt(t, data)
	if h, err := ks2.AuditHash("topic", []byte("tenant.x.events")); err != nil || !bytes.Equal(h, h1) {
		t.Errorf("AuditHash after reopen = %x, %v, want %x", h, err, h1)
	}
	ks2.Close()

	// A tenant keyset copied over the file does not open as the PRF key.
	ks3 := mustOpenAt(t, data)
	mustCreate(t, ks3, "acme")
	ks3.Close()
	if err := os.Rename(filepath.Join(ks.dir, "acme"+keysetExt), filepath.Join(ks.dir, auditHashFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeystore(filepath.Join(data, "keys"), masterURI(data), nil); err == nil {
		ks4 := mustOpenAt(t, data)
		if _, err := ks4.AuditHash("topic", nil); err == nil {
			t.Errorf("AuditHash over a tenant keyset file succeeded")
		}
	}
}
