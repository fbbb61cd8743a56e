package archtest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

// module is the path of the module under test.
const module = "github.com/tenantvault/tenantvault"

// Patterns, in every table below: "x" matches the import path x only, and
// "x/..." matches x and every package under it. A package of ours is named
// by its path inside the module ("keys", "internal/kafka", "cmd/..."); any
// other package by its full import path.

// wiring may import anything: DESIGN's package table, row cmd/vaultd,
// cmd/vaultctl ("wiring only: flags, config, signals, logging | anything").
// It is allowed by every layer and every dependency rule.
var wiring = []string{"cmd/..."}

// layer is what one package of ours may import directly, besides the
// standard library: DESIGN's "may import" column.
type layer struct {
	pkg    string   // package, inside the module
	any    bool     // wiring: may import any package
	may    []string // packages of ours and third-party packages it may import
	noStd  []string // standard library packages it must not import
	reason string
	// exceptions are imports that DESIGN's column does not list but the
	// code has today, each with its reason. The test fails when one of
	// them no longer happens: delete it from the table then.
	exceptions []exception
}

// depRule names the only packages that may import a dependency directly:
// STYLE's "each third-party dependency lives in one place".
type depRule struct {
	deps       []string // the imports the rule governs
	only       []string // the packages of ours that may import them
	reason     string
	exceptions []exception
}

type exception struct {
	pkg string // the importing package, inside the module
	dep string // the import (a pattern)
	why string
}

// Module-wide third-party patterns used in several rows.
const (
	tink       = "github.com/tink-crypto/..."
	badger     = "github.com/dgraph-io/badger/..."
	kafkaGo    = "github.com/segmentio/kafka-go/..."
	franzGo    = "github.com/twmb/franz-go/..."
	watermill  = "github.com/ThreeDotsLabs/watermill/..."
	note       = "golang.org/x/mod/sumdb/note"
	prometheus = "github.com/prometheus/..."
)

