package vault

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// registryEntry is one tenant as the registry file holds it: no secrets,
// only the SHA-256 of its token (tokens carry 256 bits of entropy, so a
// plain hash is enough to keep them unrecoverable).
type registryEntry struct {
	ID          events.TenantID `json:"id"`
	Created     time.Time       `json:"created"`
	TokenSHA256 string          `json:"token_sha256"`
	// TopicID is the broker's id of the tenant topic the vault created
	// (Kafka topic ID, hex); "" when unknown.
	TopicID string `json:"topic_id,omitempty"`
	// OffsetsStale journals a topic created again: the store's offsets of
	// the old one are to be forgotten (EnsureBroker) before it is consumed.
	OffsetsStale bool `json:"offsets_stale,omitempty"`
	// KafkaUser is the broker principal of the tenant's producers, ""
	// when the brokers do not authenticate.
	KafkaUser string `json:"kafka_user,omitempty"`
	// State is "" (active), StateShredding (a shred started: resumed at
	// start-up if the process died) or StateShredded (a tombstone).
	State        string     `json:"state,omitempty"`
	ShredStarted *time.Time `json:"shred_started,omitempty"`
	Shredded     *time.Time `json:"shredded,omitempty"`
	ShredBy      string     `json:"shred_by,omitempty"`
	// Exported is set when a bundle of the tenant was exported: its
	// ingest is frozen here, so that the bundle's offsets stay where the
	// destination resumes. ExportManifest is the SHA-256 (hex) of the last
	// bundle's manifest, which POST .../moved must name.
	Exported       *time.Time `json:"exported,omitempty"`
	ExportManifest string     `json:"export_manifest,omitempty"`
	// MovedTo names the vault the tenant moved to (State StateMoved).
	MovedTo string     `json:"moved_to,omitempty"`
	Moved   *time.Time `json:"moved,omitempty"`
}

// Tenant states.
const (
	StateActive    = "active"
	StateShredding = "shredding"
	StateShredded  = "shredded"
	// StateMoved is a tenant that moved to another vault: its keys here
	// are destroyed and its store removed; reads answer 410 (reason
	// "moved", naming the destination).
	StateMoved = "moved"
)

func (e registryEntry) active() bool { return e.State == "" }

func (e registryEntry) info() TenantInfo {
	st := e.State
	if st == "" {
		st = StateActive
	}
	info := TenantInfo{ID: e.ID, Created: e.Created, Topic: events.TopicFor(e.ID), State: st, Shredded: e.Shredded, MovedTo: e.MovedTo, Exported: e.Exported}
	if e.KafkaUser != "" && e.active() {
		info.Kafka = &KafkaCredential{User: e.KafkaUser, Topic: info.Topic}
	}
	return info
}

// registry is the set of tenants, persisted as one JSON file replaced
// atomically on every change. Reads use a copy-on-write snapshot.
type registry struct {
	path string
	mu   sync.Mutex // serialises writers
	snap snapshot   // replaced whole under mu; read under rmu
	rmu  sync.RWMutex
}

type snapshot struct {
	byID    map[events.TenantID]registryEntry
	byToken map[[32]byte]events.TenantID
	exist   int // entries not shredded
}

type registryFile struct {
	Version int             `json:"version"`
	Tenants []registryEntry `json:"tenants"`
}

func openRegistry(path string) (*registry, error) {
	r := &registry{path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.snap = buildSnapshot(nil)
		return r, nil
	case err != nil:
		return nil, fmt.Errorf("read tenant registry: %w", err)
	}
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read tenant registry %s: %w", path, err)
	}
	for _, e := range f.Tenants {
		if _, err := events.ParseTenantID(string(e.ID)); err != nil {
			return nil, fmt.Errorf("tenant registry %s holds an invalid id: %w", path, err)
		}
	}
	r.snap = buildSnapshot(f.Tenants)
	return r, nil
}

func buildSnapshot(entries []registryEntry) snapshot {
	s := snapshot{byID: make(map[events.TenantID]registryEntry, len(entries)), byToken: make(map[[32]byte]events.TenantID, len(entries))}
	for _, e := range entries {
		s.byID[e.ID] = e
		if e.State != StateShredded {
			s.exist++
		}
		var h [32]byte
		if b, err := hex.DecodeString(e.TokenSHA256); err == nil && len(b) == 32 {
			copy(h[:], b)
			s.byToken[h] = e.ID
		}
	}
	return s
}

func (r *registry) current() snapshot {
	r.rmu.RLock()
	defer r.rmu.RUnlock()
	return r.snap
}

func (r *registry) get(t events.TenantID) (registryEntry, bool) {
	e, ok := r.current().byID[t]
	return e, ok
}

func (r *registry) byTokenHash(h [32]byte) (events.TenantID, bool) {
	t, ok := r.current().byToken[h]
	return t, ok
}

func (r *registry) list() []registryEntry {
	s := r.current()
	out := make([]registryEntry, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ids lists the active tenants.
func (r *registry) ids() []events.TenantID {
	var out []events.TenantID
	for _, e := range r.list() {
		if e.active() {
			out = append(out, e.ID)
		}
	}
	return out
}

// existing counts the tenants that exist: active or being shredded.
func (r *registry) existing() int { return r.current().exist }

// put adds or replaces e, durably, before it becomes visible.
func (r *registry) put(e registryEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	entries := r.list()
	replaced := false
	for i := range entries {
		if entries[i].ID == e.ID {
			entries[i], replaced = e, true
		}
	}
	if !replaced {
		entries = append(entries, e)
	}
	b, err := json.MarshalIndent(registryFile{Version: 1, Tenants: entries}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode tenant registry: %w", err)
	}
	if err := atomicfile.WriteFile(r.path, b, atomicfile.Options{}); err != nil {
		return fmt.Errorf("write tenant registry: %w", err)
	}
	s := buildSnapshot(entries)
	r.rmu.Lock()
	r.snap = s
	r.rmu.Unlock()
	return nil
}

// newToken returns a fresh tenant API token and its SHA-256.
func newToken(t events.TenantID) (string, [32]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("token for tenant %s: %w", t, err)
	}
	tok := "tvt_" + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, sha256.Sum256([]byte(tok)), nil
}
