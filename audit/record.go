package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tenantvault/tenantvault/events"
)

// Record is one audit record: metadata about one action, never its payload.
// Index, Time and Prev are filled by Append; the canonical JSON encoding of a
// Record (see the package documentation) is what is stored and hashed.
type Record struct {
	Index     uint64            `json:"index"`
	Time      time.Time         `json:"time"`             // UTC; set by Append if zero
	Principal Principal         `json:"principal"`        // PrincipalAdmin, PrincipalTenant(id), PrincipalIngest, ...
	Tenant    string            `json:"tenant,omitempty"` // the tenant the action touched; invalid ids are stored quoted
	Action    Action            `json:"action"`           // e.g. ActionTenantCreate, ActionStreamRead
	Resource  string            `json:"resource,omitempty"`
	KeyIDs    []uint32          `json:"key_ids,omitempty"`
	Outcome   Outcome           `json:"outcome"` // OutcomeOK, OutcomeDenied, OutcomeError, OutcomeRejected
	Flagged   bool              `json:"flagged,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Count     int               `json:"count,omitempty"` // e.g. events in an ingest batch
	Details   map[string]string `json:"details,omitempty"`
	Prev      string            `json:"prev"` // hex LeafHash of the previous record's canonical bytes; "" for index 0
}

// Limits applied by Append. Longer values are truncated (at a UTF-8
// boundary), never rejected: an audit record is not dropped for being long.
const (
	MaxPrincipalLen       = 256
	MaxActionLen          = 128
	MaxOutcomeLen         = 32
	MaxResourceLen        = 1024
	MaxReasonLen          = 1024
	MaxKeyIDs             = 1024
	MaxDetails            = 32 // entries; the first MaxDetails keys in sorted order are kept
	MaxDetailKeyLen       = 64
	MaxDetailValueLen     = 512
	MaxInvalidTenantRunes = 64

	// maxLineBytes bounds one stored line; normalized records stay well
	// below it, so anything longer on disk is corruption.
	maxLineBytes = 1 << 20
)

// HashSize is the size of a leaf hash.
const HashSize = sha256.Size

// LeafHash returns the RFC 6962 leaf hash of a record's canonical bytes:
// SHA-256(0x00 || leaf). The next record's Prev is its hex encoding.
func LeafHash(leaf []byte) [HashSize]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	var out [HashSize]byte
	h.Sum(out[:0])
	return out
}

// MarshalRecord returns the canonical bytes of r (without the trailing
// newline): the bytes stored, hashed into the chain and used as the Merkle
// leaf. It fails for a time outside the years 0 to 9999.
func MarshalRecord(r Record) ([]byte, error) { return json.Marshal(r) }

// ParseRecord decodes one stored line (without its newline) and checks that
// it is canonical: re-encoding the decoded record must give back exactly
// line, the time must be UTC and Prev must be empty or 64 lowercase hex
// digits. It does not check Index or Prev against a position in the log.
func ParseRecord(line []byte) (Record, error) {
	if len(line) > maxLineBytes {
		return Record{}, fmt.Errorf("record is %d bytes, over the limit of %d", len(line), maxLineBytes)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("record is not valid JSON: %s", jsonErrorKind(err))
	}
	if r.Time.Location() != time.UTC {
		return Record{}, fmt.Errorf("record time is not UTC")
	}
	if r.Prev != "" && !isLowerHex(r.Prev, 2*HashSize) {
		return Record{}, fmt.Errorf("record prev is not a hex SHA-256")
	}
	canon, err := MarshalRecord(r)
	if err != nil {
		return Record{}, fmt.Errorf("re-encode record: %w", err)
	}
	if !bytes.Equal(canon, line) {
		return Record{}, fmt.Errorf("record is not in canonical encoding")
	}
	return r, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// jsonErrorKind describes a JSON error without quoting the input.
func jsonErrorKind(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("wrong type for field %.40q", e.Field)
	default:
		return "malformed value"
	}
}

// normalize returns the record Append will store: a deep copy of r with
// Index and Prev cleared, Time in UTC, strings bounded and valid UTF-8, an
// invalid tenant quoted. It fails, with an *events.Error of code EINVALID,
// only for a record that is a caller bug: no Action, an unknown Outcome, a
// Details[DetailReceipt] (only AppendReceipt adds one), or a time that
// cannot be encoded.
func normalize(r Record) (Record, error) {
	if r.Action == "" {
		return Record{}, events.Errorf(events.EINVALID, "audit record without action")
	}
	if !r.Outcome.valid() {
		return Record{}, events.Errorf(events.EINVALID, "audit record outcome %.40q is not one of ok, denied, error, rejected", r.Outcome)
	}
	if _, ok := r.Details[DetailReceipt]; ok { // only AppendReceipt stores one, signed for the record
		return Record{}, events.Errorf(events.EINVALID, "audit record with a %q detail: use AppendReceipt", DetailReceipt)
	}
	if y := r.Time.UTC().Year(); !r.Time.IsZero() && (y < 0 || y > 9999) {
		return Record{}, events.Errorf(events.EINVALID, "audit record time is outside the years 0 to 9999")
	}
	out := Record{
		Time:      r.Time,
		Principal: Principal(clean(string(r.Principal), MaxPrincipalLen)),
		Tenant:    NormalizeTenant(r.Tenant),
		Action:    Action(clean(string(r.Action), MaxActionLen)),
		Resource:  clean(r.Resource, MaxResourceLen),
		Outcome:   r.Outcome,
		Flagged:   r.Flagged,
		Reason:    clean(r.Reason, MaxReasonLen),
		Count:     r.Count,
	}
	if !out.Time.IsZero() {
		out.Time = out.Time.UTC() // also strips the monotonic reading
	}
	if len(r.KeyIDs) > 0 {
		out.KeyIDs = slices.Clone(r.KeyIDs[:min(len(r.KeyIDs), MaxKeyIDs)])
	}
	if len(r.Details) > 0 {
		keys := slices.Sorted(maps.Keys(r.Details))
		out.Details = make(map[string]string, min(len(keys), MaxDetails))
		for _, k := range keys {
			if len(out.Details) == MaxDetails {
				break
			}
			ck := clean(k, MaxDetailKeyLen)
			if _, dup := out.Details[ck]; dup { // two long keys with one prefix: keep the first
				continue
			}
			out.Details[ck] = clean(r.Details[k], MaxDetailValueLen)
		}
	}
	return out, nil
}

// NormalizeTenant returns the form in which a Tenant value is stored: a valid
// tenant id as is, anything else quoted and escaped to ASCII (Go %+q, at most
// MaxInvalidTenantRunes runes of it). It is idempotent: a stored value
// normalizes to itself (so a raw value that already has exactly that quoted
// form is stored as it is). Filter.Tenant is normalized the same way, so a
// List for either the raw hostile value or its stored form finds the records
// that carry it.
func NormalizeTenant(s string) string {
	if s == "" {
		return ""
	}
	if _, err := events.ParseTenantID(s); err == nil {
		return s
	}
	if s[0] == '"' {
		if u, err := strconv.Unquote(s); err == nil && quoteTenant(u) == s {
			return s
		}
	}
	return quoteTenant(s)
}

func quoteTenant(s string) string { return fmt.Sprintf("%+.*q", MaxInvalidTenantRunes, s) }

// clean forces s to valid UTF-8 and cuts it to at most n bytes at a rune
// boundary.
func clean(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// cloneRecord returns a copy of r that shares no slice or map with it.
func cloneRecord(r Record) Record {
	r.KeyIDs = slices.Clone(r.KeyIDs)
	r.Details = maps.Clone(r.Details)
	return r
}

// InconsistentError reports a record that breaks the log's chain: it carries
// the evidence. At is the index of the first record that does not verify.
// A record that does not parse, is not canonical, or sits at the wrong
// position (a deleted, inserted or reordered line) is named itself; a record
// that parses but was altered is named through its successor, whose Prev no
// longer matches (At is then the successor's index, Want the hash of the
// record found at At-1 and Got the Prev stored at At). Against a checkpoint,
// records that chain correctly but do not hash to its root are named at the
// last record it covers (Size-1: provably not the record signed; records
// before it may have been rewritten too, their chain recomputed), and a log
// that ends before the checkpoint's size at the first missing index.
type InconsistentError struct {
	At   uint64 // index (position in the log) of the first record that does not verify
	Want string // what the chain requires there
	Got  string // what was found; never raw record bytes
	File string // segment file name, if known ("" for a stream of records)
	// Line is the 1-based line number of the record in File (or in the
	// stream), 0 if unknown.
	Line int64
	// Offset is the byte offset of the record in File (or in the stream),
	// or -1 if unknown.
	Offset int64
}

func (e *InconsistentError) Error() string {
	loc := ""
	switch {
	case e.File != "" && e.Line > 0:
		loc = fmt.Sprintf(" (%s line %d, byte %d)", e.File, e.Line, e.Offset)
	case e.File != "":
		loc = fmt.Sprintf(" (%s at byte %d)", e.File, e.Offset)
	case e.Line > 0:
		loc = fmt.Sprintf(" (line %d, byte %d)", e.Line, e.Offset)
	}
	return fmt.Sprintf("audit log inconsistent at record %d%s: want %s, got %s", e.At, loc, e.Want, e.Got)
}
