package keys

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/signature"
	tinked25519 "github.com/tink-crypto/tink-go/v2/signature/ed25519"
	"github.com/tink-crypto/tink-go/v2/tink"
	"golang.org/x/mod/sumdb/note"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

const (
	// auditSignerFile holds the audit log's checkpoint signing key. Its
	// suffix is not keysetExt, so it can never be read as a tenant keyset
	// (and no tenant id can name it).
	auditSignerFile   = "audit-checkpoint.signer"
	auditSignerFormat = "tenantvault-audit-signer-v1"

	// MaxAuditOriginLen bounds the origin (the note key name) of the audit
	// checkpoint signer.
	MaxAuditOriginLen = 256
)

// auditSignerAD is the associated data that binds the wrapped signing
// keyset to its purpose: a tenant keyset file copied over it does not open.
var auditSignerAD = []byte("audit-checkpoint-signer")

// auditSignerFileData is the format of <dir>/audit-checkpoint.signer. Origin
// is the note key name the key signs under; it is not secret.
type auditSignerFileData struct {
	Format string          `json:"format"`
	Origin string          `json:"origin"`
	Keyset json.RawMessage `json:"keyset"` // Tink EncryptedKeyset (one ED25519 key, RAW), JSON
}

// CheckpointSigner signs the audit log's checkpoints: it is a note.Signer
// (golang.org/x/mod/sumdb/note) over an Ed25519 key that never leaves this
// package. The same key signs shred receipts (audit.SignReceipt), whose
// signed first line is a type prefix no checkpoint can start with, so the
// one is never taken for the other. It is safe for concurrent use and
// prints redacted.
type CheckpointSigner struct {
	name   string
	hash   uint32
	vkey   string
	signer tink.Signer
	handle *keyset.Handle // for tests; never exported
}

// Name returns the note key name: the audit log's origin.
func (s *CheckpointSigner) Name() string { return s.name }

// KeyHash returns the note key hash: the first four bytes (big-endian) of
// SHA-256(name || "\n" || 0x01 || public key).
func (s *CheckpointSigner) KeyHash() uint32 { return s.hash }

// Sign returns the Ed25519 signature of msg (64 bytes).
func (s *CheckpointSigner) Sign(msg []byte) ([]byte, error) {
	sig, err := s.signer.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("keys: sign audit checkpoint: %w", err)
	}
	return sig, nil
}

// VerifierKey returns the public note verifier key, "<name>+<hash>+<base64>"
// (see [Keystore.AuditVerifierKey]).
func (s *CheckpointSigner) VerifierKey() string { return s.vkey }

// String returns the origin and key hash, never key material.
func (s *CheckpointSigner) String() string {
	if s == nil {
		return "CheckpointSigner(nil)"
	}
	return fmt.Sprintf("CheckpointSigner(%s, hash=%08x, REDACTED)", s.name, s.hash)
}

// GoString keeps %#v redacted.
func (s *CheckpointSigner) GoString() string { return s.String() }

// LogValue keeps slog output redacted, whatever the handler.
func (s *CheckpointSigner) LogValue() slog.Value { return slog.StringValue(s.String()) }

