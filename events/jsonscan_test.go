package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValidJSON(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{}`, true}, {` {"a" : [1, -2.5e+3, true, false, null, "x\u00e9\n"]} `, true},
		{`"\ud83d\ude00"`, true}, {`0`, true}, {`-0.0E-0`, true}, {`"é"`, true},
		{``, false}, {` `, false}, {`{`, false}, {`{"a"}`, false}, {`{"a":1,}`, false}, {`[1,]`, false},
		{`01`, false}, {`1.`, false}, {`.5`, false}, {`1e`, false}, {`-`, false}, {`+1`, false},
		{`tru`, false}, {`nul`, false}, {`"a`, false}, {`"\x"`, false}, {`"\u12"`, false},
		{"\"\x01\"", false}, {"\"\xff\"", false}, {`{} {}`, false}, {`{'a':1}`, false},
		{strings.Repeat("[", 10000) + strings.Repeat("]", 10000), true},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), false},
	}
	for _, tt := range tests {
		if got := ValidJSON([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidJSON(%.40q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"\u00e9"`, `1e5`, `[`, `{"a":1,}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := ValidJSON(b), json.Valid(b)
		if !utf8.Valid(b) {
			// RFC 8259 strings: stricter than encoding/json, which accepts
			// invalid UTF-8; ValidJSON must reject it.
			if got {
				t.Fatalf("ValidJSON(%q) accepted invalid UTF-8", b)
			}
			return
		}
		if got != want {
			t.Fatalf("ValidJSON(%q) = %v, json.Valid = %v", b, got, want)
		}
		if got {
			c := AppendCompactJSON(nil, b)
			var buf bytes.Buffer
			if err := json.Compact(&buf, b); err != nil || !bytes.Equal(c, buf.Bytes()) {
				t.Fatalf("AppendCompactJSON(%q) = %q, json.Compact = %q", b, c, buf.Bytes())
			}
		}
	})
}

func decodeAny(tb testing.TB, b []byte) any {
	tb.Helper()
	if len(b) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		tb.Fatalf("decode %q: %v", b, err)
	}
	return v
}

func TestAppendMergePatch(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		// RFC 7386, Appendix A, in order.
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// Beyond the appendix.
		{``, `{"a":1,"b":null}`, `{"a":1}`},
		{``, ` 42 `, `42`},
		{`{"a":{"x":1,"y":{"z":2}},"k":true}`, `{"a":{"y":{"w":3}}}`, `{"a":{"x":1,"y":{"z":2,"w":3}},"k":true}`},
		{`{"n":1}`, `{"big":12345678901234567890123,"f":1.50}`, `{"n":1,"big":12345678901234567890123,"f":1.50}`},
		{`{"a":1}`, `{ "b" : null , "c" : [ 1 , "x y" ] }`, `{"a":1,"c":[1,"x y"]}`},
		{`{"a":1}`, `{"a":2,"a":3}`, `{"a":3}`},
		{`{"a":1}`, `{"\u0061":2}`, `{"a":2}`},
		{`{"a":{"b":1}}`, `{"a":{"c":1},"a":null}`, `{}`},
		{`{"":{},"":[]}`, `{"":null}`, `{}`},           // the target's last "" wins, and goes
		{`{"a":1,"b":2,"a":3}`, `{}`, `{"a":3,"b":2}`}, // as decoding the target would
	}
	for _, tt := range tests {
		got := AppendMergePatch(nil, []byte(tt.target), []byte(tt.patch))
		if string(got) != tt.want {
			t.Errorf("AppendMergePatch(%s, %s) = %s, want %s", tt.target, tt.patch, got, tt.want)
		}
	}
}

func FuzzAppendMergePatch(f *testing.F) {
	f.Add([]byte(`{"a":{"b":1},"c":[1]}`), []byte(`{"a":{"b":null,"d":2},"e":null}`))
	f.Add([]byte(``), []byte(`{"x":{"y":null}}`))
	f.Add([]byte(`[1]`), []byte(`"s"`))
	f.Fuzz(func(t *testing.T, target, patch []byte) {
		if len(target) > 0 && !ValidJSON(target) || !ValidJSON(patch) {
			return
		}
		got := AppendMergePatch([]byte("prefix"), target, patch)
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("AppendMergePatch lost dst")
		}
		got = got[len("prefix"):]
		if !ValidJSON(got) || !bytes.Equal(AppendCompactJSON(nil, got), got) {
			t.Fatalf("AppendMergePatch(%q, %q) = %q: not compact JSON", target, patch, got)
		}
		if again := AppendMergePatch(nil, got, patch); !bytes.Equal(again, got) {
			t.Fatalf("merge patch %q is not idempotent: %q, then %q", patch, got, again)
		}
		want := mergeDecoded(decodeAny(t, target), decodeAny(t, patch))
		if g := decodeAny(t, got); !reflect.DeepEqual(g, want) {
			t.Fatalf("AppendMergePatch(%q, %q) = %q, want %v", target, patch, got, want)
		}
	})
}

