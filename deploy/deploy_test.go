package deploy

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// compose is what the test reads of compose.yaml.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                                `yaml:"image"`
	User        string                                `yaml:"user"`
	Build       *struct{ Context, Dockerfile string } `yaml:"build"`
	Environment map[string]string                     `yaml:"environment"`
	Volumes     []string                              `yaml:"volumes"`
	Ports       []string                              `yaml:"ports"`
	Healthcheck *struct {
		Test    []string `yaml:"test"`
		Disable bool     `yaml:"disable"`
	} `yaml:"healthcheck"`
}

func mustReadCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return c
}

// namedVolumeAt is the named volume (declared under volumes:) that svc
// mounts at target, or "".
func (c compose) namedVolumeAt(svc service, target string) string {
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || path.Clean(parts[1]) != path.Clean(target) {
			continue
		}
		if _, ok := c.Volumes[parts[0]]; ok {
			return parts[0]
		}
	}
	return ""
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	stage int    // index of the FROM it follows
	cmd   string // upper case: FROM, COPY, RUN, USER, HEALTHCHECK, ...
	args  []string
	line  int
}

func mustReadDockerfile(t *testing.T, name string) []instruction {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	stage, n, start := -1, 0, 0
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		fields := strings.Fields(cur.String())
		cur.Reset()
		in := instruction{cmd: strings.ToUpper(fields[0]), args: fields[1:], line: start}
		if in.cmd == "FROM" {
			stage++
		}
		in.stage = stage
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// flag is the value of --name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// positional drops the --flags of args.
func positional(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			out = append(out, a)
		}
	}
	return out
}

// execForm parses a JSON-array instruction argument (["a", "b"]).
func execForm(t *testing.T, args []string) []string {
	t.Helper()
	s := strings.Join(args, " ")
	if !strings.HasPrefix(s, "[") {
		return nil
	}
	var v []string
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("exec form %s: %v", s, err)
	}
	return v
}

const nonrootUID = "65532" // distroless's nonroot

// TestImageDataDirWritable: the image runs as nonroot and has /data owned
// by it, so the fresh named volume compose mounts there is writable on the
// first start.
func TestImageDataDirWritable(t *testing.T) {
	c := mustReadCompose(t)
	vaultd, ok := c.Services["vaultd"]
	if !ok {
		t.Fatal("compose.yaml has no vaultd service")
	}
	if vaultd.Build == nil || vaultd.Build.Dockerfile != "deploy/Dockerfile" || vaultd.Build.Context != ".." {
		t.Fatalf("vaultd is not built from deploy/Dockerfile with the repository as context: %+v", vaultd.Build)
	}
	if vaultd.User != "" && vaultd.User != nonrootUID && !strings.HasPrefix(vaultd.User, nonrootUID+":") {
		t.Errorf("vaultd runs as user %q, want the image's nonroot", vaultd.User)
	}
	dataDir := vaultd.Environment["TENANTVAULT_DATA_DIR"]
	if dataDir == "" {
		t.Fatal("vaultd has no TENANTVAULT_DATA_DIR")
	}
	if c.namedVolumeAt(vaultd, dataDir) == "" {
		t.Errorf("vaultd mounts no named volume at its data dir %s: %v", dataDir, vaultd.Volumes)
	}

	ins := mustReadDockerfile(t, "Dockerfile")
	last := ins[len(ins)-1].stage
	var user string
	var owned bool
	made := map[string]bool{} // directories made by RUN mkdir in the build stages
	for _, in := range ins {
		switch {
		case in.cmd == "RUN" && in.stage < last:
			words := strings.Fields(strings.NewReplacer("&&", " ", ";", " ").Replace(strings.Join(in.args, " ")))
			for i, w := range words {
				if w == "mkdir" {
					for _, d := range words[i+1:] {
						if strings.HasPrefix(d, "-") {
							continue
						}
						if !strings.HasPrefix(d, "/") {
							break
						}
						made[path.Clean(d)] = true
					}
				}
			}
		case in.cmd == "USER" && in.stage == last:
			user = in.args[0]
		case in.cmd == "COPY" && in.stage == last:
			p := positional(in.args)
			if len(p) != 2 || path.Clean(p[1]) != path.Clean(dataDir) {
				continue
			}
			chown, _ := flagValue(in.args, "chown")
			from, _ := flagValue(in.args, "from")
			if owner, _, _ := strings.Cut(chown, ":"); owner != nonrootUID && owner != "nonroot" {
				t.Errorf("Dockerfile:%d copies %s with --chown=%q, want %s (nonroot)", in.line, dataDir, chown, nonrootUID)
				continue
			}
			if from == "" || !made[path.Clean(p[0])] {
				t.Errorf("Dockerfile:%d copies %s from %q, not an empty directory a build stage made", in.line, dataDir, p[0])
				continue
			}
			if user != "" {
				t.Errorf("Dockerfile:%d: the data dir is made after USER %s", in.line, user)
			}
			owned = true
		}
	}
	if user != "nonroot" && user != nonrootUID && !strings.HasPrefix(user, nonrootUID+":") {
		t.Errorf("the image's USER is %q, want nonroot", user)
	}
	if !owned {
		t.Errorf("the image makes no %s owned by %s: a new named volume there is root-owned and vaultd cannot write admin.token", dataDir, nonrootUID)
	}
	for _, in := range ins {
		if in.cmd == "ENV" && in.stage == last && strings.HasPrefix(strings.Join(in.args, " "), "TENANTVAULT_DATA_DIR=") &&
			strings.Join(in.args, " ") != "TENANTVAULT_DATA_DIR="+dataDir {
			t.Errorf("Dockerfile:%d sets %s, compose.yaml's data dir is %s", in.line, strings.Join(in.args, " "), dataDir)
		}
	}
}

