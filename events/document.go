package events

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"
)

// Documents are what the vault indexes for retrieval: events whose type
// ends in DocumentTypeSuffix ("kb.document", "faq.document"), one document
// per stream (the subject is the document id), whose data is
//
//	{"text": "...", "embedding": [0.12, -0.5, ...], "attributes": {"lang": "en", "year": 2024}}
//
// A later document event of the stream replaces the document; a delete of
// the stream (a type ending in ".deleted", or data null) removes it.
const DocumentTypeSuffix = ".document"

// Limits of a document.
const (
	// MaxEmbeddingDim is the largest dimension of an embedding.
	MaxEmbeddingDim = 4096
	// MaxDocumentText is the largest text of a document, in bytes.
	MaxDocumentText = 64 << 10
	// MaxAttributes bounds the attributes of a document (and the terms of
	// a search filter).
	MaxAttributes = 32
	// MaxAttributeLen bounds an attribute's name and its value, in bytes.
	MaxAttributeLen = 256
	// MaxSearchK is the largest k of a search.
	MaxSearchK = 100
	// DefaultSearchK is the k of a search that gives none.
	DefaultSearchK = 10
)

// IsDocumentType reports whether an event of type typ is a document.
func IsDocumentType(typ string) bool { return strings.HasSuffix(typ, DocumentTypeSuffix) }

// DocumentData is the data of a document event.
type DocumentData struct {
	// Text is the document's text (or chunk): what a search answers.
	Text string
	// Embedding is the document's vector; nil when the producer left it
	// to the vault's embedder. Its dimension is fixed per tenant by the
	// first document.
	Embedding []float32
	// Attributes are the document's attributes a search may filter on,
	// each value as written (a JSON string's text, a number or a boolean
	// as its JSON).
	Attributes map[string]string
}

// ParseDocument parses the data of a document event. The error is an
// *Error (EINVALID) with reason ReasonDocumentInvalid or
// ReasonEmbeddingInvalid; its message never quotes the input.
func ParseDocument(data []byte) (DocumentData, error) {
	var raw struct {
		Text       *string                    `json:"text"`
		Embedding  json.RawMessage            `json:"embedding"`
		Attributes map[string]json.RawMessage `json:"attributes"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil || dec.More() {
		return DocumentData{}, Reasonf(EINVALID, ReasonDocumentInvalid, "document data must be a JSON object of text, embedding and attributes")
	}
	var d DocumentData
	switch {
	case raw.Text == nil || *raw.Text == "":
		return DocumentData{}, Reasonf(EINVALID, ReasonDocumentInvalid, "document data.text is missing or empty")
	case len(*raw.Text) > MaxDocumentText:
		return DocumentData{}, Reasonf(EINVALID, ReasonDocumentInvalid, "document data.text is over %d bytes", MaxDocumentText)
	}
	d.Text = *raw.Text
	if len(raw.Embedding) > 0 && !bytes.Equal(raw.Embedding, []byte("null")) {
		v, err := ParseVector(raw.Embedding)
		if err != nil {
			return DocumentData{}, err
		}
		d.Embedding = v
	}
	attrs, err := parseAttributes(raw.Attributes, "document data.attributes")
	if err != nil {
		return DocumentData{}, err
	}
	d.Attributes = attrs
	return d, nil
}

// ParseVector parses a JSON array of numbers as an embedding: 1 to
// MaxEmbeddingDim finite float32 values, not all zero. The error is an
// *Error (EINVALID, ReasonEmbeddingInvalid).
func ParseVector(raw []byte) ([]float32, error) {
	var v []float32
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, Reasonf(EINVALID, ReasonEmbeddingInvalid, "embedding must be an array of float32 numbers")
	}
	return v, CheckVector(v)
}

// CheckVector checks an embedding as ParseVector does.
func CheckVector(v []float32) error {
	if len(v) == 0 || len(v) > MaxEmbeddingDim {
		return Reasonf(EINVALID, ReasonEmbeddingInvalid, "embedding must have 1 to %d values, not %d", MaxEmbeddingDim, len(v))
	}
	var norm float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return Reasonf(EINVALID, ReasonEmbeddingInvalid, "embedding values must be finite")
		}
		norm += float64(x) * float64(x)
	}
	if norm == 0 || math.IsInf(norm, 0) {
		return Reasonf(EINVALID, ReasonEmbeddingInvalid, "embedding must not be the zero vector")
	}
	return nil
}

// ParseFilter parses a search filter: a JSON object of attribute names
// to the values a document must have (strings, numbers or booleans,
// compared as written). null or absent is no filter.
func ParseFilter(raw map[string]json.RawMessage) (map[string]string, error) {
	f, err := parseAttributes(raw, "filter")
	if err != nil {
		return nil, Reasonf(EINVALID, ReasonSearchInvalid, "%s", ErrorMessage(err))
	}
	return f, nil
}

func parseAttributes(raw map[string]json.RawMessage, what string) (map[string]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if len(raw) > MaxAttributes {
		return nil, Reasonf(EINVALID, ReasonDocumentInvalid, "%s has more than %d members", what, MaxAttributes)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		if k == "" || len(k) > MaxAttributeLen || !utf8.ValidString(k) {
			return nil, Reasonf(EINVALID, ReasonDocumentInvalid, "%s has a name that is empty or over %d bytes", what, MaxAttributeLen)
		}
		s, ok := scalar(v)
		if !ok || len(s) > MaxAttributeLen {
			return nil, Reasonf(EINVALID, ReasonDocumentInvalid, "%s values must be strings, numbers or booleans of at most %d bytes", what, MaxAttributeLen)
		}
		out[k] = s
	}
	return out, nil
}

// scalar returns the text of a JSON string, or a number or boolean as
// written.
func scalar(v json.RawMessage) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "", false
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		var b bool
		if json.Unmarshal(v, &b) != nil {
			return "", false
		}
		return string(v), true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if json.Unmarshal(v, &n) != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}