var layers = []layer{
	{
		pkg:    "events",
		may:    []string{"github.com/google/uuid"},
		noStd:  []string{"os/...", "net/...", "syscall", "io/fs", "path/filepath"},
		reason: `DESIGN: events may import "standard library (+ uuid)"; STYLE: "it imports nothing of ours"; events/doc.go: "It never touches the disk, the network or key material"`,
	},
	{
		pkg:    "keys",
		may:    []string{"events", tink},
		reason: `DESIGN: keys may import "events, tink-go"`,
		exceptions: []exception{
			{"keys", "internal/atomicfile", "keysets are written crash-safely through the std-only helper (atomicfile imports nothing of ours)"},
			{"keys", "github.com/hashicorp/vault/api", "the hcvault:// master key: the Vault client that Tink's hcvault integration takes (DESIGN: keys owns the KEK and KMS URIs)"},
			{"keys", "google.golang.org/api/...", "the gcp-kms:// master key: client options and error classes of the GCP KMS client Tink's gcpkms integration uses"},
			{"keys", "google.golang.org/grpc/...", "classifying GCP KMS errors (codes, status) as ErrKMSUnavailable or ErrWrongMasterKey"},
			{"keys", note, "the audit checkpoint signer is handed out as a note.Signer, so its key never leaves keys"},
		},
	},
	{
		pkg:    "projections",
		may:    []string{"events", badger},
		reason: `DESIGN: projections may import "events, badger"`,
	},
	{
		pkg:    "audit",
		may:    []string{"events", "github.com/transparency-dev/merkle/..."},
		reason: `DESIGN: audit may import "events"; DESIGN "Audit": an RFC 6962 Merkle tree (transparency-dev/merkle)`,
		exceptions: []exception{
			{"audit", "internal/atomicfile", "checkpoints/latest is replaced crash-safely through the std-only helper"},
			{"audit", note, "signed checkpoints are C2SP signed notes (audit/doc.go)"},
		},
	},
	{
		pkg:    "audit/alerts",
		may:    []string{"events", "audit"},
		reason: `DESIGN: audit owns the alert sinks and may import "events"`,
	},
	{
		pkg: "audit/witness",
		may: []string{"events", "audit", note, "github.com/transparency-dev/witness/client/http", "github.com/transparency-dev/witness/witness",
			"github.com/transparency-dev/formats/note"},
		reason: `DESIGN "Witnessed audit": checkpoints leave the vault as they are signed (C2SP witnesses, through transparency-dev/witness's client; cosignatures verified by transparency-dev/formats); audit/witness/doc.go: it holds no key material and reaches Kafka only through an interface`,
	},
	{
		pkg:    "vault",
		may:    []string{"events", "projections", "audit", "vault/bundle"},
		reason: `DESIGN: vault may import "events, keys (through a small interface it declares), projections, audit": keys only through the small interfaces vault declares (Cipher, TenantKeys, KeyOwners, KeyDestroyer, KeyAdmin), which *keys.Keystore and *keys.TenantCipher satisfy as they are in the wiring; never Kafka, HTTP, Tink or Badger`,
		exceptions: []exception{
			{"vault", "internal/atomicfile", "the tenant registry is written crash-safely through the std-only helper"},
		},
	},
	{
		pkg:    "vault/bundle",
		may:    []string{"events", "audit", "github.com/transparency-dev/merkle/...", note},
		reason: `DESIGN: "a tenant moves between nodes by export/import of its store + wrapped keyset"; vault/bundle/doc.go: the bundle format and its verifier see no key material and no plaintext (records are opaque, the keyset is ciphertext for keys); the records root is RFC 6962 (transparency-dev/merkle, as audit's tree), the signature a signed note`,
	},
	{
		pkg:    "vault/httpapi",
		may:    []string{"events", "vault", "audit", "audit/alerts"},
		reason: `DESIGN: the HTTP API lives in a package of its own; vault/httpapi/doc.go: it never opens a store or a cipher itself, every tenant read goes through a vault.Session`,
	},
	{
		pkg:    "internal/atomicfile",
		reason: "a leaf helper that imports only the standard library, so any package may use it without pulling anything in",
	},
	{
		pkg:    "internal/buildinfo",
		reason: "internal/buildinfo/doc.go: a leaf that says which build is running (vaultd --version, vaultctl version) from the standard library's runtime/debug alone",
	},
	{
		pkg:    "internal/embed",
		reason: "internal/embed/doc.go: the embedders of the vector index (vault.Embedder), an OpenAI-compatible HTTP client and a pure-Go hashing embedder; standard library only, nothing of ours",
	},
	{
		pkg:    "vault/agent",
		may:    []string{"events", "vault", "audit"},
		reason: "vault/agent/doc.go: what an AI agent is handed — one tenant's retriever, through vault.Session only; never a store, a cipher or another tenant",
	},
	{
		pkg:    "internal/kafka",
		may:    []string{"events", "internal/atomicfile", kafkaGo, franzGo, watermill},
		reason: `DESIGN: Kafka plumbing lives in a package of its own; internal/kafka/doc.go: it moves opaque records, never sees key material or tenant stores; its one file write (the embedded broker's persisted SCRAM credentials) goes through internal/atomicfile`,
	},
	{
		pkg:    "internal/cluster",
		may:    []string{"events", "internal/kafka"},
		reason: "internal/cluster/doc.go: what the nodes of a cluster share over Kafka (the directory of nodes and tenants, who owns a tenant); it moves wrapped keysets and registry entries as opaque bytes, never a key in clear, a store or a session",
	},
	{
		pkg:    "internal/ingest",
		may:    []string{"events", "vault", "internal/kafka", watermill, "golang.org/x/sync/errgroup"},
		reason: `DESIGN: "vaultd ingest (watermill Router; Subscriber built on segmentio/kafka-go)": between the Kafka adapter and the vault, never decoding, decrypting or storing itself; STYLE: "fan-out and shutdown with errgroup"`,
	},
	{
		pkg:    "internal/metrics",
		may:    []string{prometheus},
		reason: "internal/metrics/doc.go: owns vaultd's Prometheus registry and collectors, read from plain counters and callbacks the measured packages expose; it imports nothing of ours",
	},
	{
		pkg:    "internal/vaulttest",
		may:    []string{"events", "keys", "projections", "audit", "vault", note},
		reason: "internal/vaulttest/doc.go: the test harness of the vault's wiring on real keys, stores and audit log, the way internal/server wires them, without Kafka or HTTP",
	},
	{
		pkg:    "internal/archtest",
		reason: "internal/archtest/doc.go: the package has no non-test code",
	},
	{
		pkg:    "deploy",
		reason: `DESIGN: deploy (compose file, image) may import "—"; deploy/doc.go: the package holds no code, only the static test of compose.yaml, the Dockerfile and .dockerignore`,
	},
	{
		pkg:    "internal/server",
		any:    true,
		reason: "internal/server/doc.go: wires a whole vaultd for cmd/vaultd, the end-to-end tests and the load command (DESIGN's wiring row)",
	},
	{
		pkg:    "cmd/...",
		any:    true,
		reason: `DESIGN: cmd/vaultd, cmd/vaultctl: "wiring only ... | anything"`,
	},
}

