package keys

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-awskms/v2/integration/awskms"
	"github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tenantvault/tenantvault/events"
)

// Errors that say why a master key could not unwrap something. A
// *MasterKeyError unwraps to one of them.
var (
	// ErrWrongMasterKey: the master key (local, or a KMS that answered)
	// does not open the file: another master key sealed it, the KMS key
	// was disabled, destroyed or is not ours to use, or the file was
	// tampered with or moved from another tenant.
	ErrWrongMasterKey error = &events.Error{Code: events.EINTERNAL, Message: "the master key does not open the keys"}
	// ErrKMSUnavailable: the KMS could not be reached or did not answer in
	// time (network, DNS, TLS, timeout, 5xx, throttling). Retry later.
	ErrKMSUnavailable error = &events.Error{Code: events.EUNAVAILABLE, Message: "the key management service is unreachable"}
)

// MasterKeyError reports a master key that could not unwrap (or wrap) a
// file: which file, whose keys, with which master key, and the cause class.
// It never holds key material. errors.Is(err, ErrWrongMasterKey) or
// errors.Is(err, ErrKMSUnavailable) tells the class; events.ErrorCode maps
// them to EINTERNAL and EUNAVAILABLE.
type MasterKeyError struct {
	Op          string          // "unwrap" or "wrap"
	What        string          // "AEAD keyset", "PRF keyset", "audit checkpoint key", "master key check"
	Tenant      events.TenantID // "" for what belongs to no tenant
	Path        string          // the file
	Master      string          // the master key, described without secrets
	Unreachable bool            // true: the KMS was not reached; false: it (or the local key) refused
	Err         error           // the KMS's answer, when there was one; never key material
}

func (e *MasterKeyError) Error() string {
	whose := ""
	if e.Tenant != "" {
		whose = " of tenant " + string(e.Tenant)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cannot %s the %s%s (%s) with master key %s: ", e.Op, e.What, whose, e.Path, e.Master)
	if e.Unreachable {
		b.WriteString("the KMS is unreachable, retry later")
	} else {
		b.WriteString("wrong master key: the file was sealed by another master key, the KMS key is disabled, destroyed or not usable by us, or the file was tampered with or copied from another tenant")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%.300s)", e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the class sentinel and the cause.
func (e *MasterKeyError) Unwrap() []error {
	class := ErrWrongMasterKey
	if e.Unreachable {
		class = ErrKMSUnavailable
	}
	if e.Err == nil {
		return []error{class}
	}
	return []error{class, e.Err}
}

// unreachable reports whether err means the KMS was not reached or could not
// answer (retry later), as opposed to an answer that refuses the request.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrKMSUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error // net/http client errors: DNS, TLS, connection
	if errors.As(err, &ue) {
		return true
	}
	// gRPC (GCP KMS).
	var gs interface{ GRPCStatus() *status.Status }
	if errors.As(err, &gs) {
		switch gs.GRPCStatus().Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled, codes.Internal:
			return true
		}
		return false
	}
	// REST (GCP KMS over HTTP).
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code == 429 || ge.Code >= 500
	}
	// HashiCorp Vault: 503 when sealed or in standby, 429 when rate limited.
	var ve *api.ResponseError
	if errors.As(err, &ve) {
		return ve.StatusCode == 429 || ve.StatusCode >= 500
	}
	// AWS SDK: awserr.RequestFailure and awserr.Error.
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) && (sc.StatusCode() == 429 || sc.StatusCode() >= 500) {
		return true
	}
	var ac interface{ Code() string }
	if errors.As(err, &ac) {
		switch ac.Code() {
		case "RequestError", "RequestCanceled", "SerializationError", "ThrottlingException", "RequestLimitExceeded",
			"KMSInternalException", "DependencyTimeoutException", "ServiceUnavailable", "InternalFailure",
			"NoCredentialProviders", "ExpiredToken", "ExpiredTokenException":
			return true
		}
	}
	return false
}

// errRecorder wraps a KEK to keep the error of its last call: Tink's keyset
// reader and writer flatten it into a string, and its class matters.
type errRecorder struct {
	masterKey
	err error
}

func (r *errRecorder) Encrypt(plaintext, associatedData []byte) ([]byte, error) {
	ct, err := r.masterKey.Encrypt(plaintext, associatedData)
	r.err = err
	return ct, err
}

