package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
)

// Output formats of -o, as kubectl names them.
const (
	outputJSON  = "json"
	outputYAML  = "yaml"
	outputTable = "table"
)

// printBody writes the server's answer b in format: json is the server's
// own bytes, indented (json.Indent: key order and number literals are
// kept as sent); yaml and table are derived from the same tokens, never
// from a decoded any.
func printBody(w io.Writer, format string, b []byte) error {
	switch format {
	case "", outputJSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(b), "", "  "); err != nil {
			return fmt.Errorf("the server's answer is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	case outputYAML, outputTable:
		n, err := parseNode(b)
		if err != nil {
			return fmt.Errorf("the server's answer is not JSON: %w", err)
		}
		var buf bytes.Buffer
		if format == outputYAML {
			writeYAML(&buf, n, 0)
		} else {
			writeTable(&buf, n)
		}
		_, err = w.Write(buf.Bytes())
		return err
	}
	return fmt.Errorf("-o %q: want json, yaml or table", format)
}

// node is a JSON value as it was sent: objects keep their key order,
// numbers their literal.
type node struct {
	kind byte   // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	lit  string // strings: the decoded text; numbers, bools: the literal
	keys []string
	vals []*node
}

func parseNode(b []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := readNode(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return n, nil
}

func readNode(dec *json.Decoder) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &node{kind: 'a'}
		if v == '{' {
			n.kind = 'o'
		}
		for dec.More() {
			if n.kind == 'o' {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, k.(string))
			}
			c, err := readNode(dec)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, c)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &node{kind: 's', lit: v}, nil
	case json.Number:
		return &node{kind: 'n', lit: v.String()}, nil
	case bool:
		if v {
			return &node{kind: 'b', lit: "true"}, nil
		}
		return &node{kind: 'b', lit: "false"}, nil
	case nil:
		return &node{kind: 'z'}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func (n *node) scalar() bool { return n.kind != 'o' && n.kind != 'a' }

// compact writes n back as compact JSON, numbers as they were sent.
func (n *node) compact(b *bytes.Buffer) {
	switch n.kind {
	case 'o', 'a':
		open, end := byte('['), byte(']')
		if n.kind == 'o' {
			open, end = '{', '}'
		}
		b.WriteByte(open)
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			if n.kind == 'o' {
				b.WriteString(quoteJSON(n.keys[i]))
				b.WriteByte(':')
			}
			v.compact(b)
		}
		b.WriteByte(end)
	case 's':
		b.WriteString(quoteJSON(n.lit))
	case 'z':
		b.WriteString("null")
	default:
		b.WriteString(n.lit)
	}
}

func quoteJSON(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// plainYAML are the strings YAML reads back as the same string without
// quotes: no indicator first, nothing a YAML 1.1 or 1.2 parser resolves to
// a bool, null or number.
var plainYAML = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_./@+-]*$`)

func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "true", "false", "on", "off", "null":
		return quoteJSON(s)
	}
	if plainYAML.MatchString(s) {
		return s
	}
	return quoteJSON(s) // a JSON string is a YAML double-quoted scalar
}

func yamlScalar(n *node) string {
	switch n.kind {
	case 's':
		return yamlString(n.lit)
	case 'z':
		return "null"
	case 'o':
		return "{}"
	case 'a':
		return "[]"
	}
	return n.lit
}

// writeYAML writes n as block YAML at indent spaces, kubectl's layout.
func writeYAML(b *bytes.Buffer, n *node, indent int) {
	if n.scalar() || len(n.vals) == 0 {
		b.WriteString(yamlScalar(n))
		b.WriteByte('\n')
		return
	}
	writeYAMLBlock(b, n, indent, false)
}

// writeYAMLBlock writes a non-empty object or array; inline means its first
// line continues a "- " already written.
func writeYAMLBlock(b *bytes.Buffer, n *node, indent int, inline bool) {
	pad := strings.Repeat(" ", indent)
	for i, v := range n.vals {
		if i > 0 || !inline {
			b.WriteString(pad)
		}
		if n.kind == 'o' {
			b.WriteString(yamlString(n.keys[i]))
			b.WriteByte(':')
			if v.scalar() || len(v.vals) == 0 {
				b.WriteString(" " + yamlScalar(v) + "\n")
				continue
			}
			b.WriteByte('\n')
			if v.kind == 'a' {
				writeYAMLBlock(b, v, indent, false) // kubectl: a list under a key is not indented
			} else {
				writeYAMLBlock(b, v, indent+2, false)
			}
			continue
		}
		b.WriteString("-")
		if v.scalar() || len(v.vals) == 0 {
			b.WriteString(" " + yamlScalar(v) + "\n")
			continue
		}
		b.WriteByte(' ')
		writeYAMLBlock(b, v, indent+2, true)
	}
}

// writeTable writes n as kubectl's table: the first list of objects in it
// (the answer itself, or a field of it like "tenants" or "events") one row
// per item, a column per field; any other answer as FIELD VALUE rows.
func writeTable(b *bytes.Buffer, n *node) {
	tw := tabwriter.NewWriter(b, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	if rows, ok := tableRows(n); ok {
		if len(rows) == 0 {
			fmt.Fprintln(tw, "No resources found.")
			return
		}
		var cols []string
		seen := map[string]bool{}
		for _, r := range rows {
			for _, k := range r.keys {
				if !seen[k] {
					seen[k] = true
					cols = append(cols, k)
				}
			}
		}
		head := make([]string, len(cols))
		for i, c := range cols {
			head[i] = strings.ToUpper(c)
		}
		fmt.Fprintln(tw, strings.Join(head, "\t"))
		for _, r := range rows {
			cells := make([]string, len(cols))
			for i, c := range cols {
				cells[i] = "<none>"
				for j, k := range r.keys {
					if k == c {
						cells[i] = cell(r.vals[j])
					}
				}
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		return
	}
	if n.kind != 'o' {
		fmt.Fprintln(tw, cell(n))
		return
	}
	fmt.Fprintln(tw, "FIELD\tVALUE")
	for i, k := range n.keys {
		fmt.Fprintf(tw, "%s\t%s\n", cell(&node{kind: 's', lit: k}), cell(n.vals[i]))
	}
}

// tableRows finds the list of objects a table shows.
func tableRows(n *node) ([]*node, bool) {
	objects := func(a *node) bool {
		for _, v := range a.vals {
			if v.kind != 'o' {
				return false
			}
		}
		return true
	}
	if n.kind == 'a' && objects(n) {
		return n.vals, true
	}
	if n.kind == 'o' {
		for _, v := range n.vals {
			if v.kind == 'a' && objects(v) {
				return v.vals, true
			}
		}
	}
	return nil, false
}

// cell is a value on one table line: strings as they are (control
// characters escaped), numbers as sent, anything nested as compact JSON.
func cell(n *node) string {
	switch n.kind {
	case 's':
		if strings.ContainsFunc(n.lit, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return quoteJSON(n.lit)
		}
		if n.lit == "" {
			return `""`
		}
		return n.lit
	case 'z':
		return "<none>"
	case 'o', 'a':
		var b bytes.Buffer
		n.compact(&b)
		return b.String()
	}
	return n.lit
}
