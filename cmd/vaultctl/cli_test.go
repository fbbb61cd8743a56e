package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// fakeAPI is an HTTP server that answers fixed bodies by path and records
// the requests it saw: for the CLI's own behaviour (flags, credentials,
// output), where no vault logic is under test.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD path?query auth"
}

func newFakeAPI(t *testing.T, answers map[string]string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		f.mu.Unlock()
		body, ok := answers[r.Method+" "+r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			body = `{"error":{"code":"not_found","message":"no such endpoint"}}`
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(body, `{"error"`) && ok {
			w.WriteHeader(http.StatusConflict)
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// runWith runs vaultctl with env and returns stdout, stderr and the error.
func runWith(env map[string]string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), err
}

// adminDir is a data dir holding an admin token.
func adminDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("tva_admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestHelpOnEveryCommand: --help on every command exits 0 and prints its
// usage; a group alone names its subcommands.
func TestHelpOnEveryCommand(t *testing.T) {
	var paths [][]string
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, s := range cmd.Commands() {
			walk(s, append(append([]string(nil), path...), s.Name()))
		}
	}
	walk((&cli{getenv: func(string) string { return "" }}).rootCmd(), nil)
	if len(paths) < 25 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		out, _, err := runWith(nil, append(p, "--help")...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("vaultctl %s --help = %v, printed %q; want usage and exit 0", strings.Join(p, " "), err, out)
		}
	}
	if out, _, err := runWith(nil, "tenant", "--help"); err != nil || !strings.Contains(out, "create") || !strings.Contains(out, "shred") {
		t.Errorf("tenant --help = %v, %q", err, out)
	}
	if _, _, err := runWith(nil, "tenant"); err == nil || !strings.Contains(err.Error(), "create, export, import, import-key, kafka-credential, list, move, shred") {
		t.Errorf("tenant alone = %v, want its subcommands named", err)
	}
	if out, _, err := runWith(nil); err != nil || !strings.Contains(out, "Available Commands") {
		t.Errorf("vaultctl alone = %v, %q; want help", err, out)
	}
}

// TestGlobalFlagsAnywhere: global flags before the command (the deploy
// README's example) and after it.
func TestGlobalFlagsAnywhere(t *testing.T) {
	api := newFakeAPI(t, map[string]string{"POST /v1/tenants": `{"id":"acme","topic":"tenant.acme.events","token":"tvt_acme"}`})
	dir := adminDir(t)
	for _, args := range [][]string{
		{"--data-dir", dir, "--addr", api.URL, "tenant", "create", "acme"},
		{"tenant", "--data-dir", dir, "create", "--addr", api.URL, "acme"},
		{"tenant", "create", "acme", "--data-dir=" + dir, "--addr=" + api.URL},
	} {
		out, _, err := runWith(nil, args...)
		if err != nil || strings.TrimSpace(out) != "tvt_acme" {
			t.Errorf("vaultctl %s = %v, %q; want the token", strings.Join(args, " "), err, out)
		}
	}
	for _, r := range api.requests() {
		if r != "POST /v1/tenants Bearer tva_admin" {
			t.Errorf("request %q, want POST /v1/tenants with the admin token of --data-dir", r)
		}
	}
}

func TestCompletionAndVersion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef vaultctl", "fish": "complete -c vaultctl"} {
		out, _, err := runWith(nil, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s = %v, want output with %q", shell, err, want)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := runWith(nil, args...)
		if err != nil || !strings.HasPrefix(out, "vaultctl ") || !strings.Contains(out, "go1.") {
			t.Errorf("vaultctl %s = %v, %q; want vaultctl VERSION (... goX)", args[0], err, out)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tenat", "list"}, "Did you mean this?\n\ttenant"},
		{[]string{"tenant", "creat", "acme"}, "Did you mean this?\n\tcreate"},
		{[]string{"audit", "verfy"}, "Did you mean this?\n\tverify"},
		{[]string{"keys", "rotat", "acme"}, "Did you mean this?\n\trotate"},
	} {
		_, _, err := runWith(nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), "unknown command") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("vaultctl %s = %v, want a suggestion %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
}

// TestUnreachable: no raw dial error, but where vaultd was looked for and
// how to point elsewhere.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	env := map[string]string{"TENANTVAULT_ADDR": addr, "TENANTVAULT_DATA_DIR": adminDir(t)}
	_, _, err = runWith(env, "tenant", "list")
	want := "cannot reach vaultd at http://" + addr + ": is it running? (set --addr or TENANTVAULT_ADDR)"
	if err == nil || err.Error() != want {
		t.Fatalf("tenant list with vaultd down = %v, want %q", err, want)
	}
}

func TestNormalizeAddr(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"localhost:8080", "http://localhost:8080", ""},
		{"vault.example", "http://vault.example", ""},
		{"https://vault.example/", "https://vault.example", ""},
		{"http://10.0.0.1:8080/base", "http://10.0.0.1:8080/base", ""},
		{"ftp://vault.example", "", "the scheme must be http or https"},
		{"http://", "", "no host"},
		{"http://h:80/?x=1", "", "no query"},
		{" ", "", "empty"},
	} {
		got, err := normalizeAddr(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "TENANTVAULT_ADDR") {
				t.Errorf("normalizeAddr(%q) = %q, %v; want an error saying %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// Used: an address without a scheme reaches the server.
	api := newFakeAPI(t, map[string]string{"GET /v1/tenants": `{"tenants":[]}`})
	env := map[string]string{"TENANTVAULT_ADDR": strings.TrimPrefix(api.URL, "http://"), "TENANTVAULT_DATA_DIR": adminDir(t)}
	if _, _, err := runWith(env, "tenant", "list"); err != nil {
		t.Errorf("TENANTVAULT_ADDR without a scheme: %v", err)
	}
}

// stateBody has numbers any float64 round trip changes, and keys out of
// order.
const stateBody = `{"version":2,"data":{"big":9007199254740993,"n":1e3,"a":[1.50,"x"]},"stream":"order-1"}`

// TestGetPrintsServerBytes: get prints the server's answer indented,
// numbers and key order as sent; -o yaml and -o table keep them too ("n"
// is quoted in YAML: a YAML 1.1 parser reads a bare n as false).
func TestGetPrintsServerBytes(t *testing.T) {
	api := newFakeAPI(t, map[string]string{"GET /v1/tenants/acme/streams/order-1": stateBody})
	env := map[string]string{"TENANTVAULT_ADDR": api.URL, "TENANTVAULT_TOKEN": "tvt_acme"}
	tests := []struct {
		format, want string
	}{
		{"json", `{
  "version": 2,
  "data": {
    "big": 9007199254740993,
    "n": 1e3,
    "a": [
      1.50,
      "x"
    ]
  },
  "stream": "order-1"
}
`},
		{"yaml", `version: 2
data:
  big: 9007199254740993
  "n": 1e3
  a:
  - 1.50
  - x
stream: order-1
`},
		{"table", `FIELD     VALUE
version   2
data      {"big":9007199254740993,"n":1e3,"a":[1.50,"x"]}
stream    order-1
`},
	}
	for _, tt := range tests {
		out, _, err := runWith(env, "get", "--tenant", "acme", "order-1", "-o", tt.format)
		if err != nil || out != tt.want {
			t.Errorf("get -o %s = %v,\n%s\nwant\n%s", tt.format, err, out, tt.want)
		}
	}
	if _, _, err := runWith(env, "get", "--tenant", "acme", "order-1", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "want json, yaml or table") {
		t.Errorf("-o xml = %v, want a clear error", err)
	}
}

func TestTableOfList(t *testing.T) {
	body := `{"tenants":[{"id":"acme","state":"active","n":1e3},{"id":"globex","state":"shredded","shredded":"2026-01-02T03:04:05Z"}]}`
	var out bytes.Buffer
	if err := printBody(&out, outputTable, []byte(body)); err != nil {
		t.Fatal(err)
	}
	want := `ID       STATE      N        SHREDDED
acme     active     1e3      <none>
globex   shredded   <none>   2026-01-02T03:04:05Z
`
	if out.String() != want {
		t.Errorf("table =\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := printBody(&out, outputYAML, []byte(body)); err != nil {
		t.Fatal(err)
	}
	wantYAML := `tenants:
- id: acme
  state: active
  "n": 1e3
- id: globex
  state: shredded
  shredded: "2026-01-02T03:04:05Z"
`
	if out.String() != wantYAML {
		t.Errorf("yaml =\n%s\nwant\n%s", out.String(), wantYAML)
	}
}

// TestTenantDataNeverFallsBackToAdmin: without a tenant token, tenant-data
// commands send nothing and ask for --token; --break-glass REASON uses the
// admin token and says so.
func TestTenantDataNeverFallsBackToAdmin(t *testing.T) {
	api := newFakeAPI(t, map[string]string{
		"GET /v1/tenants/acme/streams":          `{"streams":[]}`,
		"GET /v1/tenants/acme/streams/order-1":  stateBody,
		"GET /v1/tenants/acme/streams/o/events": `{"events":[]}`,
		"GET /v1/tenants/acme/quarantine":       `{"quarantine":[]}`,
	})
	env := map[string]string{"TENANTVAULT_ADDR": api.URL, "TENANTVAULT_DATA_DIR": adminDir(t)}
	for _, args := range [][]string{
		{"get", "--tenant", "acme", "order-1"},
		{"streams", "--tenant", "acme"},
		{"events", "--tenant", "acme", "o"},
		{"quarantine", "--tenant", "acme"},
	} {
		_, _, err := runWith(env, args...)
		if !errors.Is(err, errNeedTenantToken) || !strings.Contains(err.Error(), "--token") || !strings.Contains(err.Error(), "TENANTVAULT_TOKEN") {
			t.Errorf("vaultctl %s without a token = %v, want %v", strings.Join(args, " "), err, errNeedTenantToken)
		}
	}
	if r := api.requests(); len(r) != 0 {
		t.Fatalf("requests sent without a tenant token: %q", r)
	}
	_, stderr, err := runWith(env, "get", "--tenant", "acme", "order-1", "--break-glass", "incident 42")
	if err != nil || !strings.Contains(stderr, "break-glass") || !strings.Contains(stderr, "incident 42") {
		t.Fatalf("get --break-glass = %v, stderr %q", err, stderr)
	}
	if r := api.requests(); len(r) != 1 || r[0] != "GET /v1/tenants/acme/streams/order-1 Bearer tva_admin" {
		t.Fatalf("break-glass requests = %q", r)
	}
}

// TestGetNeedsTenant: without --tenant, get says --tenant is required;
// TENANTVAULT_TENANT gives it.
func TestGetNeedsTenant(t *testing.T) {
	api := newFakeAPI(t, map[string]string{"GET /v1/tenants/acme/streams/order-1": stateBody})
	env := map[string]string{"TENANTVAULT_ADDR": api.URL, "TENANTVAULT_TOKEN": "tvt_acme"}
	for _, cmd := range [][]string{{"get", "order-1"}, {"events", "order-1"}, {"streams"}, {"quarantine"}} {
		if _, _, err := runWith(env, cmd...); !errors.Is(err, errNeedTenant) {
			t.Errorf("%s without --tenant = %v, want %v", cmd[0], err, errNeedTenant)
		}
	}
	if r := api.requests(); len(r) != 0 {
		t.Fatalf("requests sent without --tenant: %q", r)
	}
	env["TENANTVAULT_TENANT"] = "acme"
	if out, _, err := runWith(env, "get", "order-1"); err != nil || !strings.Contains(out, "9007199254740993") {
		t.Fatalf("get with TENANTVAULT_TENANT = %v, %q", err, out)
	}
	if _, _, err := runWith(env, "get"); err == nil || !strings.Contains(err.Error(), "STREAM") {
		t.Errorf("get without STREAM = %v, want the usage naming STREAM", err)
	}
}

// TestRecreateNamed: re-creating a shredded id fails naming --recreate,
// and works with it, against a real vault.
func TestRecreateNamed(t *testing.T) {
	c := ctl{t, startVault(t, t.TempDir())}
	c.must("tenant", "create", "acme")
	c.must("tenant", "shred", "acme", "--confirm", "acme")
	_, err := c.run("tenant", "create", "acme")
	if err == nil || !strings.Contains(err.Error(), "vaultctl tenant create acme --recreate") {
		t.Fatalf("create a shredded id = %v, want an error naming --recreate", err)
	}
	if tok := strings.TrimSpace(c.must("tenant", "create", "acme", "--recreate")); !strings.HasPrefix(tok, "tvt_") {
		t.Fatalf("create --recreate printed %q, want a token", tok)
	}
	// A plain conflict (the id exists) does not suggest --recreate.
	if _, err := c.run("tenant", "create", "acme"); err == nil || strings.Contains(err.Error(), "--recreate") {
		t.Fatalf("create an existing id = %v, want a conflict not naming --recreate", err)
	}
}

func TestProgressLine(t *testing.T) {
	for _, tt := range []struct {
		total, n uint64
		what     string
		want     string
	}{
		{0, 0, rewrapWhat(0), "0 sealed values scanned, 0 records rewrapped"},
		{10, 5, rewrapWhat(3), "[===============               ] 5/10 sealed values scanned, 3 records rewrapped"},
		{10, 10, "records verified", "[==============================] 10/10 records verified"},
		{0, 42, "records exported", "42 records exported"},
	} {
		p := &progress{total: tt.total, what: tt.what}
		if got := p.line(tt.n); got != tt.want {
			t.Errorf("line(%d/%d) = %q, want %q", tt.n, tt.total, got, tt.want)
		}
	}
}

// TestExportProgress: export counts records on stderr only when stderr is
// a terminal; the records themselves are copied unchanged.
func TestExportProgress(t *testing.T) {
	records := "{\"index\":0}\n{\"index\":1}\n{\"index\":2}\n"
	for _, tty := range []bool{false, true} {
		var out, errb bytes.Buffer
		p := newProgress(&errb, 0, "records exported")
		if p.on {
			t.Fatal("a buffer taken for a terminal")
		}
		p.on = tty
		if err := exportTo(&out, strings.NewReader(records), p); err != nil {
			t.Fatal(err)
		}
		if out.String() != records {
			t.Errorf("export copied %q, want %q", out.String(), records)
		}
		if got := strings.Contains(errb.String(), "records exported"); got != tty {
			t.Errorf("terminal %v: stderr %q", tty, errb.String())
		}
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file taken for a terminal")
	}
}