func (r *errRecorder) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	pt, err := r.masterKey.Decrypt(ciphertext, associatedData)
	r.err = err
	return pt, err
}

// kmsError builds the MasterKeyError for a failed call of kek, whose cause
// is cause (nil when the call itself succeeded and what it returned did not
// parse). Causes of the local key are dropped: they never say more than
// "decryption failed".
func kmsError(op, what string, t events.TenantID, path string, kek masterKey, cause error) *MasterKeyError {
	e := &MasterKeyError{Op: op, What: what, Tenant: t, Path: path, Master: kek.String(), Unreachable: unreachable(cause)}
	if _, local := kek.(*localMasterKey); !local {
		e.Err = cause
	}
	return e
}

// kmsMasterKey is a KEK held by a KMS: every call goes to the KMS.
type kmsMasterKey struct {
	tink.AEAD
	uri string
}

// String returns the key's URI (redacted for schemes other than the
// built-in ones), never key material.
func (k *kmsMasterKey) String() string { return describeURI(k.uri) }

// GoString keeps %#v redacted too.
func (k *kmsMasterKey) GoString() string { return k.String() }

// clientProvider serves URIs that one of the caller's KMS clients supports
// (Config.KMSClients; in tests Tink's fakekms).
type clientProvider struct{ clients []registry.KMSClient }

func (p *clientProvider) kek(uri string, _ bool) (masterKey, error) {
	for _, c := range p.clients {
		if c == nil || !c.Supported(uri) {
			continue
		}
		a, err := c.GetAEAD(uri)
		if err != nil {
			// KMS clients may quote the URI, which may be key material (fake-kms).
			return nil, events.Errorf(events.EINVALID, "master key %s: the KMS client does not accept the key URI", describeURI(uri))
		}
		return &kmsMasterKey{AEAD: a, uri: uri}, nil
	}
	return nil, events.Errorf(events.EINVALID, "master key %s: no KMS client supports this URI", describeURI(uri))
}

func (p *clientProvider) close() error { return nil }

// A builtinKMS is one of the KMS schemes built into the keystore.
type builtinKMS struct {
	// check validates a key URI ({tenant} replaced) and returns the prefix
	// that one client serves (the whole scheme, a region, a Vault server).
	check func(uri string) (prefix string, err error)
	// newClient constructs the client of prefix. It makes no KMS request
	// (the Google client does find credentials and open its connection).
	newClient func(prefix string) (registry.KMSClient, error)
}

// builtinSchemes are the KMS schemes built in. Their clients find
// credentials as each SDK does: HashiCorp Vault from VAULT_TOKEN (and its
// TLS settings from VAULT_CACERT, ...), AWS from the default chain
// (AWS_* variables, ~/.aws, the instance role), Google Cloud from
// Application Default Credentials.
var builtinSchemes = map[string]builtinKMS{
	"hcvault": {check: checkHCVaultURI, newClient: newHCVaultClient},
	"aws-kms": {check: checkAWSURI, newClient: newAWSClient},
	"gcp-kms": {check: checkGCPURI, newClient: newGCPClient},
}

// gcpClientOptions are added to every Google Cloud KMS client; tests set
// option.WithoutAuthentication so that no credential lookup happens.
var gcpClientOptions []option.ClientOption

// kmsProvider opens keys of one built-in KMS scheme, with one client per
// prefix (region, server), made on first use and kept until close.
type kmsProvider struct {
	scheme  string
	builtin builtinKMS

	mu      sync.Mutex
	clients map[string]registry.KMSClient
}

func newKMSProvider(scheme string, extras []registry.KMSClient) (*kmsProvider, error) {
	b, ok := builtinSchemes[scheme]
	if !ok {
		return nil, events.Errorf(events.EINVALID, "unknown master key scheme %.40q: want local://PATH, hcvault://, aws-kms:// or gcp-kms://", scheme)
	}
	return &kmsProvider{scheme: scheme, builtin: b, clients: make(map[string]registry.KMSClient)}, nil
}

func (p *kmsProvider) kek(uri string, _ bool) (masterKey, error) {
	c, err := p.client(uri)
	if err != nil {
		return nil, err
	}
	a, err := c.GetAEAD(uri)
	if err != nil {
		return nil, events.Errorf(events.EINVALID, "master key %s: %v", describeURI(uri), err)
	}
	return &kmsMasterKey{AEAD: a, uri: uri}, nil
}

