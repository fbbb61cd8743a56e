package events_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

func TestParseDocument(t *testing.T) {
	const m = "MARKER-doc"
	tests := []struct {
		name  string
		data  string
		want  string // reason code, "" for valid
		dim   int
		attrs map[string]string
	}{
		{"text and embedding", `{"text":"hello","embedding":[0.5,-1,2e-3]}`, "", 3, nil},
		{"no embedding", `{"text":"hello"}`, "", 0, nil},
		{"null embedding", `{"text":"hello","embedding":null}`, "", 0, nil},
		{"attributes", `{"text":"x","embedding":[1],"attributes":{"lang":"en","year":2024,"draft":false}}`, "", 1, map[string]string{"lang": "en", "year": "2024", "draft": "false"}},
		{"not an object", `["` + m + `"]`, events.ReasonDocumentInvalid, 0, nil},
		{"unknown member", `{"text":"x","` + m + `":1}`, events.ReasonDocumentInvalid, 0, nil},
		{"no text", `{"embedding":[1]}`, events.ReasonDocumentInvalid, 0, nil},
		{"empty text", `{"text":"","embedding":[1]}`, events.ReasonDocumentInvalid, 0, nil},
		{"text too long", `{"text":"` + strings.Repeat("a", events.MaxDocumentText+1) + `"}`, events.ReasonDocumentInvalid, 0, nil},
		{"embedding of strings", `{"text":"x","embedding":["` + m + `"]}`, events.ReasonEmbeddingInvalid, 0, nil},
		{"embedding empty", `{"text":"x","embedding":[]}`, events.ReasonEmbeddingInvalid, 0, nil},
		{"embedding zero", `{"text":"x","embedding":[0,0]}`, events.ReasonEmbeddingInvalid, 0, nil},
		{"embedding overflows float32", `{"text":"x","embedding":[1e39]}`, events.ReasonEmbeddingInvalid, 0, nil},
		{"embedding too long", `{"text":"x","embedding":[` + strings.Repeat("1,", events.MaxEmbeddingDim) + `1]}`, events.ReasonEmbeddingInvalid, 0, nil},
		{"attribute object", `{"text":"x","attributes":{"a":{"b":"` + m + `"}}}`, events.ReasonDocumentInvalid, 0, nil},
		{"attribute null", `{"text":"x","attributes":{"a":null}}`, events.ReasonDocumentInvalid, 0, nil},
		{"trailing data", `{"text":"x"} {"text":"y"}`, events.ReasonDocumentInvalid, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := events.ParseDocument([]byte(tt.data))
			if got := events.ErrorReason(err); got != tt.want {
				t.Fatalf("ParseDocument(%.60q) = %v, want reason %q", tt.data, err, tt.want)
			}
			if err != nil {
				if strings.Contains(err.Error(), m) {
					t.Errorf("ParseDocument error %q quotes the input", err)
				}
				return
			}
			if len(d.Embedding) != tt.dim {
				t.Errorf("ParseDocument(%.60q) embedding of %d values, want %d", tt.data, len(d.Embedding), tt.dim)
			}
			for k, v := range tt.attrs {
				if d.Attributes[k] != v {
					t.Errorf("attribute %s = %q, want %q", k, d.Attributes[k], v)
				}
			}
		})
	}
}

func TestIsDocumentType(t *testing.T) {
	for typ, want := range map[string]bool{"kb.document": true, "document": false, "kb.document.deleted": false, "kb.documents": false} {
		if got := events.IsDocumentType(typ); got != want {
			t.Errorf("IsDocumentType(%q) = %v, want %v", typ, got, want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	f, err := events.ParseFilter(map[string]json.RawMessage{"lang": json.RawMessage(`"en"`), "n": json.RawMessage(`3`)})
	if err != nil || f["lang"] != "en" || f["n"] != "3" {
		t.Fatalf("ParseFilter = %v, %v", f, err)
	}
	if _, err := events.ParseFilter(map[string]json.RawMessage{"x": json.RawMessage(`[1]`)}); events.ErrorReason(err) != events.ReasonSearchInvalid {
		t.Fatalf("ParseFilter(array value) = %v, want reason %s", err, events.ReasonSearchInvalid)
	}
}

// FuzzParseDocument: any input either parses into a document that obeys
// the limits, or is refused with one of the document reason codes.
func FuzzParseDocument(f *testing.F) {
	for _, s := range []string{`{"text":"a","embedding":[1,2]}`, `{"text":"a","attributes":{"k":"v","n":1.5e3,"b":true}}`, `{"text":"a","embedding":[0]}`, `[]`, `{"text":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := events.ParseDocument(data)
		if err != nil {
			if r := events.ErrorReason(err); r != events.ReasonDocumentInvalid && r != events.ReasonEmbeddingInvalid {
				t.Fatalf("ParseDocument(%q) reason %q", data, r)
			}
			return
		}
		if d.Text == "" || len(d.Text) > events.MaxDocumentText || len(d.Embedding) > events.MaxEmbeddingDim || len(d.Attributes) > events.MaxAttributes {
			t.Fatalf("ParseDocument(%q) = %+v breaks a limit", data, d)
		}
		if d.Embedding != nil {
			if err := events.CheckVector(d.Embedding); err != nil {
				t.Fatalf("ParseDocument(%q) accepted an embedding CheckVector refuses: %v", data, err)
			}
		}
	})
}
