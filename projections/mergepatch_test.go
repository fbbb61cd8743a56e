package projections

import (
	"reflect"
	"testing"
)

func TestMergePatch(t *testing.T) {
	tests := []struct {
		name, target, patch, want string
	}{
		// RFC 7386, Appendix A.
		{"A.1 replace member", `{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{"A.2 add member", `{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{"A.3 remove member", `{"a":"b"}`, `{"a":null}`, `{}`},
		{"A.4 remove one of two", `{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{"A.5 array replaced by string", `{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{"A.6 string replaced by array", `{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{"A.7 nested merge and removal", `{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{"A.8 array of objects replaced", `{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{"A.9 array replaced", `["a","b"]`, `["c","d"]`, `["c","d"]`},
		{"A.10 object replaced by array", `{"a":"b"}`, `["c"]`, `["c"]`},
		{"A.11 null patch", `{"a":"foo"}`, `null`, `null`},
		{"A.12 string patch", `{"a":"foo"}`, `"bar"`, `"bar"`},
		{"A.13 null in target kept", `{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{"A.14 array target becomes object", `[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{"A.15 nulls dropped from new members", `{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// Beyond the appendix.
		{"no target", ``, `{"a":1,"b":null}`, `{"a":1}`},
		{"no target, scalar patch", ``, `42`, `42`},
		{"deep merge keeps siblings", `{"a":{"x":1,"y":{"z":2}},"k":true}`, `{"a":{"y":{"w":3}}}`, `{"a":{"x":1,"y":{"z":2,"w":3}},"k":true}`},
		{"numbers kept as written", `{"n":1}`, `{"big":12345678901234567890123,"f":1.50}`, `{"n":1,"big":12345678901234567890123,"f":1.50}`},
		{"remove absent member", `{"a":1}`, `{"b":null}`, `{"a":1}`},
		{"empty patch", `{"a":1}`, `{}`, `{"a":1}`},
		{"object replaces scalar member", `{"a":1}`, `{"a":{"b":null,"c":2}}`, `{"a":{"c":2}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var target any
			if tt.target != "" {
				target = mustDecode(t, tt.target)
			}
			patch := mustDecode(t, tt.patch)
			patchBefore, _ := encodeJSON(patch)

			got := mergePatch(target, patch)
			if want := mustDecode(t, tt.want); !reflect.DeepEqual(got, want) {
				gotJSON, _ := encodeJSON(got)
				t.Errorf("mergePatch(%s, %s) = %s, want %s", tt.target, tt.patch, gotJSON, tt.want)
			}
			if patchAfter, _ := encodeJSON(patch); string(patchAfter) != string(patchBefore) {
				t.Errorf("mergePatch modified the patch: %s, was %s", patchAfter, patchBefore)
			}
		})
	}
}

func TestMergePatchDoesNotAliasPatch(t *testing.T) {
	patch := mustDecode(t, `{"a":{"b":1}}`)
	doc := mergePatch(nil, patch)
	doc = mergePatch(doc, mustDecode(t, `{"a":{"c":2}}`))
	if got, _ := encodeJSON(patch); string(got) != `{"a":{"b":1}}` {
		t.Errorf("first patch = %s after a second merge, want it unchanged", got)
	}
	if got, _ := encodeJSON(doc); string(got) != `{"a":{"b":1,"c":2}}` {
		t.Errorf("doc = %s, want {\"a\":{\"b\":1,\"c\":2}}", got)
	}
}

func TestDecodeJSONRejectsTrailingData(t *testing.T) {
	for _, in := range []string{`{} {}`, `1 2`, `{"a":1}x`, ``} {
		if _, err := decodeJSON([]byte(in)); err == nil {
			t.Errorf("decodeJSON(%q) = nil error, want an error", in)
		}
	}
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("decodeJSON(%s) = %v", s, err)
	}
	return v
}

// FuzzMergePatch checks that merging never panics, that a merge patch is
// idempotent (applying it twice changes nothing more) and that the result
// encodes to JSON that decodes to itself.
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":"b"}`, `{"a":"c"}`)
	f.Add(`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`)
	f.Add(`[1,2]`, `{"a":"b","c":null}`)
	f.Add(`{}`, `{"a":{"bb":{"ccc":null}}}`)
	f.Add(`{"e":null}`, `"bar"`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		tv, err := decodeJSON([]byte(target))
		if err != nil {
			return
		}
		pv, err := decodeJSON([]byte(patch))
		if err != nil {
			return
		}
		once := mergePatch(tv, pv)
		onceJSON, err := encodeJSON(once)
		if err != nil {
			t.Fatalf("encodeJSON(merge) = %v", err)
		}
		var again any
		if onceJSON != nil {
			if again, err = decodeJSON(onceJSON); err != nil {
				t.Fatalf("decodeJSON(%s) = %v", onceJSON, err)
			}
		}
		twice, _ := encodeJSON(mergePatch(again, pv))
		if string(twice) != string(onceJSON) {
			t.Errorf("merge patch %s not idempotent on %s: %s then %s", patch, target, onceJSON, twice)
		}
	})
}
