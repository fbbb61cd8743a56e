package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

// Every refusal of Decode carries its own reason code, and the code never
// holds any part of the input: a marker in every attribute value is
// nowhere in it (the message, sealed with the input, may quote it).
func TestDecodeReasonCodes(t *testing.T) {
	const m = "MARKER-pii"
	h := func(kv ...string) []events.Header {
		var out []events.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, events.Header{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	long := strings.Repeat(m, 200)
	tests := []struct {
		name    string
		value   string
		headers []events.Header
		max     int
		want    string
	}{
		{"too large", `{"id":"` + m + `"}`, nil, 8, events.ReasonTooLarge},
		{"not JSON", `{"` + m, nil, 0, events.ReasonNotJSONObject},
		{"not an object", `["` + m + `"]`, nil, 0, events.ReasonNotJSONObject},
		{"specversion", `{"specversion":"` + m + `","id":"a","source":"s","type":"t","subject":"s"}`, nil, 0, events.ReasonSpecVersion},
		{"attribute not a string", `{"specversion":"1.0","id":1,"source":"` + m + `"}`, nil, 0, events.ReasonAttributeNotString},
		{"id missing", `{"specversion":"1.0","source":"` + m + `","type":"t","subject":"s"}`, nil, 0, events.ReasonIDMissing},
		{"source missing", `{"specversion":"1.0","id":"` + m + `","type":"t","subject":"s"}`, nil, 0, events.ReasonSourceMissing},
		{"type missing", `{"specversion":"1.0","id":"` + m + `","source":"s","subject":"s"}`, nil, 0, events.ReasonTypeMissing},
		{"subject missing", `{"specversion":"1.0","id":"` + m + `","source":"s","type":"t"}`, nil, 0, events.ReasonSubjectMissing},
		{"id too long", `{"specversion":"1.0","id":"` + long + `","source":"s","type":"t","subject":"s"}`, nil, 0, events.ReasonIDTooLong},
		{"subject too long", `{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"` + long + `"}`, nil, 0, events.ReasonSubjectTooLong},
		{"type too long", `{"specversion":"1.0","id":"a","source":"s","type":"` + long + `","subject":"s"}`, nil, 0, events.ReasonTypeTooLong},
		{"source too long", `{"specversion":"1.0","id":"a","source":"` + long + `","type":"t","subject":"s"}`, nil, 0, events.ReasonSourceTooLong},
		{"data and data_base64", `{"specversion":"1.0","id":"` + m + `","source":"s","type":"t","subject":"s","data":1,"data_base64":"AA=="}`, nil, 0, events.ReasonDataConflict},
		{"tenant invalid", `{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"s","tenant":"` + m + `"}`, nil, 0, events.ReasonTenantInvalid},
		{"time invalid", `{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"s","time":"` + m + `"}`, nil, 0, events.ReasonTimeInvalid},
		{"data_base64 invalid", `{"specversion":"1.0","id":"a","source":"s","type":"t","subject":"s","data_base64":"` + m + `"}`, nil, 0, events.ReasonDataBase64Invalid},
		{"binary time invalid", `{}`, h("ce_specversion", "1.0", "ce_time", m), 0, events.ReasonTimeInvalid},
		{"binary data invalid", `{` + m, h("ce_specversion", "1.0", "content-type", "application/"+m+"+json"), 0, events.ReasonDataInvalid},
		{"binary specversion", `{}`, h("ce_specversion", m), 0, events.ReasonSpecVersion},
		{"binary id not UTF-8", `{}`, h("ce_specversion", "1.0", "ce_id", m+"\xff", "ce_source", "s", "ce_type", "t", "ce_subject", "s"), 0, events.ReasonAttributeNotUTF8},
		{"binary subject not UTF-8", `{}`, h("ce_specversion", "1.0", "ce_id", "a", "ce_source", "s", "ce_type", "t", "ce_subject", "\xc3"+m), 0, events.ReasonAttributeNotUTF8},
		{"binary tenant not UTF-8", `{}`, h("ce_specversion", "1.0", "ce_id", "a", "ce_source", "s", "ce_type", "t", "ce_subject", "s", "CE_TENANT", m+"\xed\xa0\x80"), 0, events.ReasonAttributeNotUTF8},
		{"binary content-type not UTF-8", `{}`, h("ce_specversion", "1.0", "ce_id", "a", "ce_source", "s", "ce_type", "t", "ce_subject", "s", "content-type", "application/json\xfe"), 0, events.ReasonAttributeNotUTF8},
		{"binary specversion not UTF-8", `{}`, h("ce_specversion", "1.0\x80"), 0, events.ReasonAttributeNotUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode([]byte(tt.value), tt.headers, tt.max)
			got := events.ErrorReason(err)
			if got != tt.want {
				t.Errorf("ErrorReason(Decode(%.60q)) = %q (%v), want %q", tt.value, got, err, tt.want)
			}
			if strings.Contains(got, "MARKER") {
				t.Errorf("reason code %q holds the input", got)
			}
		})
	}
}

func TestErrorReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"with reason", events.Reasonf(events.EINVALID, events.ReasonIDMissing, "x"), events.ReasonIDMissing},
		{"without reason: the code", events.Errorf(events.ENOTFOUND, "x"), events.ENOTFOUND},
		{"another error", errors.ErrUnsupported, "internal"},
	}
	for _, tt := range tests {
		if got := events.ErrorReason(tt.err); got != tt.want {
			t.Errorf("ErrorReason(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