// TestKafkaDataInVolume: the broker's log dirs (records and the KRaft
// metadata log: topics, SCRAM users, ACLs) are in a named volume.
func TestKafkaDataInVolume(t *testing.T) {
	c := mustReadCompose(t)
	kafka, ok := c.Services["kafka"]
	if !ok {
		t.Fatal("compose.yaml has no kafka service")
	}
	dirs := kafka.Environment["KAFKA_LOG_DIRS"]
	if dirs == "" {
		t.Fatal("kafka sets no KAFKA_LOG_DIRS: where its data goes depends on the image's default")
	}
	for _, d := range strings.Split(dirs, ",") {
		if c.namedVolumeAt(kafka, d) == "" {
			t.Errorf("kafka's log dir %s is in no named volume (%v): a new container loses topics, SCRAM users and ACLs", d, kafka.Volumes)
		}
	}
}

// TestVaultdHealthcheck: vaultd's healthcheck runs `vaultd healthcheck`
// in exec form (distroless has no shell or curl), with the binary the
// image installs, both in compose.yaml and in the image.
func TestVaultdHealthcheck(t *testing.T) {
	ins := mustReadDockerfile(t, "Dockerfile")
	last := ins[len(ins)-1].stage
	var bin string
	for _, in := range ins {
		if in.cmd == "ENTRYPOINT" && in.stage == last {
			if e := execForm(t, in.args); len(e) > 0 {
				bin = e[0]
			}
		}
	}
	if path.Base(bin) != "vaultd" {
		t.Fatalf("the image's ENTRYPOINT is %q, want the vaultd binary", bin)
	}
	check := func(where string, test []string) {
		t.Helper()
		if len(test) < 3 || test[0] != "CMD" || test[1] != bin || test[2] != "healthcheck" {
			t.Errorf("%s healthcheck is %q, want [CMD %s healthcheck ...] (exec form: the image has no shell)", where, test, bin)
		}
	}

	var found bool
	for _, in := range ins {
		if in.cmd != "HEALTHCHECK" || in.stage != last {
			continue
		}
		found = true
		i := slices.IndexFunc(in.args, func(a string) bool { return !strings.HasPrefix(a, "--") })
		if i < 0 {
			t.Fatalf("Dockerfile:%d: HEALTHCHECK without a command", in.line)
		}
		check("the image's", append([]string{in.args[i]}, execForm(t, in.args[i+1:])...))
	}
	if !found {
		t.Error("the image has no HEALTHCHECK")
	}

	c := mustReadCompose(t)
	vaultd := c.Services["vaultd"]
	if vaultd.Healthcheck == nil || vaultd.Healthcheck.Disable {
		t.Fatal("compose.yaml's vaultd has no healthcheck")
	}
	check("compose.yaml's vaultd", vaultd.Healthcheck.Test)
	// The healthcheck asks TENANTVAULT_HTTP_ADDR: it must have a port, the
	// one compose publishes.
	addr := vaultd.Environment["TENANTVAULT_HTTP_ADDR"]
	_, port, ok := strings.Cut(addr, ":")
	if !ok || port == "" || port == "0" {
		t.Fatalf("vaultd's TENANTVAULT_HTTP_ADDR %q has no fixed port for the healthcheck to ask", addr)
	}
	if !slices.ContainsFunc(vaultd.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+port) }) {
		t.Errorf("vaultd publishes %v, none to the port %s it listens on", vaultd.Ports, port)
	}
}

