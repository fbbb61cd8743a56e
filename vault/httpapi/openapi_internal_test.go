package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tenantvault/tenantvault/internal/vaulttest"
)

// The OpenAPI document as TestOpenAPI reads it.
type oaDoc struct {
	OpenAPI    string                                  `json:"openapi"`
	Paths      map[string]map[string]oaOp              `json:"paths"`
	Components struct{ Parameters map[string]oaParam } `json:"components"`
}

type oaOp struct {
	OperationID string      `json:"operationId"`
	Parameters  []oaParam   `json:"parameters"`
	Security    *[]struct{} `json:"security"`
}

type oaParam struct {
	Ref      string          `json:"$ref"`
	Name     string          `json:"name"`
	In       string          `json:"in"`
	Required bool            `json:"required"`
	Example  json.RawMessage `json:"example"`
}

func mustReadOpenAPI(tb testing.TB) oaDoc {
	tb.Helper()
	var d oaDoc
	dec := json.NewDecoder(bytes.NewReader(openAPI))
	if err := dec.Decode(&d); err != nil {
		tb.Fatalf("openapi.json: %v", err)
	}
	return d
}

// param resolves p's $ref, if any.
func (d oaDoc) param(tb testing.TB, p oaParam) oaParam {
	tb.Helper()
	if p.Ref == "" {
		return p
	}
	name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/")
	q, found := d.Components.Parameters[name]
	if !ok || !found {
		tb.Fatalf("parameter $ref %q: no such component", p.Ref)
	}
	return q
}

var methods = map[string]string{"get": http.MethodGet, "post": http.MethodPost, "put": http.MethodPut,
	"delete": http.MethodDelete, "patch": http.MethodPatch, "head": http.MethodHead, "options": http.MethodOptions}

var wildcard = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIRoutes checks the document against the router: every route
// of the API is documented, and every documented operation is routed by
// the handler to the pattern of the same method and path template.
func TestOpenAPIRoutes(t *testing.T) {
	d := mustReadOpenAPI(t)
	if !strings.HasPrefix(d.OpenAPI, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", d.OpenAPI)
	}
	h := New(nil, Options{}) // routing only: no handler runs

	documented := map[string]bool{}
	ids := map[string]string{}
	for path, ops := range d.Paths {
		for m, op := range ops {
			method, ok := methods[m]
			if !ok {
				t.Errorf("paths[%q] has %q, which is not an operation", path, m)
				continue
			}
			pattern := method + " " + path
			documented[pattern] = true
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", pattern)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %q of %s is also %s's", op.OperationID, pattern, other)
			}
			ids[op.OperationID] = pattern

			// Fill the path's wildcards with their parameters' examples.
			pathParams := map[string]string{}
			for _, p := range op.Parameters {
				p = d.param(t, p)
				if p.In != "path" {
					continue
				}
				var v any
				if err := json.Unmarshal(p.Example, &v); err != nil {
					t.Errorf("%s: path parameter %s has no example: %v", pattern, p.Name, err)
					continue
				}
				if !p.Required {
					t.Errorf("%s: path parameter %s is not required", pattern, p.Name)
				}
				pathParams[p.Name] = strings.Trim(string(p.Example), `"`)
			}
			var missing []string
			concrete := wildcard.ReplaceAllStringFunc(path, func(w string) string {
				name := w[1 : len(w)-1]
				v, ok := pathParams[name]
				if !ok {
					missing = append(missing, name)
				}
				delete(pathParams, name)
				return v
			})
			if len(missing) > 0 {
				t.Errorf("%s: wildcards %v have no path parameter", pattern, missing)
				continue
			}
			for name := range pathParams {
				t.Errorf("%s: path parameter %s is not in the path", pattern, name)
			}
			r := httptest.NewRequest(method, concrete, nil)
			if _, got := h.mux.Handler(r); got != pattern {
				t.Errorf("%s %s is routed to %q, want the documented %q", method, concrete, got, pattern)
			}
		}
	}

	routed := append(Routes(), publicRoutes()...)
	for _, p := range routed {
		if !documented[p] {
			t.Errorf("route %s is not in openapi.json", p)
		}
		method, path, _ := strings.Cut(p, " ")
		r := httptest.NewRequest(method, wildcard.ReplaceAllString(path, "x1"), nil)
		if _, got := h.mux.Handler(r); got != p {
			t.Errorf("route %s: the handler routes it to %q", p, got)
		}
	}
	for p := range documented {
		if !slices.Contains(routed, p) {
			t.Errorf("openapi.json documents %s, which is not a route of the API", p)
		}
	}
	if len(documented) != len(routed) {
		t.Errorf("openapi.json documents %d operations, the API has %d routes", len(documented), len(routed))
	}

	// The check above can fail: an undocumented path is the fallback's.
	if _, got := h.mux.Handler(httptest.NewRequest(http.MethodGet, "/v1/nope", nil)); got != "/" {
		t.Errorf("GET /v1/nope is routed to %q, want the fallback /", got)
	}
}