// testOnly are packages of ours that only test files may import: no
// non-test file of any package, wiring included, imports them.
var testOnly = []string{"internal/vaulttest"}

var depRules = []depRule{
	{
		deps:   []string{prometheus},
		only:   []string{"internal/metrics"},
		reason: `STYLE: "each third-party dependency lives in one place": vault/httpapi, audit/alerts and internal/ingest expose counters, callbacks or a small interface (httpapi.Metrics) instead`,
	},
	{
		deps:   []string{tink},
		only:   []string{"keys/..."},
		reason: `STYLE: "Tink only in keys"; DESIGN: "Only keys touches key material"`,
	},
	{
		deps: []string{
			"github.com/hashicorp/vault/api/...",
			"github.com/aws/aws-sdk-go/...",
			"github.com/aws/aws-sdk-go-v2/...",
			"cloud.google.com/go/kms/...",
			"google.golang.org/api/...",
		},
		only:   []string{"keys/..."},
		reason: `DESIGN: keys owns "the master key (KEK) and KMS URIs"; STYLE: "each third-party dependency lives in one place"`,
	},
	{
		deps:   []string{badger},
		only:   []string{"projections/..."},
		reason: `STYLE: "Badger only in projections"; DESIGN: projections owns the per-tenant Badger stores`,
	},
	{
		deps:   []string{kafkaGo, franzGo},
		only:   []string{"internal/kafka/..."},
		reason: `STYLE: "kafka-go/watermill only in the Kafka adapter"; internal/kafka/doc.go: "It owns the Kafka wire"`,
	},
	{
		deps:   []string{watermill},
		only:   []string{"internal/kafka/..."},
		reason: `STYLE: "kafka-go/watermill only in the Kafka adapter"`,
		exceptions: []exception{
			{"internal/ingest", watermill, `its Subscriber interface hands out watermill message.Message (DESIGN: "vaultd ingest (watermill Router; ...)")`},
			{"internal/server", watermill, "wires the adapter's watermill Publisher/Subscriber to the ingest runner and builds message.Message values"},
		},
	},
	{
		deps:   []string{"github.com/spf13/cobra/...", "github.com/spf13/pflag/..."},
		only:   []string{"cmd/vaultctl"},
		reason: `the command-line framework of vaultctl (issue 11): wiring only, never under the domain or library packages`,
	},
	{
		deps:   []string{"net/http/..."},
		only:   []string{"vault/httpapi/...", "internal/server"},
		reason: `STYLE: "net/http only in the HTTP API package"; DESIGN: the HTTP API is "never mixed into the domain packages"`,
		exceptions: []exception{
			{"audit/alerts", "net/http", `the webhook alert sink posts alerts over HTTP (DESIGN: "alert sinks (log, Prometheus counter, webhook, Kafka alert topic)")`},
			{"audit/witness", "net/http", `checkpoints are sent to C2SP tlog-witnesses over HTTP (DESIGN "Witnessed audit")`},
			{"internal/metrics", "net/http", "Registry.Handler returns client_golang's promhttp handler (an http.Handler) that vault/httpapi serves"},
			{"internal/embed", "net/http", "the --embedder client calls an OpenAI-compatible /v1/embeddings endpoint over HTTP (issue 12); vault sees it only as its Embedder interface"},
		},
	},
}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Standard   bool
	DepOnly    bool
	Imports    []string
	Error      *struct{ Err string }
}

