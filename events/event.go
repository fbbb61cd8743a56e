package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SpecVersion is the only CloudEvents version accepted.
const SpecVersion = "1.0"

// DefaultMaxEventBytes is the default size limit of one encoded event.
const DefaultMaxEventBytes = 1 << 20

// ContentTypeCloudEventsJSON marks a structured-mode CloudEvent.
const ContentTypeCloudEventsJSON = "application/cloudevents+json"

// Event is a CloudEvents 1.0 event as tenantvault understands it. Subject is
// the stream id, ID the idempotency key, Tenant the optional "tenant"
// extension.
type Event struct {
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	SpecVersion     string          `json:"specversion"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time,omitzero"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"`
	Tenant          string          `json:"tenant,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	DataBase64      []byte          `json:"data_base64,omitempty"`
}

// Limits on attribute sizes; a stream id or event id is a key, not a payload.
const (
	MaxIDLen      = 256
	MaxSubjectLen = 1024
	MaxTypeLen    = 256
	MaxSourceLen  = 1024
)

// IsDelete reports whether applying e removes its stream's state: a type
// ending in ".deleted" or a JSON null data.
func (e *Event) IsDelete() bool {
	return strings.HasSuffix(e.Type, ".deleted") || bytes.Equal(bytes.TrimSpace(e.Data), []byte("null"))
}

// Validate checks the attributes tenantvault relies on. The error is an *Error
// with code EINVALID that names the attribute, never its value's payload.
func (e *Event) Validate() error {
	switch {
	case e.SpecVersion != SpecVersion:
		return Reasonf(EINVALID, ReasonSpecVersion, "specversion %.20q is not supported (want %q)", e.SpecVersion, SpecVersion)
	case e.ID == "":
		return Reasonf(EINVALID, ReasonIDMissing, "missing required attribute id")
	case e.Source == "":
		return Reasonf(EINVALID, ReasonSourceMissing, "missing required attribute source")
	case e.Type == "":
		return Reasonf(EINVALID, ReasonTypeMissing, "missing required attribute type")
	case e.Subject == "":
		return Reasonf(EINVALID, ReasonSubjectMissing, "missing required attribute subject (the stream id)")
	case len(e.ID) > MaxIDLen:
		return Reasonf(EINVALID, ReasonIDTooLong, "attribute id is longer than %d bytes", MaxIDLen)
	case len(e.Subject) > MaxSubjectLen:
		return Reasonf(EINVALID, ReasonSubjectTooLong, "attribute subject is longer than %d bytes", MaxSubjectLen)
	case len(e.Type) > MaxTypeLen:
		return Reasonf(EINVALID, ReasonTypeTooLong, "attribute type is longer than %d bytes", MaxTypeLen)
	case len(e.Source) > MaxSourceLen:
		return Reasonf(EINVALID, ReasonSourceTooLong, "attribute source is longer than %d bytes", MaxSourceLen)
	case e.Data != nil && e.DataBase64 != nil:
		return Reasonf(EINVALID, ReasonDataConflict, "data and data_base64 are mutually exclusive")
	}
	if e.Tenant != "" {
		if _, err := ParseTenantID(e.Tenant); err != nil {
			return Reasonf(EINVALID, ReasonTenantInvalid, "extension tenant: %s", ErrorMessage(err))
		}
	}
	return nil
}

// Encode returns e in structured-mode JSON.
func (e *Event) Encode() ([]byte, error) { return json.Marshal(e) }

// Header is one Kafka record header, as the codec sees it.
type Header struct {
	Key   string
	Value []byte
}

// Decode decodes one Kafka record value (and headers) into an Event: binary
// mode when a ce_specversion header is present, structured mode otherwise.
// Records larger than maxBytes (value plus headers) are refused with
// ETOOLARGE; anything malformed with EINVALID. The returned event is valid.
func Decode(value []byte, headers []Header, maxBytes int) (Event, error) {
	size := len(value)
	for _, h := range headers {
		size += len(h.Key) + len(h.Value)
	}
	if maxBytes > 0 && size > maxBytes {
		return Event{}, Reasonf(ETOOLARGE, ReasonTooLarge, "event of %d bytes is over the limit of %d bytes", size, maxBytes)
	}
	for _, h := range headers {
		if h.Key == "ce_specversion" {
			return decodeBinary(value, headers)
		}
	}
	return DecodeStructured(value)
}

// DecodeStructured decodes a structured-mode CloudEvent (JSON object).
// Unknown extension attributes are accepted and ignored. Attribute names are
// matched exactly (CloudEvents names are lower case); when one is repeated,
// the last wins, and a null attribute is as if absent. data is kept as
// written.
func DecodeStructured(b []byte) (Event, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		if ValidJSON(b) {
			return Event{}, Reasonf(EINVALID, ReasonNotJSONObject, "event is not a JSON object: not an object")
		}
		return Event{}, Reasonf(EINVALID, ReasonNotJSONObject, "event is not a JSON object: %s", syntaxErrorAt(b))
	}
	var (
		e          Event
		timeAttr   []byte
		dataBase64 []byte
	)
	it := objectIter{b: b, i: i}
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		name := k[1 : len(k)-1]
		if it.escaped {
			name = []byte(unquote(k, true))
		}
		if string(name) == "data" {
			e.Data = v
			continue
		}
		dst, raw := e.attrSlot(string(name), &timeAttr, &dataBase64)
		if dst == nil && raw == nil {
			continue // an extension attribute
		}
		if err := stringAttr(string(name), v); err != nil {
			return Event{}, err
		}
		switch {
		case raw != nil && isNull(v):
			*raw = nil
		case raw != nil:
			*raw = v
		case isNull(v):
			*dst = ""
		default:
			*dst = unquote(v, bytes.IndexByte(v, '\\') >= 0)
		}
	}
	if it.bad || skipSpace(b, it.i) != len(b) {
		return Event{}, Reasonf(EINVALID, ReasonNotJSONObject, "event is not a JSON object: %s", syntaxErrorAt(b))
	}
	if err := e.finishDecoded(timeAttr, dataBase64); err != nil {
		return Event{}, err
	}
	return e, nil
}

// attrSlot says where DecodeStructured keeps the attribute name: a string
// attribute of e (dst), or one of the attributes decoded after the whole
// object was read (raw: time and data_base64). Both are nil for an
// extension attribute, which is not kept.
func (e *Event) attrSlot(name string, timeAttr, dataBase64 *[]byte) (dst *string, raw *[]byte) {
	switch name {
	case "id":
		return &e.ID, nil
	case "source":
		return &e.Source, nil
	case "specversion":
		return &e.SpecVersion, nil
	case "type":
		return &e.Type, nil
	case "subject":
		return &e.Subject, nil
	case "datacontenttype":
		return &e.DataContentType, nil
	case "dataschema":
		return &e.DataSchema, nil
	case "tenant":
		return &e.Tenant, nil
	case "time":
		return nil, timeAttr
	case "data_base64":
		return nil, dataBase64
	}
	return nil, nil
}

// finishDecoded completes an event read by DecodeStructured: it copies the
// data out of the input, decodes the time and data_base64 attributes kept
// as written, and validates the whole event.
func (e *Event) finishDecoded(timeAttr, dataBase64 []byte) error {
	if len(e.Data) > 0 {
		e.Data = append(json.RawMessage(nil), e.Data...)
	}
	if timeAttr != nil {
		t, err := time.Parse(time.RFC3339Nano, unquote(timeAttr, bytes.IndexByte(timeAttr, '\\') >= 0))
		if err != nil {
			return Reasonf(EINVALID, ReasonTimeInvalid, "attribute time is not RFC 3339")
		}
		e.Time = t
	}
	if dataBase64 != nil {
		s := unquote(dataBase64, bytes.IndexByte(dataBase64, '\\') >= 0)
		bin, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return Reasonf(EINVALID, ReasonDataBase64Invalid, "attribute data_base64 is not base64")
		}
		e.DataBase64 = bin
	}
	return e.Validate()
}

// stringAttr refuses an attribute value that is neither a string nor null.
func stringAttr(name string, v []byte) error {
	if v[0] != '"' && !isNull(v) {
		return Reasonf(EINVALID, ReasonAttributeNotString, "attribute %.40s must be a string", name)
	}
	return nil
}

// syntaxErrorAt describes why b is not valid JSON without quoting it.
func syntaxErrorAt(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	if err == nil {
		return "a string is not valid UTF-8"
	}
	return jsonErrorKind(err)
}

// binaryAttrs are the headers decodeBinary reads, by lower-case key.
var binaryAttrs = map[string]bool{
	"ce_specversion": true, "ce_id": true, "ce_source": true, "ce_type": true, "ce_subject": true,
	"ce_dataschema": true, "ce_tenant": true, "ce_time": true, "content-type": true,
}

// decodeBinary decodes a binary-mode CloudEvent: attributes in ce_* headers,
// data in the record value, its media type in the content-type header.
func decodeBinary(value []byte, headers []Header) (Event, error) {
	var e Event
	for _, h := range headers {
		v := string(h.Value)
		key := strings.ToLower(h.Key)
		if binaryAttrs[key] && !utf8.Valid(h.Value) {
			// CloudEvents attributes are strings: Unicode, as JSON's are
			// in structured mode (which DecodeStructured checks).
			return Event{}, Reasonf(EINVALID, ReasonAttributeNotUTF8, "header %s is not valid UTF-8", key)
		}
		switch key {
		case "ce_specversion":
			e.SpecVersion = v
		case "ce_id":
			e.ID = v
		case "ce_source":
			e.Source = v
		case "ce_type":
			e.Type = v
		case "ce_subject":
			e.Subject = v
		case "ce_dataschema":
			e.DataSchema = v
		case "ce_tenant":
			e.Tenant = v
		case "ce_time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return Event{}, Reasonf(EINVALID, ReasonTimeInvalid, "header ce_time is not RFC 3339")
			}
			e.Time = t
		case "content-type":
			e.DataContentType = v
		}
	}
	if len(value) > 0 {
		ct := e.DataContentType
		if ct == "" || strings.HasPrefix(ct, "application/json") || strings.HasSuffix(strings.SplitN(ct, ";", 2)[0], "+json") {
			if !ValidJSON(value) {
				return Event{}, Reasonf(EINVALID, ReasonDataInvalid, "data is not valid JSON for content type %.60q", ct)
			}
			e.Data = append(json.RawMessage(nil), value...)
		} else {
			e.DataBase64 = append([]byte(nil), value...)
		}
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// jsonErrorKind describes a JSON syntax error without quoting the input.
func jsonErrorKind(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "not an object"
	}
	return "malformed JSON"
}

// ClaimedTenant is the tenant a record names — its ce_tenant header, or
// the "tenant" member of its JSON value — read leniently, whatever else is
// wrong with the record: a record that names another tenant than its
// topic's is a boundary crossing even when it is also malformed. "" when it
// names none (or its value is not a JSON object).
func ClaimedTenant(value []byte, headers []Header) string {
	binary := false
	for _, h := range headers {
		if strings.EqualFold(h.Key, "ce_tenant") {
			return string(h.Value)
		}
		binary = binary || strings.EqualFold(h.Key, "ce_specversion")
	}
	if binary {
		return "" // the value is the event's data, not the event
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(value, &members) != nil {
		return ""
	}
	var t string
	if json.Unmarshal(members["tenant"], &t) != nil {
		return ""
	}
	return t
}
