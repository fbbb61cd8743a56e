package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// ParseVerifiable decodes one line of a log as a verifier of an export
// reads it (VERIFYING.md, "Reading a record"): what it checks is what any
// verifier built from that page can check, so that every verifier reads
// the same record from the same bytes. Unlike ParseRecord it does not
// require the canonical encoding (the hashes commit to the bytes, whatever
// their encoding) and it ignores unknown fields (later versions may add
// optional ones). It refuses what could read differently in two JSON
// parsers or is not a record:
//
//   - bytes that are not UTF-8, or a \u escape of a lone UTF-16 surrogate;
//   - anything but one JSON object nested at most 32 levels deep, or an
//     object (at any depth) with two members of the same name;
//   - no "index" member, or one that is not an integer in plain decimal
//     (digits only: no sign, fraction or exponent);
//   - no "prev" member, or one that is not "" or 64 lowercase hex digits;
//   - a known field (Record's) of the wrong JSON type, or a time that is
//     not RFC 3339.
func ParseVerifiable(line []byte) (Record, error) {
	if len(line) > maxLineBytes {
		return Record{}, fmt.Errorf("record is %d bytes, over the limit of %d", len(line), maxLineBytes)
	}
	if !utf8.Valid(line) {
		return Record{}, errors.New("record is not valid UTF-8")
	}
	if err := checkSurrogates(line); err != nil {
		return Record{}, err
	}
	top, err := checkMembers(line)
	if err != nil {
		return Record{}, err
	}
	idx, ok := top["index"]
	if !ok {
		return Record{}, errors.New(`record has no "index"`)
	}
	if !isPlainDecimal(idx) {
		return Record{}, errors.New(`record "index" is not an integer in plain decimal`)
	}
	if _, err := strconv.ParseUint(string(idx), 10, 64); err != nil {
		return Record{}, errors.New(`record "index" is out of range`)
	}
	prev, ok := top["prev"]
	if !ok {
		return Record{}, errors.New(`record has no "prev"`)
	}
	if len(prev) == 0 || prev[0] != '"' {
		return Record{}, errors.New(`record "prev" is not a string`)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("record is not valid JSON: %s", jsonErrorKind(err))
	}
	if r.Prev != "" && !isLowerHex(r.Prev, 2*HashSize) {
		return Record{}, errors.New("record prev is not a hex SHA-256")
	}
	return r, nil
}

// isPlainDecimal reports whether a JSON number token is digits only with
// no leading zero (JSON forbids those anyway).
func isPlainDecimal(tok []byte) bool {
	if len(tok) == 0 || (len(tok) > 1 && tok[0] == '0') {
		return false
	}
	for _, c := range tok {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkSurrogates refuses a \u escape of a lone surrogate: Go decodes it as
// U+FFFD, other parsers keep it or fail, so the record would read
// differently. A backslash occurs only inside strings in valid JSON (the
// JSON parser rejects it elsewhere), so a scan of the bytes suffices.
func checkSurrogates(b []byte) error {
	bad := errors.New(`record holds a \u escape of a lone UTF-16 surrogate`)
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) {
			return nil // a syntax error, reported by the parser
		}
		if b[i+1] != 'u' {
			i++ // a two-byte escape, \\ included
			continue
		}
		u, ok := hex4(b, i+2)
		if !ok {
			return nil // a syntax error
		}
		switch {
		case u >= 0xDC00 && u <= 0xDFFF:
			return bad
		case u >= 0xD800 && u <= 0xDBFF:
			lo, ok := uint32(0), i+8 < len(b) && b[i+6] == '\\' && b[i+7] == 'u'
			if ok {
				lo, ok = hex4(b, i+8)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return bad
			}
			i += 11
		default:
			i += 5
		}
	}
	return nil
}

func hex4(b []byte, at int) (uint32, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	return uint32(v), err == nil
}

// checkMembers walks the JSON value in b, which must be one object, and
// refuses an object (at any depth) with two members of one name (after
// unescaping, as every parser compares them). It returns the raw tokens of
// the top-level members whose values are scalars (strings with quotes).
func checkMembers(b []byte) (map[string][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("record is not a JSON object")
	}
	top := map[string][]byte{}
	if err := walkObject(dec, b, top, 1); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("record has data after its JSON object")
	}
	return top, nil
}

const maxDepth = 32

// walkObject reads the members of an object whose '{' was just read. With
// top set it records the raw bytes of scalar member values.
func walkObject(dec *json.Decoder, b []byte, top map[string][]byte, depth int) error {
	if depth > maxDepth {
		return errors.New("record nests too deep")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("record is not valid JSON: %s", jsonErrorKind(err))
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("record has two members named %.40q", name)
		}
		seen[name] = true
		start := dec.InputOffset()
		if err := walkValue(dec, b, depth); err != nil {
			return err
		}
		if top != nil {
			top[name] = bytes.TrimLeft(b[start:dec.InputOffset()], " \t\r\n:")
		}
	}
	if _, err := dec.Token(); err != nil { // the '}'
		return fmt.Errorf("record is not valid JSON: %s", jsonErrorKind(err))
	}
	return nil
}

func walkValue(dec *json.Decoder, b []byte, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("record is not valid JSON: %s", jsonErrorKind(err))
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, b, nil, depth+1)
	case json.Delim('['):
		if depth+1 > maxDepth {
			return errors.New("record nests too deep")
		}
		for dec.More() {
			if err := walkValue(dec, b, depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	return nil
}