// TestOpenAPIDocument validates the document against the OpenAPI 3.1
// schema (testdata/oas-3.1-schema-2022-10-07.json, the OpenAPI
// Initiative's, Apache-2.0), compiles every schema in it as JSON Schema
// 2020-12, and validates every example against the schema beside it.
func TestOpenAPIDocument(t *testing.T) {
	const docURL = "https://tenantvault.invalid/openapi.json"
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPI))
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	metaBytes, err := os.ReadFile("testdata/oas-3.1-schema-2022-10-07.json")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := jsonschema.UnmarshalJSON(bytes.NewReader(metaBytes))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	const metaURL = "https://spec.openapis.org/oas/3.1/schema/2022-10-07"
	if err := c.AddResource(metaURL, meta); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(docURL, doc); err != nil {
		t.Fatal(err)
	}
	oas, err := c.Compile(metaURL)
	if err != nil {
		t.Fatalf("compile the OpenAPI 3.1 schema: %v", err)
	}
	if err := oas.Validate(doc); err != nil {
		t.Errorf("openapi.json is not an OpenAPI 3.1 document: %v", err)
	}

	// Every example, with the pointer of the schema it must satisfy.
	type example struct {
		where, schema string
		value         any
	}
	var examples []example
	var walk func(ptr string, v any)
	walk = func(ptr string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["schema"]; ok {
				if ex, ok := v["example"]; ok {
					examples = append(examples, example{ptr + "/example", ptr + "/schema", ex})
				}
				if exs, ok := v["examples"].(map[string]any); ok {
					for name, ex := range exs {
						if val, ok := ex.(map[string]any)["value"]; ok {
							examples = append(examples, example{ptr + "/examples/" + escape(name), ptr + "/schema", val})
						}
					}
				}
			}
			for k, e := range v {
				walk(ptr+"/"+escape(k), e)
			}
		case []any:
			for i, e := range v {
				walk(ptr+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("", doc)
	schemas := doc.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any)
	for name, s := range schemas {
		ptr := "/components/schemas/" + escape(name)
		if _, err := c.Compile(docURL + "#" + ptr); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
		exs, _ := s.(map[string]any)["examples"].([]any)
		for i, ex := range exs {
			examples = append(examples, example{ptr + "/examples/" + strconv.Itoa(i), ptr, ex})
		}
	}
	sort.Slice(examples, func(i, j int) bool { return examples[i].where < examples[j].where })

	for _, ex := range examples {
		s, err := c.Compile(docURL + "#" + ex.schema)
		if err != nil {
			t.Errorf("compile %s: %v", ex.schema, err)
			continue
		}
		if err := s.Validate(ex.value); err != nil {
			t.Errorf("example %s does not validate against %s: %v", ex.where, ex.schema, err)
		}
	}
	// Enough examples were found for the check to mean something: one
	// per JSON request and response at least.
	if len(examples) < 40 {
		t.Errorf("found %d examples, want at least 40: the walk misses them", len(examples))
	}

	// The validation can fail: examples that break their schemas.
	for _, tt := range []struct{ schema, value string }{
		{"/components/schemas/CreateTenantRequest", `{"id": "Not A Tenant"}`},
		{"/components/schemas/CreateTenantRequest", `{"id": "acme", "extra": 1}`},
		{"/components/schemas/Tenant", `{"id": "acme", "created": "yesterday", "topic": "t", "state": "active"}`},
		{"/components/schemas/QuarantineEntry", `{"seq": 1, "topic": "t", "partition": 0, "offset": 0, "code": "c", "reason": "r", "raw": "%%%", "at": "2026-01-01T00:00:00Z"}`},
		{"/components/schemas/Error", `{"error": {"code": "teapot", "message": "m"}}`},
	} {
		s, err := c.Compile(docURL + "#" + tt.schema)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(tt.value))
		if err != nil {
			t.Fatal(err)
		}
		if s.Validate(v) == nil {
			t.Errorf("%s validates against %s, want an error", tt.value, tt.schema)
		}
	}
}

// openapiMetrics is a Metrics serving nothing, so that /metrics is served
// (and guarded) as in a vaultd.
type openapiMetrics struct{}

func (openapiMetrics) CounterFunc(string, string, func() float64) {}
func (openapiMetrics) ObserveRequest(string, int, time.Duration)  {}
func (openapiMetrics) Handler() http.Handler                      { return http.NotFoundHandler() }

// escape escapes a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// TestOpenAPIServed checks GET /openapi.json on a real vault: served
// without a credential, the embedded document, JSON; and that the
// document's security says the truth: an operation that needs the bearer
// token answers 401 without one, a public one does not.
func TestOpenAPIServed(t *testing.T) {
	hs := vaulttest.MustOpen(t)
	srv := httptest.NewServer(New(hs.Vault, Options{Metrics: openapiMetrics{}}))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /openapi.json = %d %q, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body, OpenAPI()) || !json.Valid(body) {
		t.Errorf("GET /openapi.json is not the embedded document (%d bytes, want %d)", len(body), len(openAPI))
	}

	d := mustReadOpenAPI(t)
	for path, ops := range d.Paths {
		for m, op := range ops {
			public := op.Security != nil && len(*op.Security) == 0
			concrete := path
			for _, p := range op.Parameters {
				if p = d.param(t, p); p.In == "path" {
					concrete = strings.ReplaceAll(concrete, "{"+p.Name+"}", strings.Trim(string(p.Example), `"`))
				}
			}
			req, err := http.NewRequest(methods[m], srv.URL+concrete, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusUnauthorized; got == public {
				t.Errorf("%s %s without a token = %d; the document says public=%v", methods[m], concrete, resp.StatusCode, public)
			}
		}
	}
}
