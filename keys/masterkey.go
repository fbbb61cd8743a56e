package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/atomicfile"
)

// TenantPlaceholder in a master key URI is replaced by the tenant id: each
// tenant's keyset is then wrapped by a key of its own (see [Config]).
const TenantPlaceholder = "{tenant}"

// VaultKeyName replaces [TenantPlaceholder] in the URI of the key that wraps
// what belongs to no tenant: the audit checkpoint signer and master.check.
// No tenant id can be "_vault" (ids start with [a-z0-9]).
const VaultKeyName = "_vault"

// masterKey is one key-encryption key (KEK): what wraps a keyset at rest.
// The local scheme's is a Tink AEAD in a file; the KMS schemes' are Tink's
// KMS-backed AEADs, whose every call goes to the KMS.
type masterKey interface {
	tink.AEAD
	// String describes the key for logs and errors, without secrets.
	String() string
}

// provider opens the key-encryption keys of one URI scheme. A master key URI
// picks one provider; with {tenant} in the URI, the provider is asked for one
// key per tenant.
type provider interface {
	// kek returns the key named by uri ({tenant} already replaced). Opening a
	// KMS key does not contact the KMS: the first Encrypt or Decrypt does.
	// mayCreate lets the local scheme generate a key that does not exist
	// yet; KMS schemes ignore it (their keys are made by the operator).
	kek(uri string, mayCreate bool) (masterKey, error)
	// close releases the provider's connections.
	close() error
}

// master is the configured master key URI and the provider behind it.
type master struct {
	uri   string // as configured; may contain {tenant}
	prov  provider
	fixed masterKey // the one KEK when uri has no {tenant}; nil otherwise
}

// templated reports whether each tenant has a key of its own.
func (m *master) templated() bool { return strings.Contains(m.uri, TenantPlaceholder) }

// resolve returns the URI of the key of name (a tenant id or VaultKeyName).
func (m *master) resolve(name string) string {
	return strings.ReplaceAll(m.uri, TenantPlaceholder, name)
}

// kekFor returns the key that wraps name's keyset (a tenant id), or the
// audit signer and check value (VaultKeyName).
func (m *master) kekFor(name string, mayCreate bool) (masterKey, error) {
	if m.fixed != nil {
		return m.fixed, nil
	}
	return m.prov.kek(m.resolve(name), mayCreate)
}

// String describes the master key without secrets.
func (m *master) String() string {
	if m == nil {
		return "master(nil)"
	}
	if m.fixed != nil {
		return m.fixed.String()
	}
	return describeURI(m.uri)
}

// GoString keeps %#v redacted.
func (m *master) GoString() string { return m.String() }

// openMaster opens the master key URI uri. mayCreateVault allows generating
// the local key of VaultKeyName (or the one local key, without {tenant})
// when it does not exist; it is false when keys sealed by some master key
// already exist, which a new key cannot open.
func openMaster(uri string, extras []registry.KMSClient, mayCreateVault bool, logger *slog.Logger) (*master, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		// Do not echo uri: a misconfigured value may be a secret pasted in.
		return nil, events.Errorf(events.EINVALID, "master key URI has no scheme: want local://PATH, hcvault://, aws-kms:// or gcp-kms://")
	}
	var prov provider
	switch {
	case extraSupports(extras, strings.ReplaceAll(uri, TenantPlaceholder, VaultKeyName)):
		prov = &clientProvider{clients: extras}
	case scheme == "local":
		if rest == "" {
			return nil, events.Errorf(events.EINVALID, "master key URI local:// has no path: want local://PATH")
		}
		prov = &localProvider{logger: logger}
	default:
		p, err := newKMSProvider(scheme, extras)
		if err != nil {
			return nil, err
		}
		prov = p
	}
	m := &master{uri: uri, prov: prov}
	// Open the vault's own key now: a bad URI fails here, not at first use.
	k, err := prov.kek(m.resolve(VaultKeyName), mayCreateVault)
	if err != nil {
		prov.close()
		return nil, err
	}
	if !m.templated() {
		m.fixed = k
	}
	return m, nil
}

