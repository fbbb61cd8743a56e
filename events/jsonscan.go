package events

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A hand-written JSON scanner for the ingest hot path. encoding/json's
// byte-at-a-time state machine, run two or three times over every event
// (decode, validate, merge), was the largest single cost of ingest; this one
// validates a value in one pass and lets the event decoder and the merge
// patch work on the raw bytes. It accepts exactly RFC 8259 JSON, with one
// rule stricter than encoding/json: strings must be valid UTF-8, as RFC 8259
// requires of JSON exchanged between systems.

// maxJSONDepth bounds nesting, as encoding/json does.
const maxJSONDepth = 10000

// ValidJSON reports whether b holds exactly one JSON value, with optional
// surrounding white space, nested at most 10,000 deep, its strings valid
// UTF-8.
func ValidJSON(b []byte) bool {
	i := skipSpace(b, 0)
	j := scanValue(b, i, 0)
	return j >= 0 && skipSpace(b, j) == len(b)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue returns the index just past the JSON value that starts at b[i],
// or -1 if there is none.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '{':
		return scanObject(b, i, depth+1)
	case '[':
		return scanArray(b, i, depth+1)
	case '"':
		j, _ := scanString(b, i)
		return j
	case 't':
		return scanLiteral(b, i, "true")
	case 'f':
		return scanLiteral(b, i, "false")
	case 'n':
		return scanLiteral(b, i, "null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return scanNumber(b, i)
		}
		return -1
	}
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = scanDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := scanDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := scanDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func scanDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// scanString returns the index just past the string that starts at b[i]
// (a '"'), and whether it holds escapes; -1 if it is not a valid string.
func scanString(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; ; {
		j = skipPlain(b, j)
		if j >= len(b) {
			return -1, false
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return -1, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if len(b)-j < 6 || !isHex4(b[j+2:j+6]) {
					return -1, false
				}
				j += 6
			default:
				return -1, false
			}
		case c < 0x20:
			return -1, false
		default:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				return -1, false
			}
			j += size
		}
	}
}

// skipPlain returns the index of the first byte at or after j that is not
// plain string content: '"', '\\', a control character, or a byte of a
// multi-byte UTF-8 sequence. Eight bytes at a time where it can (SWAR: the
// "has a zero byte" test of Hacker's Delight; a false positive only ends
// the fast path early).
func skipPlain(b []byte, j int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(b)-j >= 8 {
		w := binary.LittleEndian.Uint64(b[j:])
		quote := w ^ (ones * '"')
		slash := w ^ (ones * '\\')
		special := ((w - ones*0x20) | (quote - ones) | (slash - ones) | w) & highs
		if special != 0 {
			break
		}
		j += 8
	}
	for j < len(b) {
		if c := b[j]; c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return j
		}
		j++
	}
	return j
}