// TestDockerignore: the build context (the repository root) leaves out
// the data directory, keys, tokens, passwords and .git, and keeps what
// the build needs.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatalf("no .dockerignore at the build context's root: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Errorf(".dockerignore re-includes %q: the test's matcher does not model exceptions", l)
			}
			patterns = append(patterns, l)
		}
	}
	ignored := func(p string) bool {
		return slices.ContainsFunc(patterns, func(pat string) bool { return dockerignoreMatch(pat, p) })
	}
	for _, p := range []string{
		".git/config", ".git",
		"vault-data/master.key", "vault-data/admin.token", "vault-data/keys/acme.keyset",
		"deploy/vault-data/audit/LOCK", "cmd/vaultd/vault-data/master.key",
		"master.key", "admin.token", "tenantvault.password", "deploy/tenantvault.password",
		"acme.token", "acme.kafka", "tls/server.key", ".env",
		"vaultd", "vaultctl",
	} {
		if !ignored(p) {
			t.Errorf(".dockerignore does not leave out %s", p)
		}
	}
	// Everything the build reads stays: go.mod, go.sum, every non-test Go
	// file and the files they embed.
	root := ".."
	needed := []string{"go.mod", "go.sum", "vault/httpapi/openapi.json"}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && (rel == ".git" || strings.HasSuffix(rel, "vault-data") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			needed = append(needed, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(needed) < 50 {
		t.Fatalf("found %d files the build needs, want more: the walk is wrong", len(needed))
	}
	for _, p := range needed {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}

// dockerignoreMatch reports whether pattern leaves out p (slash-separated,
// relative to the context): Docker's rules without exceptions — a pattern
// is matched (filepath.Match, plus ** for any number of directories)
// against p and each of its parent directories; a leading / is dropped.
func dockerignoreMatch(pattern, p string) bool {
	pattern = strings.TrimPrefix(path.Clean(pattern), "/")
	for q := p; q != "." && q != "/" && q != ""; q = path.Dir(q) {
		if globMatch(strings.Split(pattern, "/"), strings.Split(q, "/")) {
			return true
		}
	}
	return false
}

func globMatch(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if globMatch(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 {
		return false
	}
	ok, err := path.Match(pat[0], segs[0])
	return err == nil && ok && globMatch(pat[1:], segs[1:])
}

func TestDockerignoreMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{".git", ".git/config", true},
		{".git", "x/.git", false},
		{"**/vault-data", "a/b/vault-data/master.key", true},
		{"**/vault-data", "vault-data", true},
		{"**/*.key", "tls/server.key", true},
		{"**/*.key", "keys/keys.go", false},
		{"/vaultd", "vaultd", true},
		{"/vaultd", "cmd/vaultd/main.go", false},
		{"*.test", "a/b.test", false},
	} {
		if got := dockerignoreMatch(tt.pattern, tt.path); got != tt.want {
			t.Errorf("dockerignoreMatch(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}
