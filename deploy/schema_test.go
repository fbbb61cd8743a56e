package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The schemas are committed (testdata/schemas, see the README there): the
// suite has no network.
const (
	k8sSchemaDir      = "testdata/schemas/kubernetes/v1.31.0-standalone-strict"
	composeSchemaFile = "testdata/schemas/compose/compose-spec.json"
)

// composeFiles are every compose file of deploy/.
var composeFiles = []string{"compose.yaml", "cluster/compose.yaml"}

// k8sSchemas names the schema of each apiVersion and kind the manifests
// may use; a manifest of another kind fails the test (vendor its schema).
var k8sSchemas = map[string]string{
	"apps/v1 StatefulSet":           "statefulset-apps-v1.json",
	"v1 Service":                    "service-v1.json",
	"policy/v1 PodDisruptionBudget": "poddisruptionbudget-policy-v1.json",
}

// readYAMLDocs decodes every document of a YAML file (anchors and merge
// keys resolved) into JSON values, as jsonschema.UnmarshalJSON gives them.
func readYAMLDocs(t *testing.T, name string) []any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := yamlDocs(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return docs
}

func yamlDocs(b []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue // an empty document (a trailing ---)
		}
		j, err := toJSON(v)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
}

// toJSON turns a yaml.v3 value into a JSON one (json.Number numbers, string
// keys), by way of encoding/json.
func toJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("to JSON: %w", err)
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// mustCompile compiles the committed JSON schema file.
func mustCompile(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.ToSlash(abs)
	c := jsonschema.NewCompiler()
	// No loader: a $ref out of the file fails instead of going to the
	// network. Both schemas name a draft the validator has built in.
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", file, err)
	}
	return s
}

// k8sValidator validates Kubernetes objects against the schema of their
// apiVersion and kind.
type k8sValidator struct {
	t       *testing.T
	schemas map[string]*jsonschema.Schema
}

func newK8sValidator(t *testing.T) *k8sValidator {
	return &k8sValidator{t: t, schemas: map[string]*jsonschema.Schema{}}
}

func (v *k8sValidator) validate(obj any) error {
	m, _ := obj.(map[string]any)
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	gvk := apiVersion + " " + kind
	file, ok := k8sSchemas[gvk]
	if !ok {
		return fmt.Errorf("no vendored schema for %q (apiVersion %q, kind %q)", gvk, apiVersion, kind)
	}
	s, ok := v.schemas[file]
	if !ok {
		s = mustCompile(v.t, filepath.Join(k8sSchemaDir, file))
		v.schemas[file] = s
	}
	return s.Validate(obj)
}

// k8sManifests are the manifests under k8s/ (all but kustomization.yaml),
// by file name.
func k8sManifests(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]any{}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		out[filepath.Base(f)] = readYAMLDocs(t, f)
	}
	if len(out) == 0 {
		t.Fatal("no manifests in k8s/")
	}
	return out
}

// TestK8sManifestsValid: every manifest under k8s/ is valid against the
// Kubernetes 1.31 strict schema of its kind (unknown fields rejected).
func TestK8sManifestsValid(t *testing.T) {
	v := newK8sValidator(t)
	for name, docs := range k8sManifests(t) {
		for i, d := range docs {
			if err := v.validate(d); err != nil {
				t.Errorf("k8s/%s document %d: %v", name, i, err)
			}
		}
	}
}

// TestKustomization: kustomization.yaml applies every manifest of k8s/ and
// nothing else.
func TestKustomization(t *testing.T) {
	var k struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
	}
	b, err := os.ReadFile("k8s/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	var want []string
	for name := range k8sManifests(t) {
		want = append(want, name)
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources = %q, want the manifests %q", got, want)
	}
}