func isHex4(h []byte) bool {
	for _, c := range h[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func scanArray(b []byte, i, depth int) int {
	if depth > maxJSONDepth {
		return -1
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = scanValue(b, i, depth); i < 0 {
			return -1
		}
		if i = skipSpace(b, i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

func scanObject(b []byte, i, depth int) int {
	if depth > maxJSONDepth {
		return -1
	}
	it := objectIter{b: b, i: i, depth: depth}
	for {
		_, _, ok := it.next()
		if !ok {
			if it.bad {
				return -1
			}
			return it.i
		}
	}
}

// objectIter walks the members of the object that starts at b[i] (a '{'),
// validating as it goes. After next returns false, bad tells a malformed
// object from its end, and i is the index just past the object.
type objectIter struct {
	b       []byte
	i       int
	depth   int
	started bool
	bad     bool
	escaped bool // the last key returned holds escapes
}

// next returns the next member: its key as written (quotes included) and
// its value as written.
func (it *objectIter) next() (key, value []byte, ok bool) {
	b, i := it.b, it.i
	if !it.started {
		it.started = true
		if i >= len(b) || b[i] != '{' {
			return it.fail()
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			it.i = i + 1
			return nil, nil, false
		}
	} else {
		if i = skipSpace(b, i); i >= len(b) {
			return it.fail()
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			it.i = i + 1
			return nil, nil, false
		default:
			return it.fail()
		}
	}
	if i >= len(b) || b[i] != '"' {
		return it.fail()
	}
	k, esc := scanString(b, i)
	if k < 0 {
		return it.fail()
	}
	key = b[i:k]
	if i = skipSpace(b, k); i >= len(b) || b[i] != ':' {
		return it.fail()
	}
	i = skipSpace(b, i+1)
	v := scanValue(b, i, it.depth)
	if v < 0 {
		return it.fail()
	}
	it.i, it.escaped = v, esc
	return key, b[i:v], true
}

func (it *objectIter) fail() ([]byte, []byte, bool) {
	it.bad = true
	return nil, nil, false
}

// unquote decodes a valid JSON string (quotes included). escaped says
// whether it holds escapes (as scanString reports); without, it is a copy.
func unquote(s []byte, escaped bool) string {
	s = s[1 : len(s)-1]
	if !escaped {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, hex4(s[i+2:i+6])); r2 != utf8.RuneError {
						out = utf8.AppendRune(out, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return string(out)
}

func hex4(h []byte) rune {
	n, _ := strconv.ParseUint(string(h), 16, 32)
	return rune(n)
}

// keysEqual compares two object keys as written (quotes included) by the
// strings they decode to.
func keysEqual(a []byte, aEsc bool, b []byte, bEsc bool) bool {
	if !aEsc && !bEsc {
		return bytes.Equal(a, b)
	}
	return unquote(a, aEsc) == unquote(b, bEsc)
}

// AppendCompactJSON appends the valid JSON value v to dst without its
// insignificant white space. Strings are copied as written.
func AppendCompactJSON(dst, v []byte) []byte {
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\n', '\r':
			dst = append(dst, v[start:i]...)
			start = i + 1
		case '"':
			j, _ := scanString(v, i)
			if j < 0 { // not valid JSON: copy the rest as it is
				return append(dst, v[start:]...)
			}
			i = j - 1
		}
	}
	return append(dst, v[start:]...)
}

// isNull reports whether the valid JSON value v is null.
func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

// AppendMergePatch appends to dst the result of applying the JSON merge
// patch (RFC 7386) patch to target, compact. Both must be valid JSON
// (ValidJSON); target may be empty, meaning no document. Members keep the
// target's order, new ones follow in the patch's. Where an object repeats a
// member name, the last one wins, in the first one's place, as when the
// object is decoded. The result of a null patch is null.
//
// Its cost is linear in the size of its input for any input ValidJSON
// accepts: objects nested more than maxMergeDepth deep are merged as
// decoded documents below that depth (each level of the raw walk scans its
// members' bytes again), and objects with many members are indexed by name
// instead of searched.
func AppendMergePatch(dst, target, patch []byte) []byte {
	return appendMergePatch(dst, target, patch, 0)
}

// maxMergeDepth is how deep the raw merge walks nested objects before it
// merges decoded documents instead: event data rarely nests deeper, and the
// raw walk costs depth times size.
const maxMergeDepth = 32

// manyMembers is the member count from which objects are indexed by name.
const manyMembers = 16

func appendMergePatch(dst, target, patch []byte, depth int) []byte {
	patch = bytes.TrimRight(patch[skipSpace(patch, 0):], " \t\r\n")
	if len(patch) == 0 || patch[0] != '{' {
		return AppendCompactJSON(dst, patch)
	}
	target = target[skipSpace(target, 0):]
	if len(target) > 0 && target[0] != '{' {
		target = nil // a merge patch object replaces a target that is not one
	}
	if depth >= maxMergeDepth {
		return appendMergeDecoded(dst, target, patch)
	}
	var pbuf, tbuf [manyMembers]member
	pm, byName := members(pbuf[:0], patch)
	var tm []member
	if len(target) > 0 {
		tm, _ = members(tbuf[:0], target)
	}
	dst = append(dst, '{')
	open := len(dst) // no member written while len(dst) == open
	for _, t := range tm {
		p := findMember(pm, byName, t)
		switch {
		case p == nil:
			dst = appendKey(dst, open, t.key)
			dst = AppendCompactJSON(dst, t.value)
		case isNull(p.value):
			p.used = true
		default:
			p.used = true
			dst = appendKey(dst, open, t.key)
			dst = appendMergePatch(dst, t.value, p.value, depth+1)
		}
	}
	for j := range pm {
		if p := &pm[j]; !p.used && !isNull(p.value) {
			dst = appendKey(dst, open, p.key)
			dst = appendMergePatch(dst, nil, p.value, depth+1)
		}
	}
	return append(dst, '}')
}

// member is an object member as written: key with its quotes, value.
type member struct {
	key, value []byte
	esc, used  bool // esc: the key holds escapes
}

func (m *member) name() string { return unquote(m.key, m.esc) }

// members appends to ms the members of the valid JSON object obj, one per
// name: a repeated name keeps the first one's place and the last one's
// value. For objects of manyMembers or more it also returns the index of
// each name (nil otherwise).
func members(ms []member, obj []byte) ([]member, map[string]int) {
	var byName map[string]int
	it := objectIter{b: obj}
	for {
		k, v, ok := it.next()
		if !ok {
			return ms, byName
		}
		m := member{key: k, value: v, esc: it.escaped}
		if byName == nil && len(ms) >= manyMembers {
			byName = make(map[string]int, 2*len(ms))
			for j := range ms {
				byName[ms[j].name()] = j
			}
		}
		if dup := findMember(ms, byName, m); dup != nil {
			dup.value = v
			continue
		}
		if byName != nil {
			byName[m.name()] = len(ms)
		}
		ms = append(ms, m)
	}
}

// findMember returns the member of ms named as m that no merge has used
// yet, by byName if there is an index.
func findMember(ms []member, byName map[string]int, m member) *member {
	if byName != nil {
		if j, ok := byName[m.name()]; ok && !ms[j].used {
			return &ms[j]
		}
		return nil
	}
	for j := range ms {
		if !ms[j].used && keysEqual(ms[j].key, ms[j].esc, m.key, m.esc) {
			return &ms[j]
		}
	}
	return nil
}

// appendMergeDecoded is the merge patch on decoded documents, for what
// lies below maxMergeDepth.
func appendMergeDecoded(dst, target, patch []byte) []byte {
	var d Document
	if len(target) > 0 {
		if err := d.Set(target); err != nil {
			d = Document{}
		}
	}
	if err := d.MergePatch(patch); err != nil {
		return AppendCompactJSON(dst, patch) // not valid JSON: the caller's contract is broken
	}
	out, err := d.AppendJSON(dst)
	if err != nil {
		return AppendCompactJSON(dst, patch)
	}
	return out
}

// Document is a decoded JSON document that merge patches are applied to
// one after another: for a large document and many patches, cheaper than
// AppendMergePatch, which walks the whole document for each. Numbers keep
// their digits; written back, object members come in encoding/json's
// order (sorted). The zero Document is no document.
type Document struct {
	v   any
	set bool
}

// Set replaces d with the JSON document b.
func (d *Document) Set(b []byte) error {
	v, err := decodeDocument(b)
	if err != nil {
		return err
	}
	d.v, d.set = v, true
	return nil
}

// MergePatch applies the JSON merge patch (RFC 7386) patch to d.
func (d *Document) MergePatch(patch []byte) error {
	p, err := decodeDocument(patch)
	if err != nil {
		return err
	}
	d.v, d.set = mergeDecoded(d.v, p), true
	return nil
}

// AppendJSON appends d as compact JSON to dst; no document appends nothing.
func (d *Document) AppendJSON(dst []byte) ([]byte, error) {
	if !d.set {
		return dst, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d.v); err != nil {
		return dst, err
	}
	return append(dst, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...), nil
}

func decodeDocument(b []byte) (any, error) {
	if !ValidJSON(b) {
		return nil, Errorf(EINVALID, "not valid JSON")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// mergeDecoded is RFC 7386 on decoded documents. It may modify target, and
// never modifies nor aliases patch where target could be modified later:
// objects of the patch that become part of the result are copies.
func mergeDecoded(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = make(map[string]any, len(p))
	}
	for name, v := range p {
		if v == nil {
			delete(t, name)
			continue
		}
		t[name] = mergeDecoded(t[name], v)
	}
	return t
}

// appendKey appends an object member's key and colon, after a comma unless
// it is the first member of the object opened at dst[open-1].
func appendKey(dst []byte, open int, k []byte) []byte {
	if len(dst) > open {
		dst = append(dst, ',')
	}
	dst = append(dst, k...)
	return append(dst, ':')
}
