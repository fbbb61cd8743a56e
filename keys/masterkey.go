package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/tenantvault/tenantvault/events"
)

// masterKey is the key-encryption key that wraps tenant keysets at rest. Each
// URI scheme opens one; the KMS schemes will return Tink's KMS-backed AEADs,
// which are tink.AEADs too.
type masterKey interface {
	tink.AEAD
	// String describes the key for logs and errors, without secrets.
	String() string
}

// plannedSchemes are master key URI schemes that later issues add.
var plannedSchemes = map[string]bool{"hcvault": true, "aws-kms": true, "gcp-kms": true}

// openMasterKey opens the master key named by uri. mayCreate allows
// generating a local master key that does not exist yet; it is false when
// keys sealed by some master key already exist, which a new key cannot open.
func openMasterKey(uri string, mayCreate bool, logger *slog.Logger) (masterKey, error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		// Do not echo uri: a misconfigured value may be a secret pasted in.
		return nil, events.Errorf(events.EINVALID, "master key URI has no scheme: want local://PATH")
	}
	switch {
	case scheme == "local":
		return openLocalMasterKey(rest, mayCreate, logger)
	case plannedSchemes[scheme]:
		return nil, events.Errorf(events.EINVALID, "master key scheme %s is not supported yet", scheme)
	default:
		return nil, events.Errorf(events.EINVALID, "unknown master key scheme %.40q: want local://PATH", scheme)
	}
}

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

// openLocalMasterKey reads the cleartext AEAD keyset in path, generating an
// AES-256-GCM one (mode 0600) when path does not exist and mayCreate is set.
func openLocalMasterKey(path string, mayCreate bool, logger *slog.Logger) (*localMasterKey, error) {
	if path == "" {
		return nil, events.Errorf(events.EINVALID, "master key URI local:// has no path: want local://PATH")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !mayCreate {
			return nil, fmt.Errorf("master key local://%s does not exist, but the keystore holds keys sealed by a master key: restore that file (a new master key cannot open them)", path)
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
	if err := writeFileAtomic(path, buf.Bytes(), true); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return os.ReadFile(path)
		}
		return nil, err
	}
	logger.Warn("generated a new local master key: DEVELOPMENT ONLY, it sits in cleartext next to the data it protects; use a KMS master key URI in production",
		"path", path)
	return buf.Bytes(), nil
}
