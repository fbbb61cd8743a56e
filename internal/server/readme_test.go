package server

import (
	"flag"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeFlag is one flag as README.md's vaultd table documents it.
type readmeFlag struct {
	env, def string // the environment and default cells, as written
}

// readmeFlags parses the table of the "## vaultd" section of the README:
// | flag(s) | environment | default | meaning |, flags and variables in
// backquotes, several in one row separated by commas ("`..._KEY`" is the
// previous variable with its last word replaced). Rows without a flag (—)
// are left out.
func readmeFlags(t *testing.T, readme string) map[string]readmeFlag {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## vaultd\n")
	if !ok {
		t.Fatal("README.md has no \"## vaultd\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	quoted := regexp.MustCompile("`([^`]*)`")
	out := map[string]readmeFlag{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.TrimSpace(line), "|")
		if len(cells) != 6 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`--") {
			continue
		}
		names := quoted.FindAllStringSubmatch(cells[1], -1)
		envs := quoted.FindAllStringSubmatch(cells[2], -1)
		if len(names) != len(envs) {
			t.Errorf("README row %q: %d flags but %d environment variables", line, len(names), len(envs))
			continue
		}
		for i, n := range names {
			env := envs[i][1]
			if rest, ok := strings.CutPrefix(env, "..."); ok && i > 0 {
				prev := out[strings.TrimPrefix(names[i-1][1], "--")].env
				env = prev[:strings.LastIndex(prev, "_")] + rest
			}
			name := strings.TrimPrefix(n[1], "--")
			if _, dup := out[name]; dup {
				t.Errorf("README documents --%s twice", name)
			}
			out[name] = readmeFlag{env: env, def: strings.TrimSpace(cells[3])}
		}
	}
	return out
}

// TestREADMEFlags checks README.md's vaultd table against the flags
// ParseFlags defines: the same flags, each with its environment variable
// and its default. A default the table gives as "empty" must be the flag's
// empty default; one the flag cannot show (derived from another setting,
// or the embedded broker's) must be what the flag's help says: each
// backquoted value of the cell, but flags it is conditioned on, is a
// "default X" of the help.
func TestREADMEFlags(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := readmeFlags(t, string(b))
	fs, _, errs := (&Config{}).flagSet("vaultd", func(string) string { return "" })
	if len(*errs) > 0 {
		t.Fatalf("flagSet with an empty environment: %v", *errs)
	}
	quoted := regexp.MustCompile("`([^`]*)`")
	fs.VisitAll(func(f *flag.Flag) {
		doc, ok := documented[f.Name]
		if !ok {
			t.Errorf("README.md's vaultd table does not document --%s (default %q)", f.Name, f.DefValue)
			return
		}
		delete(documented, f.Name)
		if doc.env != EnvName(f.Name) {
			t.Errorf("README: --%s reads %s, want %s", f.Name, doc.env, EnvName(f.Name))
		}
		switch {
		case f.DefValue != "":
			if !sameDefault(strings.Trim(doc.def, "`"), f.DefValue) {
				t.Errorf("README: --%s defaults to %s, the flag to %q", f.Name, doc.def, f.DefValue)
			}
		case doc.def == "empty":
		default:
			said := map[string]bool{}
			for _, m := range helpDefault.FindAllStringSubmatch(f.Usage, -1) {
				said[m[1]] = true
			}
			n := 0
			for _, v := range quoted.FindAllStringSubmatch(doc.def, -1) {
				if strings.HasPrefix(v[1], "--") {
					continue // a condition ("`--brokers`: empty"), not a value
				}
				n++
				if !said[v[1]] {
					t.Errorf("README: --%s defaults to %s; its help %q says default %q", f.Name, doc.def, f.Usage, slices.Sorted(maps.Keys(said)))
				}
			}
			if n == 0 {
				t.Errorf("README: --%s defaults to %s, the flag to empty", f.Name, doc.def)
			}
		}
	})
	for name := range documented {
		t.Errorf("README.md documents --%s, which vaultd does not have", name)
	}
}

// helpDefault finds the defaults a flag's help states ("default X").
var helpDefault = regexp.MustCompile(`default ([^ ,;)]+)`)

// sameDefault reports whether the README's default doc is the flag's def:
// the same text, or the same duration (5m is 5m0s).
func sameDefault(doc, def string) bool {
	if doc == def {
		return true
	}
	d1, err1 := time.ParseDuration(doc)
	d2, err2 := time.ParseDuration(def)
	return err1 == nil && err2 == nil && d1 == d2
}