// client returns the client that serves uri, constructing it if needed.
func (p *kmsProvider) client(uri string) (registry.KMSClient, error) {
	prefix, err := p.builtin.check(uri)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[prefix]; ok {
		return c, nil
	}
	c, err := p.builtin.newClient(prefix)
	if err != nil {
		return nil, fmt.Errorf("master key %s: %s client: %w", describeURI(uri), p.scheme, err)
	}
	p.clients[prefix] = c
	return c, nil
}

func (p *kmsProvider) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for prefix, c := range p.clients {
		if cl, ok := c.(interface{ Close() error }); ok {
			errs = append(errs, cl.Close())
		}
		delete(p.clients, prefix)
	}
	return errors.Join(errs...)
}

// hcvault://HOST[:PORT]/MOUNT/keys/NAME: a Vault transit key. The client
// talks to https://HOST[:PORT], or to VAULT_ADDR when that names the same
// host and port (so a dev server over http works).
func checkHCVaultURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "hcvault" || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return "", events.Errorf(events.EINVALID, "master key URI %s is not hcvault://HOST[:PORT]/MOUNT/keys/NAME", describeURI(uri))
	}
	parts := strings.Split(u.EscapedPath(), "/")
	if len(parts) < 4 || parts[0] != "" || parts[len(parts)-2] != "keys" || parts[len(parts)-1] == "" || slicesContainsEmpty(parts[1:]) {
		return "", events.Errorf(events.EINVALID, "master key URI %s is not hcvault://HOST[:PORT]/MOUNT/keys/NAME (a transit key path)", describeURI(uri))
	}
	return "hcvault://" + u.Host + "/", nil
}

func slicesContainsEmpty(s []string) bool {
	for _, x := range s {
		if x == "" {
			return true
		}
	}
	return false
}

func newHCVaultClient(prefix string) (registry.KMSClient, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(prefix, "hcvault://"), "/")
	cfg := api.DefaultConfig() // reads VAULT_CACERT, VAULT_CLIENT_TIMEOUT, ...
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = "https://" + host
	if env := os.Getenv(api.EnvVaultAddress); env != "" {
		if u, err := url.Parse(env); err == nil && u.Host == host {
			cfg.Address = env
		}
	}
	c, err := api.NewClient(cfg) // token from VAULT_TOKEN; no request is made
	if err != nil {
		return nil, err
	}
	return hcvault.NewClientWithAEADOptions(prefix, c.Logical())
}

// aws-kms://arn:PARTITION:kms:REGION:ACCOUNT:key/ID (or :alias/NAME).
var awsKeyARN = regexp.MustCompile(`^aws-kms://arn:(aws[a-zA-Z0-9-]*):kms:([a-z0-9-]+):([0-9]{12}):(key|alias)/[a-zA-Z0-9/_-]+$`)

func checkAWSURI(uri string) (string, error) {
	m := awsKeyARN.FindStringSubmatch(uri)
	if m == nil {
		return "", events.Errorf(events.EINVALID, "master key URI %s is not aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID (or alias/NAME)", describeURI(uri))
	}
	return "aws-kms://arn:" + m[1] + ":kms:" + m[2] + ":", nil
}

func newAWSClient(prefix string) (registry.KMSClient, error) {
	// The session finds credentials lazily; associated data goes into the
	// encryption context as "associatedData".
	return awskms.NewClientWithOptions(prefix, awskms.WithEncryptionContextName(awskms.AssociatedData))
}

// gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K.
var gcpKeyName = regexp.MustCompile(`^gcp-kms://projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`)

func checkGCPURI(uri string) (string, error) {
	if !gcpKeyName.MatchString(uri) {
		return "", events.Errorf(events.EINVALID, "master key URI %s is not gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K", describeURI(uri))
	}
	return "gcp-kms://", nil
}

// newGCPClient finds Application Default Credentials and opens the gRPC
// connection to Cloud KMS (no KMS request is made until the first call).
func newGCPClient(prefix string) (registry.KMSClient, error) {
	return gcpkms.NewClient(context.Background(), prefix, gcpkms.WithGoogleAPIClientOptions(gcpClientOptions...))
}
