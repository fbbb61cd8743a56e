package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// ReceiptHeader is the first line of the text of every shred receipt: a
// signed type prefix. It holds spaces, which a note key name (and so a
// checkpoint's origin, its first line) never does: the log's key signs
// both checkpoints and receipts, and neither can be taken for the other.
const ReceiptHeader = "tenantvault shred-receipt v1"

// DetailReceipt is the Details key of a tenant.shred record that holds the
// shred's signed receipt (see Log.AppendReceipt and VERIFYING.md).
const DetailReceipt = "receipt"

// MaxReceiptBytes bounds a signed receipt accepted by OpenReceipt.
const MaxReceiptBytes = 64 << 10

// Receipt is what a verifier reads from a shred receipt: the members of its
// JSON body that VERIFYING.md asks it to check. The body has more (times,
// counts, the operator); they are signed but need not be parsed.
type Receipt struct {
	Tenant     string   `json:"tenant"`
	KeyIDs     []uint32 `json:"key_ids_destroyed"`
	AuditIndex uint64   `json:"audit_index"`
}

// SignReceipt returns a shred receipt, a signed note by s whose text is
// ReceiptHeader, a newline, body (one line of JSON: an object with at
// least "tenant", "key_ids_destroyed" and "audit_index") and a newline.
func SignReceipt(body []byte, s note.Signer) ([]byte, error) {
	if bytes.ContainsAny(body, "\r\n") {
		return nil, errors.New("audit: receipt body is not one line")
	}
	if _, err := parseReceiptBody(body); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return note.Sign(&note.Note{Text: ReceiptHeader + "\n" + string(body) + "\n"}, s)
}

// BadReceiptError reports a shred receipt that does not verify: not a
// receipt signed by the log's key, or one that does not match the record
// that holds it (At, its index; Reason says what differs).
type BadReceiptError struct {
	At     uint64 // the index of the record that holds it
	Reason string
	Err    error // the underlying error, if any
}

func (e *BadReceiptError) Error() string {
	return fmt.Sprintf("audit shred receipt in record %d rejected: %s", e.At, e.Reason)
}

func (e *BadReceiptError) Unwrap() error { return e.Err }

// OpenReceipt verifies a signed shred receipt with verifierKey and returns
// what it claims. It must be a signed note with a valid signature by that
// key (every signature line of that key must verify) whose text is
// ReceiptHeader and one line of JSON with the members of Receipt, with no
// member name twice. It does not check the receipt against the log: see
// VerifyExport for that. Errors are *BadReceiptError (At 0), or an
// *events.Error with code EINVALID for a malformed verifierKey.
func OpenReceipt(signed []byte, verifierKey string) (Receipt, error) {
	v, err := newVerifier(verifierKey)
	if err != nil {
		return Receipt{}, err
	}
	r, reason, err := openReceipt(signed, v)
	if reason != "" {
		return Receipt{}, &BadReceiptError{Reason: reason, Err: err}
	}
	return r, nil
}

// openReceipt returns the receipt, or why it is refused.
func openReceipt(signed []byte, v note.Verifier) (Receipt, string, error) {
	if len(signed) > MaxReceiptBytes {
		return Receipt{}, fmt.Sprintf("%d bytes, over the limit of %d", len(signed), MaxReceiptBytes), nil
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Receipt{}, "not signed by the log's key: " + noteError(err, v), err
	}
	if err := checkEverySignature(signed, n.Text, v); err != nil {
		return Receipt{}, err.Error(), err
	}
	body, ok := strings.CutPrefix(n.Text, ReceiptHeader+"\n")
	if !ok {
		return Receipt{}, fmt.Sprintf("its text does not start with the line %q (a checkpoint, or another kind of note)", ReceiptHeader), nil
	}
	body, ok = strings.CutSuffix(body, "\n")
	if !ok || strings.Contains(body, "\n") {
		return Receipt{}, "its text is not the header and one line of JSON", nil
	}
	r, err := parseReceiptBody([]byte(body))
	if err != nil {
		return Receipt{}, err.Error(), err
	}
	return r, "", nil
}

// parseReceiptBody reads the members of Receipt from a receipt's JSON, as
// strictly as ParseVerifiable reads a record.
func parseReceiptBody(body []byte) (Receipt, error) {
	if err := checkSurrogates(body); err != nil {
		return Receipt{}, errors.New("receipt body holds a \\u escape of a lone surrogate")
	}
	top, err := checkMembers(body)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt body: %s", strings.TrimPrefix(err.Error(), "record "))
	}
	for _, m := range []string{"tenant", "key_ids_destroyed", "audit_index"} {
		if _, ok := top[m]; !ok {
			return Receipt{}, fmt.Errorf("receipt body has no %q", m)
		}
	}
	if !isPlainDecimal(top["audit_index"]) {
		return Receipt{}, errors.New(`receipt "audit_index" is not an integer in plain decimal`)
	}
	var r Receipt
	if err := json.Unmarshal(body, &r); err != nil {
		return Receipt{}, fmt.Errorf("receipt body is not valid JSON: %s", jsonErrorKind(err))
	}
	return r, nil
}

