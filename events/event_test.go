package events_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/events"
)

func TestDecodeStructured(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code string // "" = ok
	}{
		{"ok", `{"specversion":"1.0","id":"e1","source":"s","type":"order.placed","subject":"order-1","data":{"total":12}}`, ""},
		{"ok time tenant", `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","time":"2026-01-02T03:04:05Z","tenant":"acme"}`, ""},
		{"ok base64", `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data_base64":"AAEC"}`, ""},
		{"not json", `{"specversion":`, events.EINVALID},
		{"array", `[1,2]`, events.EINVALID},
		{"missing id", `{"specversion":"1.0","source":"s","type":"t","subject":"x"}`, events.EINVALID},
		{"missing subject", `{"specversion":"1.0","id":"e1","source":"s","type":"t"}`, events.EINVALID},
		{"missing type", `{"specversion":"1.0","id":"e1","source":"s","subject":"x"}`, events.EINVALID},
		{"missing source", `{"specversion":"1.0","id":"e1","type":"t","subject":"x"}`, events.EINVALID},
		{"bad specversion", `{"specversion":"0.3","id":"e1","source":"s","type":"t","subject":"x"}`, events.EINVALID},
		{"id not string", `{"specversion":"1.0","id":5,"source":"s","type":"t","subject":"x"}`, events.EINVALID},
		{"bad time", `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","time":"yesterday"}`, events.EINVALID},
		{"hostile tenant", `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","tenant":"../etc"}`, events.EINVALID},
		{"both data", `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data":1,"data_base64":"AA=="}`, events.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Decode([]byte(tt.in), nil, events.DefaultMaxEventBytes)
			if got := events.ErrorCode(err); got != tt.code {
				t.Fatalf("Decode(%s) code = %q (%v), want %q", tt.in, got, err, tt.code)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data":"` + strings.Repeat("a", 2000) + `"}`
	_, err := events.Decode([]byte(big), nil, 1024)
	if events.ErrorCode(err) != events.ETOOLARGE {
		t.Fatalf("Decode(2 KiB, limit 1 KiB) = %v, want %s", err, events.ETOOLARGE)
	}
}

func TestDecodeBinary(t *testing.T) {
	h := []events.Header{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte("e9")},
		{Key: "ce_source", Value: []byte("kcat")},
		{Key: "ce_type", Value: []byte("order.placed")},
		{Key: "ce_subject", Value: []byte("order-9")},
		{Key: "content-type", Value: []byte("application/json")},
	}
	e, err := events.Decode([]byte(`{"total":3}`), h, events.DefaultMaxEventBytes)
	if err != nil {
		t.Fatalf("Decode(binary) = %v", err)
	}
	if e.ID != "e9" || e.Subject != "order-9" || string(e.Data) != `{"total":3}` {
		t.Fatalf("Decode(binary) = %+v", e)
	}
	if _, err := events.Decode([]byte(`{bad`), h, 0); events.ErrorCode(err) != events.EINVALID {
		t.Fatalf("Decode(binary, bad JSON) = %v, want invalid", err)
	}
}

func TestErrorMessagesDoNotQuotePayload(t *testing.T) {
	secret := "s3cr3t-payload-marker"
	in := `{"specversion":"1.0","id":"e1","source":"s","type":"t","data":"` + secret + `"`
	_, err := events.Decode([]byte(in), nil, 0)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("Decode error %v quotes the payload", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	in := events.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: "t", Subject: "x", Data: []byte(`{"a":1}`)}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := events.DecodeStructured(b)
	if err != nil || out.ID != in.ID || !bytes.Equal(out.Data, in.Data) {
		t.Fatalf("round trip = %+v, %v", out, err)
	}
}

func TestIsDelete(t *testing.T) {
	for _, tt := range []struct {
		e    events.Event
		want bool
	}{
		{events.Event{Type: "order.deleted"}, true},
		{events.Event{Type: "order.placed", Data: []byte(" null ")}, true},
		{events.Event{Type: "order.placed", Data: []byte(`{}`)}, false},
		{events.Event{Type: "order.placed"}, false},
	} {
		if got := tt.e.IsDelete(); got != tt.want {
			t.Errorf("IsDelete(%+v) = %v, want %v", tt.e, got, tt.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data":{"a":[1,2]}}`), false)
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data_base64":"AAEC"}`), false)
	f.Add([]byte(`{"total":1}`), true)
	f.Add([]byte(`{`), false)
	f.Fuzz(func(t *testing.T, value []byte, binary bool) {
		var h []events.Header
		if binary {
			h = []events.Header{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("i")},
				{Key: "ce_source", Value: []byte("s")}, {Key: "ce_type", Value: []byte("t")}, {Key: "ce_subject", Value: []byte("x")}}
		}
		e, err := events.Decode(value, h, 4096)
		if err != nil {
			if c := events.ErrorCode(err); c != events.EINVALID && c != events.ETOOLARGE {
				t.Fatalf("Decode error code %q (%v)", c, err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid event: %v", err)
		}
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		again, err := events.DecodeStructured(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if again.ID != e.ID || again.Subject != e.Subject || !bytes.Equal(again.DataBase64, e.DataBase64) {
			t.Fatalf("round trip changed the event: %+v vs %+v", again, e)
		}
	})
}

func TestClaimedTenant(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		headers []events.Header
		want    string
	}{
		{"structured", `{"specversion":"1.0","tenant":"globex"}`, nil, "globex"},
		{"structured, missing id", `{"tenant":"globex","type":"t"}`, nil, "globex"},
		{"repeated: the last", `{"tenant":"a","tenant":"b"}`, nil, "b"},
		{"case matters", `{"Tenant":"globex"}`, nil, ""},
		{"not a string", `{"tenant":7}`, nil, ""},
		{"malformed JSON", `{"tenant":"globex"`, nil, ""},
		{"binary header", `{}`, []events.Header{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_tenant", Value: []byte("globex")}}, "globex"},
		{"binary without ce_id", `x`, []events.Header{{Key: "ce_tenant", Value: []byte("globex")}}, "globex"},
		{"binary data is not the event", `{"tenant":"globex"}`, []events.Header{{Key: "ce_specversion", Value: []byte("1.0")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events.ClaimedTenant([]byte(tt.value), tt.headers); got != tt.want {
				t.Errorf("events.ClaimedTenant(%q, %v) = %q, want %q", tt.value, tt.headers, got, tt.want)
			}
		})
	}
}