// extraSupports reports whether one of the caller's KMS clients takes uri.
func extraSupports(clients []registry.KMSClient, uri string) bool {
	for _, c := range clients {
		if c != nil && c.Supported(uri) {
			return true
		}
	}
	return false
}

// describeURI returns uri as it may appear in logs and errors. The built-in
// schemes' URIs name keys (a path, an ARN, a resource name) and are shown
// without any query or user info; any other scheme's URI may hold key
// material (Tink's fake-kms:// URIs do), so it is shown as its scheme and a
// short SHA-256 fingerprint.
func describeURI(uri string) string {
	scheme, rest, _ := strings.Cut(uri, "://")
	switch scheme {
	case "local", "hcvault", "aws-kms", "gcp-kms":
		rest, _, _ = strings.Cut(rest, "?")
		if at := strings.LastIndex(rest, "@"); at >= 0 && scheme == "hcvault" {
			rest = rest[at+1:]
		}
		return scheme + "://" + rest
	}
	sum := sha256.Sum256([]byte(uri))
	return fmt.Sprintf("%.40s://[sha256:%s]", scheme, hex.EncodeToString(sum[:6]))
}

// localProvider reads master keys from files: development only.
type localProvider struct{ logger *slog.Logger }

func (p *localProvider) kek(uri string, mayCreate bool) (masterKey, error) {
	return openLocalMasterKey(strings.TrimPrefix(uri, "local://"), mayCreate, p.logger)
}

func (p *localProvider) close() error { return nil }

// localMasterKey is a cleartext Tink AEAD keyset in a file: development only.
type localMasterKey struct {
	aead    tink.AEAD
	path    string
	primary uint32
}

func (k *localMasterKey) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	return k.aead.Encrypt(plaintext, associatedData)
}

func (k *localMasterKey) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	return k.aead.Decrypt(ciphertext, associatedData)
}

// String returns the key's URI and primary key id, never key material.
func (k *localMasterKey) String() string {
	return fmt.Sprintf("local://%s (primary=0x%08x, REDACTED)", k.path, k.primary)
}

// GoString keeps %#v redacted too.
func (k *localMasterKey) GoString() string { return k.String() }

// errLocalKeyMissing is what openLocalMasterKey wraps when the file does not
// exist and may not be created.
var errLocalKeyMissing = errors.New("local master key file does not exist")

// openLocalMasterKey reads the cleartext AEAD keyset in path, generating an
// AES-256-GCM one (mode 0600) when path does not exist and mayCreate is set.
func openLocalMasterKey(path string, mayCreate bool, logger *slog.Logger) (*localMasterKey, error) {
	if path == "" {
		return nil, events.Errorf(events.EINVALID, "master key URI local:// has no path: want local://PATH")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !mayCreate {
			return nil, fmt.Errorf("master key local://%s does not exist, but the keystore holds keys sealed by a master key: restore that file (a new master key cannot open them): %w", path, errLocalKeyMissing)
		}
		data, err = createLocalMasterKey(path, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("master key local://%s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("master key file is readable or writable by group or others; want mode 0600",
			"path", path, "mode", fi.Mode().Perm().String())
	}

	// Never wrap Tink's parse errors: they may quote the file, which is key material.
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(data)))
	if err != nil {
		h, err = insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(data)))
	}
	if err != nil {
		return nil, fmt.Errorf("master key local://%s: the file is not a Tink keyset (want a cleartext AES256_GCM keyset, JSON or binary)", path)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("master key local://%s: the keyset is not a Tink AEAD keyset (want AES256_GCM)", path)
	}
	return &localMasterKey{aead: a, path: path, primary: h.KeysetInfo().GetPrimaryKeyId()}, nil
}

// createLocalMasterKey generates a new master key in path and returns its
// serialized form. If another process created path first, it returns that one.
func createLocalMasterKey(path string, logger *slog.Logger) ([]byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, fmt.Errorf("serialize: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), atomicfile.Options{NoClobber: true}); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	logger.Warn("generated a new local master key: DEVELOPMENT ONLY, it sits in cleartext next to the data it protects; use a KMS master key URI in production",
		"path", path)
	return buf.Bytes(), nil
}