// decodeStd is the encoding/json decoder DecodeStructured replaced: the
// reference it is checked against.
func decodeStd(b []byte) (Event, error) {
	var w struct {
		ID, Source, SpecVersion, Type, Subject, Time, DataContentType, DataSchema, Tenant string
		Data                                                                              json.RawMessage
		DataBase64                                                                        *string `json:"data_base64"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, Errorf(EINVALID, "%v", err)
	}
	e := Event{ID: w.ID, Source: w.Source, SpecVersion: w.SpecVersion, Type: w.Type, Subject: w.Subject,
		DataContentType: w.DataContentType, DataSchema: w.DataSchema, Tenant: w.Tenant}
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return Event{}, Errorf(EINVALID, "time")
		}
		e.Time = t
	}
	if len(w.Data) > 0 {
		e.Data = w.Data
	}
	if w.DataBase64 != nil {
		bin, err := base64.StdEncoding.DecodeString(*w.DataBase64)
		if err != nil {
			return Event{}, Errorf(EINVALID, "data_base64")
		}
		e.DataBase64 = bin
	}
	return e, e.Validate()
}

// departsFromStd reports whether b's top-level object is one where
// DecodeStructured departs from encoding/json by design: a member name that
// encoding/json would match to an attribute case-insensitively but
// DecodeStructured, matching exactly, would not; or an attribute given
// twice (DecodeStructured takes the last value, null included, where
// encoding/json lets a later null keep the earlier value).
func departsFromStd(b []byte) bool {
	names := []string{"id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema", "tenant", "data", "data_base64"}
	seen := map[string]bool{}
	it := objectIter{b: b, i: skipSpace(b, 0)}
	for {
		k, _, ok := it.next()
		if !ok {
			return false
		}
		name := unquote(k, it.escaped)
		if seen[name] && slices.Contains(names, name) {
			return true
		}
		seen[name] = true
		for _, n := range names {
			if name != n && (strings.EqualFold(name, n) || !isASCII(name)) {
				return true
			}
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func FuzzDecodeStructured(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","data":{"a":[1,2]}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"e\u0031","source":"s","type":"t","subject":"x","time":"2026-01-02T03:04:05Z","data_base64":"AAEC","ext":{"a":1}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"x","tenant":null,"data":null}`))
	f.Add([]byte(`{"specversion":1}`))
	f.Add([]byte(` [1] `))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) || departsFromStd(b) {
			return // the documented departures from encoding/json
		}
		got, err := DecodeStructured(b)
		want, werr := decodeStd(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("DecodeStructured(%q) error %v, encoding/json %v", b, err, werr)
		}
		if err != nil {
			if c := ErrorCode(err); c != EINVALID {
				t.Fatalf("DecodeStructured(%q) error code %s", b, c)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeStructured(%q) = %+v, encoding/json %+v", b, got, want)
		}
	})
}

func TestDecodeStructuredErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{`{"specversion":1}`, "attribute specversion must be a string"},
		{`[1]`, "event is not a JSON object: not an object"},
		{`{"id":"x"`, "event is not a JSON object: "},
		{"{\"id\":\"\xff\"}", "event is not a JSON object: a string is not valid UTF-8"},
		{`{"specversion":"1.0","id":"e","source":"s","type":"t","subject":"x","time":"yesterday"}`, "attribute time is not RFC 3339"},
		// CloudEvents attribute names are lower case: "ID" is an extension.
		{`{"specversion":"1.0","ID":"e","source":"s","type":"t","subject":"x"}`, "missing required attribute id"},
		// The last value of a repeated attribute wins, and null is absent.
		{`{"specversion":"1.0","id":"e","id":null,"source":"s","type":"t","subject":"x"}`, "missing required attribute id"},
		{`{"specversion":"1.0","id":"e","source":"s","type":"t","subject":"x","time":"2026-01-01T00:00:00Z","time":"no"}`, "attribute time is not RFC 3339"},
	}
	for _, tt := range tests {
		_, err := DecodeStructured([]byte(tt.in))
		var e *Error
		if !errors.As(err, &e) || e.Code != EINVALID || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("DecodeStructured(%q) = %v, want EINVALID %q", tt.in, err, tt.msg)
		}
	}
}

func BenchmarkValidJSON(b *testing.B) {
	doc := []byte(`{"n":12345,"pad":"` + strings.Repeat("x", 230) + `","nested":{"a":[1,2.5,true,null],"s":"caf\u00e9 é"}}`)
	b.Run("events.ValidJSON", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			ValidJSON(doc)
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			json.Valid(doc)
		}
	})
}