// TestComposeFilesValid: every compose file is valid against the
// compose-spec schema.
func TestComposeFilesValid(t *testing.T) {
	s := mustCompile(t, composeSchemaFile)
	for _, f := range composeFiles {
		docs := readYAMLDocs(t, f)
		if len(docs) != 1 {
			t.Errorf("%s has %d YAML documents, want 1", f, len(docs))
			continue
		}
		if err := s.Validate(docs[0]); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSchemasRejectBrokenFiles: the validation above can fail. Each case
// breaks a copy of a real file in memory; the schema must refuse it.
func TestSchemasRejectBrokenFiles(t *testing.T) {
	k8s := newK8sValidator(t)
	compose := mustCompile(t, composeSchemaFile)
	manifest := func(file string) func() any {
		return func() any {
			docs := readYAMLDocs(t, filepath.Join("k8s", file))
			return docs[0]
		}
	}
	composeDoc := func() any { return readYAMLDocs(t, "cluster/compose.yaml")[0] }
	validK8s := func(doc any) error { return k8s.validate(doc) }
	validCompose := func(doc any) error { return compose.Validate(doc) }

	for _, tt := range []struct {
		name     string
		doc      func() any
		validate func(any) error
		path     string // slash-separated, numbers index arrays
		value    any    // set at path; deleteIt removes it instead
		deleteIt bool
	}{
		{"replicas not an integer", manifest("statefulset.yaml"), validK8s, "spec/replicas", "three", false},
		{"unknown field in the pod spec", manifest("statefulset.yaml"), validK8s, "spec/template/spec/restartPolicyy", "Always", false},
		{"unknown field in a probe", manifest("statefulset.yaml"), validK8s, "spec/template/spec/containers/0/readinessProbe/httpGet/paht", "/readyz", false},
		{"container without a name", manifest("statefulset.yaml"), validK8s, "spec/template/spec/containers/0/name", nil, true},
		{"StatefulSet without a selector", manifest("statefulset.yaml"), validK8s, "spec/selector", nil, true},
		{"runAsNonRoot not a boolean", manifest("statefulset.yaml"), validK8s, "spec/template/spec/securityContext/runAsNonRoot", "yes", false},
		{"StatefulSet of another API version", manifest("statefulset.yaml"), validK8s, "apiVersion", "apps/v1beta2", false},
		{"Service port a string", manifest("service.yaml"), validK8s, "spec/ports/0/port", "8200", false},
		{"unknown Service field", manifest("service-headless.yaml"), validK8s, "spec/headless", true, false},
		{"PDB maxUnavailable a list", manifest("poddisruptionbudget.yaml"), validK8s, "spec/maxUnavailable", []any{1}, false},
		{"kind without a schema", manifest("service.yaml"), validK8s, "kind", "Ingress", false},
		{"compose: unknown service key", composeDoc, validCompose, "services/vault-1/environmnt", map[string]any{}, false},
		{"compose: unknown depends_on condition", composeDoc, validCompose, "services/vault-1/depends_on/kafka-1/condition", "service_ready", false},
		{"compose: ports not a list", composeDoc, validCompose, "services/vault-2/ports", "8202:8200", false},
		{"compose: unknown top-level key", composeDoc, validCompose, "service", map[string]any{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc()
			if err := tt.validate(doc); err != nil {
				t.Fatalf("the unbroken file is invalid already: %v", err)
			}
			if err := setPath(doc, tt.path, tt.value, tt.deleteIt); err != nil {
				t.Fatal(err)
			}
			if err := tt.validate(doc); err == nil {
				t.Errorf("with %s = %v (delete %v): valid, want an error", tt.path, tt.value, tt.deleteIt)
			}
		})
	}
}

// setPath sets (or deletes) the value at a slash-separated path of a JSON
// value: its parent must exist.
func setPath(doc any, path string, value any, del bool) error {
	keys := strings.Split(path, "/")
	cur := doc
	for _, k := range keys[:len(keys)-1] {
		next, err := child(cur, k)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		cur = next
	}
	last := keys[len(keys)-1]
	switch c := cur.(type) {
	case map[string]any:
		if del {
			if _, ok := c[last]; !ok {
				return fmt.Errorf("%s: nothing to delete", path)
			}
			delete(c, last)
		} else {
			c[last] = value
		}
	case []any:
		var i int
		if _, err := fmt.Sscan(last, &i); err != nil || i < 0 || i >= len(c) || del {
			return fmt.Errorf("%s: cannot set index %q", path, last)
		}
		c[i] = value
	default:
		return fmt.Errorf("%s: parent is a %T", path, cur)
	}
	return nil
}

func child(v any, k string) (any, error) {
	switch c := v.(type) {
	case map[string]any:
		n, ok := c[k]
		if !ok {
			return nil, fmt.Errorf("no key %q", k)
		}
		return n, nil
	case []any:
		var i int
		if _, err := fmt.Sscan(k, &i); err != nil || i < 0 || i >= len(c) {
			return nil, fmt.Errorf("no index %q", k)
		}
		return c[i], nil
	}
	return nil, fmt.Errorf("%q: not an object or array but %T", k, v)
}
