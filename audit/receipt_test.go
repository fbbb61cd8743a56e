package audit

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

// TestAppendReceipt: the receipt is signed for the index the record gets,
// stored whole in the record (longer than MaxDetailValueLen), and verified
// by VerifyExportDir; a signer that fails, or signs for another index,
// appends nothing.
func TestAppendReceipt(t *testing.T) {
	s, vkey := testKey(t, testOrigin)
	l := MustOpenLog(t, withSigner(s, vkey), withInterval(time.Hour))
	ctx := context.Background()
	mustAppend(t, l, rec("acme", ActionTenantCreate))
	mustAppend(t, l, rec("globex", ActionTenantCreate))
	ids := make([]uint32, 100) // a receipt of many key ids is long
	for i := range ids {
		ids[i] = uint32(1000000 + i)
	}
	shred := Record{Principal: PrincipalAdmin, Tenant: "acme", Action: ActionTenantShred, Outcome: OutcomeOK, KeyIDs: ids, Details: map[string]string{"events": "3"}}
	var signedFor []uint64
	sign := func(index uint64) ([]byte, error) {
		signedFor = append(signedFor, index)
		return SignReceipt(receiptBody("acme", ids, index), s)
	}
	got, err := l.AppendReceipt(ctx, shred, sign)
	if err != nil {
		t.Fatalf("AppendReceipt = %v", err)
	}
	if !reflect.DeepEqual(signedFor, []uint64{2}) || got.Index != 2 {
		t.Fatalf("AppendReceipt signed for %v and appended record %d, want 2 and 2", signedFor, got.Index)
	}
	receipt := got.Details[DetailReceipt]
	if len(receipt) <= MaxDetailValueLen || got.Details["events"] != "3" {
		t.Errorf("AppendReceipt stored details %v, want the whole receipt (%d bytes) next to the others", got.Details, len(receipt))
	}
	if r, err := OpenReceipt([]byte(receipt), vkey); err != nil || r.AuditIndex != 2 || r.Tenant != "acme" || !reflect.DeepEqual(r.KeyIDs, ids) {
		t.Errorf("OpenReceipt(stored receipt) = %+v, %v", r, err)
	}
	if shred.Details[DetailReceipt] != "" {
		t.Error("AppendReceipt changed the caller's Details map")
	}

	bad := []struct {
		name string
		sign func(uint64) ([]byte, error)
	}{
		{"signer fails", func(uint64) ([]byte, error) { return nil, errors.New("no key") }},
		{"signed for the next index", func(i uint64) ([]byte, error) { return SignReceipt(receiptBody("acme", ids, i+1), s) }},
		{"signed for another tenant", func(i uint64) ([]byte, error) { return SignReceipt(receiptBody("globex", ids, i), s) }},
	}
	for _, tt := range bad {
		if _, err := l.AppendReceipt(ctx, shred, tt.sign); err == nil {
			t.Errorf("AppendReceipt(%s) = nil, want an error", tt.name)
		}
	}
	forged := shred
	forged.Details = map[string]string{DetailReceipt: receipt}
	if _, err := l.Append(ctx, forged); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("Append(a record with a receipt detail) = %v, want EINVALID: receipts come only through AppendReceipt", err)
	}
	if n := l.Size(); n != 3 {
		t.Errorf("Size() = %d after refused receipts, want 3", n)
	}
	mustAppend(t, l, rec("globex", ActionStreamRead)) // the log goes on
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	signed, _, _, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyExportDir(ctx, l.dir, signed, vkey)
	if err != nil || rep.Receipts != 1 || rep.Verified() != 4 || rep.Unverified() != 0 {
		t.Errorf("VerifyExportDir = %+v, %v; want 4 records and 1 receipt verified", rep, err)
	}
}

// TestReceiptIsNeverACheckpoint: the type prefix is not a key name, so the
// one key's receipts and checkpoints cannot stand for each other.
func TestReceiptIsNeverACheckpoint(t *testing.T) {
	if checkOrigin(ReceiptHeader) == nil {
		t.Fatalf("ReceiptHeader %q is a valid origin", ReceiptHeader)
	}
	s, vkey := testKey(t, testOrigin)
	receipt, err := SignReceipt(receiptBody("acme", []uint32{1}, 5), s)
	if err != nil {
		t.Fatal(err)
	}
	var bc *BadCheckpointError
	if _, err := OpenCheckpoint(receipt, vkey); !errors.As(err, &bc) {
		t.Errorf("OpenCheckpoint(receipt) = %v, want *BadCheckpointError", err)
	}
	cp := mustSignCheckpoint(t, Checkpoint{Origin: testOrigin, Size: 1, Root: LeafHash([]byte("x"))}, s)
	var br *BadReceiptError
	if _, err := OpenReceipt(cp, vkey); !errors.As(err, &br) {
		t.Errorf("OpenReceipt(checkpoint) = %v, want *BadReceiptError", err)
	}
}

func TestSignReceiptRefusesBadBodies(t *testing.T) {
	s, _ := testKey(t, testOrigin)
	for _, body := range []string{
		`{"tenant":"acme","key_ids_destroyed":[1]}`,                               // no audit_index
		`{"tenant":"acme","key_ids_destroyed":[1],"audit_index":1}` + "\n" + `{}`, // two lines
		`{"tenant":"acme","tenant":"x","key_ids_destroyed":[1],"audit_index":1}`,  // a name twice
		`{"tenant":"acme","key_ids_destroyed":[1],"audit_index":1.5}`,             // not an index
		`["tenant","acme"]`, // not an object
		`{"tenant":"acme\udc00","key_ids_destroyed":[1],"audit_index":1}`, // lone surrogate
	} {
		if _, err := SignReceipt([]byte(body), s); err == nil {
			t.Errorf("SignReceipt(%q) = nil, want an error", body)
		}
	}
}

// FuzzParseVerifiable: ParseVerifiable never panics, reads every record
// ParseRecord accepts the same way, and accepts only a JSON object with an
// index and a prev.
func FuzzParseVerifiable(f *testing.F) {
	lines := strings.Split(strings.TrimSpace(string(mustRead(f, filepath.Join(exportDir, "log.jsonl")))), "\n")
	for _, l := range lines {
		f.Add([]byte(l))
	}
	for _, name := range []string{"ok_unknown-fields", "ok_non-canonical-encoding", "at-1_duplicate-member", "at-1_lone-surrogate", "at-1_index-as-float"} {
		ls := strings.Split(string(mustRead(f, filepath.Join(exportDir, "records", name+".jsonl"))), "\n")
		f.Add([]byte(ls[1]))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseVerifiable(line)
		if strict, serr := ParseRecord(line); serr == nil {
			if err != nil || !reflect.DeepEqual(r, strict) {
				t.Fatalf("ParseRecord(%q) = %+v, ParseVerifiable = %+v, %v", line, strict, r, err)
			}
		}
		if err != nil {
			return
		}
		top, merr := checkMembers(line)
		if merr != nil || top["index"] == nil || top["prev"] == nil {
			t.Fatalf("ParseVerifiable accepted %q without an index and a prev", line)
		}
	})
}