// AuditSigner returns the signer of the audit log's checkpoints, with
// origin as its note key name. On first use it generates an Ed25519 key and
// stores it in <dir>/audit-checkpoint.signer, wrapped by the master key with
// the associated data "audit-checkpoint-signer" (mode 0600, written
// atomically); later calls, in this process or after a restart, return the
// same key.
//
// origin must be a valid note key name (non-empty UTF-8, no spaces, no '+',
// no control characters, at most MaxAuditOriginLen bytes), e.g.
// "vault.example.com/audit". A key is made for one origin: asking for
// another fails with code ECONFLICT, since checkpoints already signed under
// the first one would no longer verify under a renamed key.
func (ks *Keystore) AuditSigner(origin string) (*CheckpointSigner, error) {
	if err := checkAuditOrigin(origin); err != nil {
		return nil, err
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.state.Load().closed {
		return nil, errClosed
	}
	s, err := ks.loadAuditSigner()
	if errors.Is(err, ErrNotFound) {
		s, err = ks.createAuditSigner(origin)
	}
	if err != nil {
		return nil, err
	}
	if s.name != origin {
		return nil, events.Errorf(events.ECONFLICT, "the audit checkpoint key was created for origin %.300q, not %.300q", s.name, origin)
	}
	return s, nil
}

// AuditVerifierKey returns the public note verifier key of the audit log's
// checkpoint signer: "<origin>+<key hash, 8 hex digits>+<base64 of 0x01 ||
// 32-byte Ed25519 public key>", what note.NewVerifier and
// audit.VerifyExport take. It fails with ErrNotFound until AuditSigner has
// created the key.
func (ks *Keystore) AuditVerifierKey() (string, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.state.Load().closed {
		return "", errClosed
	}
	s, err := ks.loadAuditSigner()
	if err != nil {
		return "", err
	}
	return s.vkey, nil
}

// checkAuditOrigin applies note's key name rules, and refuses control
// characters and overlong names on top.
func checkAuditOrigin(origin string) error {
	switch {
	case origin == "":
		return events.Errorf(events.EINVALID, "audit origin is empty")
	case len(origin) > MaxAuditOriginLen:
		return events.Errorf(events.EINVALID, "audit origin is %d bytes, over the limit of %d", len(origin), MaxAuditOriginLen)
	case !utf8.ValidString(origin),
		strings.ContainsRune(origin, '+'),
		strings.IndexFunc(origin, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return events.Errorf(events.EINVALID, "audit origin %.80q is not a valid note key name (no spaces, '+' or control characters)", origin)
	}
	return nil
}

// loadAuditSigner returns the cached signer, or reads and unwraps the key
// file, or fails with ErrNotFound. ks.mu must be held.
func (ks *Keystore) loadAuditSigner() (*CheckpointSigner, error) {
	if ks.auditSigner != nil {
		return ks.auditSigner, nil
	}
	path := filepath.Join(ks.dir, auditSignerFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("audit checkpoint key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	var f auditSignerFileData
	if err := json.Unmarshal(data, &f); err != nil || f.Format != auditSignerFormat {
		return nil, fmt.Errorf("audit checkpoint key %s is not a %s file", path, auditSignerFormat)
	}
	if err := checkAuditOrigin(f.Origin); err != nil {
		return nil, fmt.Errorf("audit checkpoint key %s: %w", path, err)
	}
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	h, err := unwrapKeyset(f.Keyset, kek, auditSignerAD, "audit checkpoint key", "", path)
	if err != nil {
		return nil, err
	}
	s, err := newCheckpointSigner(f.Origin, h)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key %s: %w", path, err)
	}
	ks.auditSigner = s
	return s, nil
}

// createAuditSigner generates, stores and caches a new signing key for
// origin. ks.mu must be held.
func (ks *Keystore) createAuditSigner(origin string) (*CheckpointSigner, error) {
	h, err := keyset.NewHandle(signature.ED25519KeyWithoutPrefixTemplate())
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: generate: %w", err)
	}
	s, err := newCheckpointSigner(origin, h)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	path := filepath.Join(ks.dir, auditSignerFile)
	kek, err := ks.master.kekFor(VaultKeyName, false)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	wrapped, err := wrapKeyset(h, kek, auditSignerAD, "audit checkpoint key", "", path)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(auditSignerFileData{Format: auditSignerFormat, Origin: origin, Keyset: wrapped}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), atomicfile.Options{NoClobber: true}); err != nil {
		return nil, fmt.Errorf("audit checkpoint key: %w", err)
	}
	ks.logger.Info("created the audit checkpoint signing key", "origin", origin, "verifier_key", s.vkey)
	ks.auditSigner = s
	return s, nil
}

// newCheckpointSigner builds the signer of h, which must hold exactly one
// Ed25519 key with no output prefix (so that a signature is a bare Ed25519
// signature, as signed notes require), and proves it signs what
// crypto/ed25519 verifies.
func newCheckpointSigner(origin string, h *keyset.Handle) (*CheckpointSigner, error) {
	info := h.KeysetInfo()
	if len(info.GetKeyInfo()) != 1 || info.GetKeyInfo()[0].GetOutputPrefixType() != tinkpb.OutputPrefixType_RAW {
		return nil, errors.New("not a single-key Ed25519 keyset without output prefix")
	}
	pubHandle, err := h.Public()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	entry, err := pubHandle.Primary()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pk, ok := entry.Key().(*tinked25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want an Ed25519 key", entry.Key())
	}
	pub := ed25519.PublicKey(pk.KeyBytes())
	signer, err := signature.NewSigner(h)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	probe := []byte("tenantvault audit checkpoint signer self-test\n")
	if sig, err := signer.Sign(probe); err != nil || !ed25519.Verify(pub, probe, sig) {
		return nil, errors.New("the key does not make plain Ed25519 signatures")
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	return &CheckpointSigner{name: origin, hash: v.KeyHash(), vkey: vkey, signer: signer, handle: h}, nil
}