// TestScanStringEveryPosition puts each kind of byte the fast path must
// stop at at every position of strings long enough for it, on both sides
// of eight-byte boundaries.
func TestScanStringEveryPosition(t *testing.T) {
	specials := []string{`"`, `\`, `\n`, `\u00e9`, "\x01", "\x1f", "é", "\xff", "\xc3", "\x7f", "\x80"}
	for n := 0; n < 40; n++ {
		for p := 0; p <= n; p++ {
			for _, sp := range specials {
				s := `"` + strings.Repeat("a", p) + sp + strings.Repeat("b", n-p) + `"`
				b := []byte(s)
				want := json.Valid(b) && utf8.Valid(b)
				if got := ValidJSON(b); got != want {
					t.Fatalf("ValidJSON(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}

// hostilePatches are documents of about 1 MiB shaped to make a naive raw
// merge quadratic: nested 10,000 deep, and one object of 100,000 members.
func hostilePatches() map[string][]byte {
	var deep, wide strings.Builder
	for range 10000 {
		deep.WriteString(`{"p":"` + strings.Repeat("x", 90) + `","a":`)
	}
	deep.WriteString("1" + strings.Repeat("}", 10000))
	wide.WriteString("{")
	for i := range 100000 {
		if i > 0 {
			wide.WriteString(",")
		}
		fmt.Fprintf(&wide, `"member-%d":%d`, i, i)
	}
	wide.WriteString("}")
	return map[string][]byte{"deep": []byte(deep.String()), "wide": []byte(wide.String())}
}

// TestAppendMergePatchLarge checks the paths taken by deep and wide
// documents (decoded merge below maxMergeDepth, members indexed by name)
// against the reference merge.
func TestAppendMergePatchLarge(t *testing.T) {
	nest := func(depth int, inner string) string {
		return strings.Repeat(`{"a":{"keep":1},"n":`, depth) + inner + strings.Repeat("}", depth)
	}
	var wideT, wideP strings.Builder
	wideT.WriteString(`{"x":0`)
	wideP.WriteString(`{"y":null`)
	for i := range 200 {
		fmt.Fprintf(&wideT, `,"m%d":{"v":%d,"w":1}`, i, i)
		fmt.Fprintf(&wideP, `,"m%d":{"w":null,"z":%d}`, i*2, i)
	}
	wideT.WriteString(`,"m0":{"v":"last"}}`) // a repeated name: the last wins
	wideP.WriteString(`,"m2":null}`)
	for _, tc := range []struct{ name, target, patch string }{
		{"deep", nest(100, `{"b":1,"c":{"d":2}}`), nest(100, `{"b":null,"c":{"e":3}}`)},
		{"wide", wideT.String(), wideP.String()},
	} {
		got := AppendMergePatch(nil, []byte(tc.target), []byte(tc.patch))
		if !ValidJSON(got) {
			t.Fatalf("%s: result is not JSON", tc.name)
		}
		want := mergeDecoded(decodeAny(t, []byte(tc.target)), decodeAny(t, []byte(tc.patch)))
		if g := decodeAny(t, got); !reflect.DeepEqual(g, want) {
			t.Errorf("%s: AppendMergePatch differs from the reference merge", tc.name)
		}
		if again := AppendMergePatch(nil, got, []byte(tc.patch)); !bytes.Equal(again, got) {
			t.Errorf("%s: merge is not idempotent", tc.name)
		}
	}
}

// BenchmarkAppendMergePatchHostile merges each hostile document into
// itself; the raw walk must stay linear in their size.
func BenchmarkAppendMergePatchHostile(b *testing.B) {
	for name, doc := range hostilePatches() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * len(doc)))
			for b.Loop() {
				AppendMergePatch(nil, doc, doc)
			}
		})
	}
}

func TestDocument(t *testing.T) {
	var d Document
	if out, err := d.AppendJSON([]byte("x")); err != nil || string(out) != "x" {
		t.Errorf("zero Document AppendJSON = %q, %v, want nothing appended", out, err)
	}
	if err := d.Set([]byte(`{"a":1,"b":{"c":2},"big":12345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"b":{"c":null,"d":3}}`, `{"a":null,"e":[1,{"f":null}]}`} {
		if err := d.MergePatch([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := d.AppendJSON(nil)
	if want := `{"b":{"d":3},"big":12345678901234567890,"e":[1,{"f":null}]}`; err != nil || string(out) != want {
		t.Errorf("AppendJSON = %s, %v, want %s", out, err, want)
	}
	if err := d.MergePatch([]byte(`{"a":`)); ErrorCode(err) != EINVALID {
		t.Errorf("MergePatch(invalid) = %v, want %s", err, EINVALID)
	}
}