// graph is the direct imports of each package of the module (inside the
// module: "keys"), and whether each import path is in the standard library.
type graph struct {
	imports  map[string][]string
	standard map[string]bool
}

// TestImports checks every direct import of every non-test file of the
// module against layers and depRules.
func TestImports(t *testing.T) {
	g := loadGraph(t)

	// Every package has exactly one layer; every layer names a package.
	layerOf := make(map[string]*layer)
	usedLayer := make(map[int]bool)
	for _, p := range sortedKeys(g.imports) {
		var found []int
		for i := range layers {
			if match(layers[i].pkg, p) {
				found = append(found, i)
			}
		}
		switch len(found) {
		case 0:
			t.Errorf("package %s has no layer in internal/archtest/imports_test.go: add one saying what it may import (DESIGN.md's package table)", p)
		case 1:
			layerOf[p] = &layers[found[0]]
			usedLayer[found[0]] = true
		default:
			t.Errorf("package %s matches %d layers; want one", p, len(found))
		}
	}
	for i, l := range layers {
		if !usedLayer[i] {
			t.Errorf("layer %q names no package of the module: remove it from the table", l.pkg)
		}
	}

	usedException := make(map[*exception]bool)
	for _, p := range sortedKeys(g.imports) {
		l := layerOf[p]
		for _, imp := range g.imports[p] {
			dep := g.name(imp)
			std := g.standard[imp]

			if l != nil && !l.any && !matchAny(wiring, p) {
				switch {
				case std:
					if matchAny(l.noStd, dep) {
						t.Errorf("%s imports %s, which it must never import: %s", p, dep, l.reason)
					}
				case matchAny(l.may, dep):
				default:
					if e := findException(l.exceptions, p, dep); e != nil {
						usedException[e] = true
					} else {
						t.Errorf("%s imports %s, which its layer does not allow: %s (allowed besides the standard library: %s)",
							p, dep, l.reason, allowedList(l))
					}
				}
			}

			if matchAny(testOnly, dep) {
				t.Errorf("%s imports %s, which only test files may import (its doc.go)", p, dep)
			}

			for i := range depRules {
				r := &depRules[i]
				if !matchAny(r.deps, dep) || matchAny(r.only, p) || matchAny(wiring, p) {
					continue
				}
				if e := findException(r.exceptions, p, dep); e != nil {
					usedException[e] = true
					continue
				}
				t.Errorf("%s imports %s, which only %s may import: %s",
					p, dep, strings.Join(append(slices.Clone(r.only), wiring...), ", "), r.reason)
			}
		}
	}

	// An exception that no longer happens must leave the table.
	check := func(where string, es []exception) {
		for i := range es {
			if e := &es[i]; !usedException[e] {
				t.Errorf("%s: exception %s → %s (%s) no longer happens: remove it from the table and from the doc.go that lists it",
					where, e.pkg, e.dep, e.why)
			}
		}
	}
	for i := range layers {
		check("layer "+layers[i].pkg, layers[i].exceptions)
	}
	for i := range depRules {
		check("rule for "+strings.Join(depRules[i].deps, ", "), depRules[i].exceptions)
	}
}