// checkReceipt checks the receipt a record holds, if any: it must be a
// tenant.shred record with outcome ok, and its receipt must verify with v
// and name the record's tenant, key ids and index. It returns whether the
// record held one.
func checkReceipt(rec Record, v note.Verifier) (bool, error) {
	signed := rec.Details[DetailReceipt]
	if signed == "" { // absent, or empty as vaults without a signer once wrote it
		return false, nil
	}
	bad := func(format string, args ...any) error {
		return &BadReceiptError{At: rec.Index, Reason: fmt.Sprintf(format, args...)}
	}
	if rec.Action != ActionTenantShred || rec.Outcome != OutcomeOK {
		return true, bad("a receipt in a %.40q record with outcome %.20q, not a tenant.shred ok record", rec.Action, rec.Outcome)
	}
	r, reason, err := openReceipt([]byte(signed), v)
	if reason != "" {
		return true, &BadReceiptError{At: rec.Index, Reason: reason, Err: err}
	}
	switch {
	case r.AuditIndex != rec.Index:
		return true, bad("it was signed for record %d", r.AuditIndex)
	case r.Tenant != rec.Tenant:
		return true, bad("it names tenant %.80q, the record %.80q", r.Tenant, rec.Tenant)
	case !slices.Equal(r.KeyIDs, rec.KeyIDs):
		return true, bad("it names key ids %v, the record %v", r.KeyIDs, rec.KeyIDs)
	}
	return true, nil
}

// checkEverySignature checks every signature line of v's key in a note
// that note.Open accepted: note.Open verifies only the first of several
// by one key, and VERIFYING.md says any that fails rejects the note.
func checkEverySignature(signed []byte, text string, v note.Verifier) error {
	sigs := signed[len(text)+1:]
	for len(sigs) > 0 {
		line, rest, _ := bytes.Cut(sigs, []byte("\n"))
		sigs = rest
		name, b64, _ := strings.Cut(strings.TrimPrefix(string(line), "— "), " ")
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) < 5 {
			return errors.New("a malformed signature line")
		}
		if name != v.Name() || binary.BigEndian.Uint32(sig) != v.KeyHash() {
			continue
		}
		if !v.Verify([]byte(text), sig[4:]) {
			return fmt.Errorf("a second signature of %s+%08x does not verify", v.Name(), v.KeyHash())
		}
	}
	return nil
}

// noteError describes why note.Open refused a note, naming keys by name
// and hash only.
func noteError(err error, v note.Verifier) string {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &invalid):
		return fmt.Sprintf("the signature of %s+%08x does not verify", invalid.Name, invalid.Hash)
	case errors.As(err, &unverified):
		var by []string
		for _, s := range unverified.Note.UnverifiedSigs {
			by = append(by, fmt.Sprintf("%.80s+%08x", s.Name, s.Hash))
		}
		return fmt.Sprintf("no signature by %s+%08x (signed by %s)", v.Name(), v.KeyHash(), strings.Join(by, ", "))
	default:
		return "not a signed note: " + err.Error()
	}
}

// AppendReceipt appends r, a tenant.shred record, with a receipt signed for
// its place in the log: when the writer has given r its index, it calls
// sign with it and stores the signed receipt it returns (SignReceipt's
// output, whose audit_index must be that index) in Details[DetailReceipt],
// unbounded by MaxDetailValueLen. sign runs on the writer goroutine, so it
// must be quick and must not append to the log; if it fails, r is not
// appended and Append's error is its. Otherwise it is Append.
func (l *Log) AppendReceipt(ctx context.Context, r Record, sign func(index uint64) ([]byte, error)) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	rec, err := normalize(r)
	if err != nil {
		return Record{}, err
	}
	req := &request{rec: rec, done: make(chan result, 1), seal: func(rec *Record) error {
		signed, err := sign(rec.Index)
		if err != nil {
			return fmt.Errorf("audit: sign receipt of record %d: %w", rec.Index, err)
		}
		if l.verifier != nil {
			if _, err := checkReceipt(withReceipt(*rec, signed), l.verifier); err != nil {
				return fmt.Errorf("audit: the receipt signed for record %d does not verify: %w", rec.Index, err)
			}
		}
		*rec = withReceipt(*rec, signed)
		return nil
	}}
	if err := l.enqueue(ctx, req); err != nil {
		return Record{}, err
	}
	select {
	case res := <-req.done:
		return res.rec, res.err
	case <-ctx.Done():
		if req.state.CompareAndSwap(statePending, stateCancelled) {
			return Record{}, ctx.Err()
		}
		res := <-req.done // taken: the writer answers after one fsync
		return res.rec, res.err
	}
}

// withReceipt returns rec with signed in its Details, sharing no map with it.
func withReceipt(rec Record, signed []byte) Record {
	d := make(map[string]string, len(rec.Details)+1)
	maps.Copy(d, rec.Details)
	d[DetailReceipt] = string(signed)
	rec.Details = d
	return rec
}