// TestMatch pins the pattern syntax the tables use.
func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{"keys", "keys", true},
		{"keys", "keys/sub", false},
		{"keys/...", "keys", true},
		{"keys/...", "keys/sub/x", true},
		{"keys/...", "keysx", false},
		{"net/http/...", "net/http/httptest", true},
		{"net/http/...", "net/url", false},
		{"github.com/tink-crypto/...", "github.com/tink-crypto/tink-go/v2/aead", true},
	} {
		if got := match(tt.pattern, tt.path); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func findException(es []exception, p, dep string) *exception {
	for i := range es {
		if es[i].pkg == p && match(es[i].dep, dep) {
			return &es[i]
		}
	}
	return nil
}

func allowedList(l *layer) string {
	var all []string
	all = append(all, l.may...)
	for _, e := range l.exceptions {
		all = append(all, e.dep+" (exception)")
	}
	if len(all) == 0 {
		return "nothing"
	}
	return strings.Join(all, ", ")
}

func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return pattern == path
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, path) })
}

// name is how the tables name an import path: inside the module for ours.
func (g graph) name(importPath string) string {
	if importPath == module {
		return "."
	}
	if rel, ok := strings.CutPrefix(importPath, module+"/"); ok {
		return rel
	}
	return importPath
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// loadGraph lists the module's packages with `go list -deps` for the host,
// linux, darwin and windows, and merges their direct imports.
func loadGraph(t *testing.T) graph {
	t.Helper()
	root := moduleRoot(t)
	touchSources(t, root)

	g := graph{imports: make(map[string][]string), standard: make(map[string]bool)}
	seen := make(map[string]map[string]bool)
	goos := []string{runtime.GOOS}
	for _, o := range []string{"linux", "darwin", "windows"} {
		if !slices.Contains(goos, o) {
			goos = append(goos, o)
		}
	}
	for _, o := range goos {
		cmd := exec.Command("go", "list", "-deps", "-test=false",
			"-json=ImportPath,Standard,DepOnly,Imports,Error", "./...")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS="+o, "CGO_ENABLED=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GOOS=%s go list: %v\n%s", o, err, stderr.Bytes())
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p pkg
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("GOOS=%s go list: decode: %v", o, err)
			}
			if p.Error != nil {
				t.Fatalf("GOOS=%s go list: %s: %s", o, p.ImportPath, p.Error.Err)
			}
			g.standard[p.ImportPath] = p.Standard
			if p.DepOnly || (p.ImportPath != module && !strings.HasPrefix(p.ImportPath, module+"/")) {
				continue
			}
			name := g.name(p.ImportPath)
			if seen[name] == nil {
				seen[name] = make(map[string]bool)
				g.imports[name] = nil
			}
			for _, imp := range p.Imports {
				if imp == "C" || imp == "unsafe" {
					g.standard[imp] = true
				}
				if !seen[name][imp] {
					seen[name][imp] = true
					g.imports[name] = append(g.imports[name], imp)
				}
			}
		}
	}
	for name, imps := range g.imports {
		sort.Strings(imps)
		g.imports[name] = imps
	}
	if _, ok := g.imports["events"]; !ok {
		t.Fatalf("go list in %s found no package events: is %s the module root?", root, root)
	}
	return g
}

// moduleRoot is the directory of the go.mod of the module under test.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD = %q: not inside the module", gomod)
	}
	return filepath.Dir(gomod)
}

// touchSources stats every .go file and lists every directory of the
// module, so that go test's result cache, which tracks the files a test
// opens or stats but not what its go list child reads, is invalidated by a
// change to any of them: a cached pass must never hide a new import.
func touchSources(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			_, err := os.ReadDir(path)
			return err
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" {
			_, err := os.Stat(path)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
}
