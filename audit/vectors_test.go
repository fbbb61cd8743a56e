package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// The vectors of VERIFYING.md's finer points, next to the export vectors
// (testdata/export):
//
//	unverified/past-N_*.jsonl  logs that verify against checkpoint.note with
//	                           N records past it (unverified; past-0: only a
//	                           torn last line past it)
//	receipts/log.jsonl         a log with two genuine shred receipts, and
//	receipts/checkpoint.note   its checkpoint
//	receipts/at-N_*.jsonl      forged receipts: each against its own
//	                           at-N_*.note (the log's key signed the forged
//	                           log, as a vault restarted on it does) fails
//	                           with *BadReceiptError at N
//	records/ok_*.jsonl         logs whose records a verifier must accept
//	                           (unknown fields, non-canonical encodings),
//	                           each with its own ok_*.note
//	records/at-N_*.jsonl       records a verifier must refuse, each with its
//	                           own at-N_*.note: *InconsistentError at N
//	checkpoints/ok_*.note      checkpoints of log.jsonl that must verify

// receiptBody is a receipt's JSON as the vault writes it (vault.Receipt).
func receiptBody(tenant string, keyIDs []uint32, index uint64) []byte {
	ids := make([]string, len(keyIDs))
	for i, id := range keyIDs {
		ids[i] = fmt.Sprint(id)
	}
	return fmt.Appendf(nil, `{"tenant":%q,"operator":"admin","started":"2025-03-14T15:09:40Z","unreadable":"2025-03-14T15:09:40.5Z","completed":"2025-03-14T15:09:41Z","key_ids_destroyed":[%s],"events":12,"streams":1,"quarantined":0,"destroy_keys_ns":250000,"audit_index":%d}`,
		tenant, strings.Join(ids, ","), index)
}

func mustSignReceipt(tb testing.TB, body []byte, s note.Signer) string {
	tb.Helper()
	b, err := SignReceipt(body, s)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// receiptRecords are the records of receipts/log.jsonl; receipts are added
// by the caller (they depend on the index).
func receiptRecords() []Record {
	at := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	return []Record{
		{Time: at, Principal: PrincipalAdmin, Tenant: "acme", Action: ActionTenantCreate, Outcome: OutcomeOK},
		{Time: at.Add(time.Second), Principal: PrincipalAdmin, Tenant: "globex", Action: ActionTenantCreate, Outcome: OutcomeOK},
		{Time: at.Add(15 * time.Second), Principal: PrincipalAdmin, Tenant: "acme", Action: ActionTenantShred, Resource: "tenants/acme", Outcome: OutcomeOK,
			KeyIDs: []uint32{1234567, 7654321}, Count: 12, Details: map[string]string{"events": "12"}},
		{Time: at.Add(16 * time.Second), Principal: PrincipalAdmin, Tenant: "globex", Action: ActionTenantShred, Resource: "tenants/globex", Outcome: OutcomeOK,
			KeyIDs: []uint32{2345678}, Count: 0, Details: map[string]string{"events": "0"}},
	}
}

// withReceipts returns recs with a genuine receipt in each tenant.shred
// record, signed by s for its index.
func withReceipts(tb testing.TB, recs []Record, s note.Signer) []Record {
	tb.Helper()
	out := make([]Record, len(recs))
	for i, r := range recs {
		r = cloneRecord(r)
		if r.Action == ActionTenantShred {
			r = withReceipt(r, []byte(mustSignReceipt(tb, receiptBody(r.Tenant, r.KeyIDs, uint64(i)), s)))
		}
		out[i] = r
	}
	return out
}

// rechainFrom recomputes the prev of every line after line k (those lines
// must be canonical; line k itself may be anything).
func rechainFrom(tb testing.TB, lines [][]byte, k int) [][]byte {
	tb.Helper()
	out := slices.Clone(lines)
	for i := k + 1; i < len(out); i++ {
		r, err := ParseRecord(out[i])
		if err != nil {
			tb.Fatal(err)
		}
		h := LeafHash(out[i-1])
		r.Prev = hex.EncodeToString(h[:])
		out[i] = mustMarshal(tb, r)
	}
	return out
}

// signOver returns the log key's checkpoint of all of lines.
func signOver(tb testing.TB, lines [][]byte, s note.Signer) []byte {
	tb.Helper()
	var tr tree
	for _, l := range lines {
		tr.append(LeafHash(l))
	}
	return mustSignCheckpoint(tb, Checkpoint{Origin: testOrigin, Size: tr.size, Root: tr.root()}, s)
}

// editLine returns lines with the first old in line i replaced by new.
func editLine(tb testing.TB, lines [][]byte, i int, old, new string) [][]byte {
	tb.Helper()
	if !bytes.Contains(lines[i], []byte(old)) {
		tb.Fatalf("line %d has no %q: %s", i, old, lines[i])
	}
	out := slices.Clone(lines)
	out[i] = bytes.Replace(out[i], []byte(old), []byte(new), 1)
	return out
}

// generateSpecVectors writes the vectors above (with -update). lines are
// log.jsonl's, good its checkpoint.
func generateSpecVectors(t *testing.T, lines [][]byte, good []byte) {
	signer, _ := exportKey(t, "log")
	other, _ := exportKey(t, "other")
	for _, d := range []string{"unverified", "receipts", "records"} {
		os.RemoveAll(filepath.Join(exportDir, d))
	}
	w := func(name string, b []byte) { mustWriteFile(t, filepath.Join(exportDir, name), b) }

	// Point 4: records past the checkpoint.
	forged := Record{Index: 7, Time: time.Date(2025, 3, 14, 15, 9, 33, 0, time.UTC), Principal: "tenant:acme", Tenant: "acme",
		Action: ActionStreamRead, Resource: "stream:9f86d081884c7d65", Outcome: OutcomeOK}
	h := LeafHash(lines[6])
	forged.Prev = hex.EncodeToString(h[:])
	past := append(slices.Clone(lines), mustMarshal(t, forged))
	w("unverified/past-1_forged-record-after-checkpoint.jsonl", joinLines(past))
	w("unverified/past-0_torn-line-after-checkpoint.jsonl", append(joinLines(lines), past[7][:50]...))

	// Point 5: receipts.
	recs := withReceipts(t, receiptRecords(), signer)
	rl := chainLines(t, recs)
	w("receipts/log.jsonl", joinLines(rl))
	w("receipts/checkpoint.note", signOver(t, rl, signer))
	forgedLog := func(name string, edit func(recs []Record)) {
		fr := make([]Record, len(recs))
		for i := range recs {
			fr[i] = cloneRecord(recs[i])
		}
		edit(fr)
		fl := chainLines(t, fr)
		w("receipts/"+name+".jsonl", joinLines(fl))
		w("receipts/"+name+".note", signOver(t, fl, signer))
	}
	acme := receiptBody("acme", []uint32{1234567, 7654321}, 2)
	setReceipt := func(i int, signed string) func([]Record) {
		return func(fr []Record) { fr[i] = withReceipt(fr[i], []byte(signed)) }
	}
	forgedLog("at-2_receipt-signed-by-another-key", setReceipt(2, mustSignReceipt(t, acme, other)))
	forgedLog("at-2_receipt-body-altered", setReceipt(2, strings.Replace(recs[2].Details[DetailReceipt], "1234567", "1234568", 1)))
	forgedLog("at-2_receipt-names-another-tenant", setReceipt(2, mustSignReceipt(t, receiptBody("globex", []uint32{1234567, 7654321}, 2), signer)))
	forgedLog("at-2_receipt-names-other-key-ids", setReceipt(2, mustSignReceipt(t, receiptBody("acme", []uint32{1234567}, 2), signer)))
	forgedLog("at-3_receipt-of-record-2-replayed", setReceipt(3, recs[2].Details[DetailReceipt]))
	forgedLog("at-2_key-id-removed-from-record", func(fr []Record) { fr[2].KeyIDs = fr[2].KeyIDs[:1] })
	forgedLog("at-2_checkpoint-as-receipt", setReceipt(2, string(good)))
	forgedLog("at-2_untyped-receipt", setReceipt(2, string(mustSignText(t, string(acme)+"\n", signer))))
	forgedLog("at-2_receipt-second-signature-fails", setReceipt(2, recs[2].Details[DetailReceipt]+
		strings.SplitAfter(string(corruptSignature(t, []byte(recs[2].Details[DetailReceipt]))), "\n\n")[1]))
	forgedLog("at-1_receipt-in-a-create-record", setReceipt(1, mustSignReceipt(t, receiptBody("globex", nil, 1), signer)))

	// Point 6: how a verifier reads a record. Each log is signed by the
	// log's key over its bytes, so only the reading of a record decides.
	rec := func(name string, ls [][]byte) {
		w("records/"+name+".jsonl", joinLines(ls))
		w("records/"+name+".note", signOver(t, ls, signer))
	}
	edited := func(i int, old, new string) [][]byte { return rechainFrom(t, editLine(t, lines, i, old, new), i) }
	rec("ok_unknown-fields", edited(1, `,"prev":`, `,"future":{"a":[1,2.5e3,null],"b":"x"},"also_new":true,"prev":`))
	rec("ok_non-canonical-encoding", edited(2, `"resource":"stream:9f86d081884c7d65",`,
		`"resource" : "\u0073tream:9f86d081884c7d65\u0008\b\u2028/",`))
	rec("at-1_duplicate-member", edited(1, `"outcome":"ok"`, `"outcome":"ok","outcome":"denied"`))
	rec("at-5_duplicate-member-in-details", edited(5, `"details":{"new_primary":"7654321"}`, `"details":{"new_primary":"7654321","new_primary":"1"}`))
	rec("at-1_lone-surrogate", edited(1, `"principal":"ingest"`, `"principal":"ingest\ud800"`))
	rec("at-1_not-utf8", edited(1, `"principal":"ingest"`, "\"principal\":\"ingest\xff\""))
	rec("at-1_index-as-float", edited(1, `"index":1,`, `"index":1.0,`))
	rec("at-1_index-with-exponent", edited(1, `"index":1,`, `"index":1e0,`))
	rec("at-1_index-as-string", edited(1, `"index":1,`, `"index":"1",`))
	rec("at-1_index-is-true", edited(1, `"index":1,`, `"index":true,`))
	rec("at-0_index-negative-zero", edited(0, `"index":0,`, `"index":-0,`))
	rec("at-1_index-missing", edited(1, `"index":1,`, ``))
	rec("at-1_prev-missing", edited(1, `,"prev":"367c74afa182a0d1ff33fabf3b84bae5511e399b8b2fc25c4d629ffccae5b3ae"`, ``))
	rec("at-1_prev-null", edited(1, `"prev":"367c74afa182a0d1ff33fabf3b84bae5511e399b8b2fc25c4d629ffccae5b3ae"`, `"prev":null`))
	rec("at-1_nan-in-unknown-field", edited(1, `,"prev":`, `,"x":NaN,"prev":`))
	rec("at-1_two-objects-on-a-line", edited(1, `}`, `}{}`))
	rec("ok_nested-32-levels", edited(1, `,"prev":`, `,"deep":`+strings.Repeat("[", 31)+strings.Repeat("]", 31)+`,"prev":`))
	rec("at-1_nested-33-levels", edited(1, `,"prev":`, `,"deep":`+strings.Repeat("[", 32)+strings.Repeat("]", 32)+`,"prev":`))

	// Signature lines.
	dup := strings.SplitAfter(string(good), "\n\n")[1]
	w("checkpoints/ok_signature-repeated.note", append(bytes.Clone(good), dup...))
	text, _ := noteText(good)
	witness, _ := exportKeyNamed(t, "witness", "witness.example/w1")
	cosig := strings.SplitAfter(string(mustSignText(t, string(text), witness)), "\n\n")[1]
	w("checkpoints/ok_cosigned-by-another-key.note", append(bytes.Clone(good), cosig...))
	w("checkpoints/bad_second-signature-fails.note", append(bytes.Clone(good), strings.SplitAfter(string(corruptSignature(t, good)), "\n\n")[1]...))
	w("checkpoints/bad_receipt-as-checkpoint.note", []byte(mustSignReceipt(t, acme, signer)))
}

// specVectors checks the vectors above and returns "name: outcome" lines
// for expected.txt.
func specVectors(t *testing.T, vkey string, good []byte) []string {
	ctx := context.Background()
	var out []string
	verdict := func(name string, rep Report, err error) {
		out = append(out, fmt.Sprintf("%s: %s", name, outcome(rep, err)))
	}
	verify := func(name string, log, cp []byte) (Report, error) {
		rep, err := VerifyExport(ctx, bytes.NewReader(log), cp, vkey)
		verdict(name, rep, err)
		dir := t.TempDir()
		mustWriteFile(t, filepath.Join(dir, segmentName(0)), log)
		drep, derr := VerifyExportDir(ctx, dir, cp, vkey)
		if !sameFailure(derr, err) || drep.Records != rep.Records || drep.Receipts != rep.Receipts {
			t.Errorf("%s: VerifyExportDir = %+v, %v; VerifyExport = %+v, %v", name, drep, derr, rep, err)
		}
		var seen []Record
		rrep, rerr := ReplayExport(ctx, bytes.NewReader(log), cp, vkey, func(r Record) error { seen = append(seen, r); return nil })
		if !sameFailure(rerr, err) || rrep.Unverified() != rep.Unverified() || (err == nil && uint64(len(seen)) != rep.Records) {
			t.Errorf("%s: ReplayExport = %+v, %v; VerifyExport = %+v, %v", name, rrep, rerr, rep, err)
		}
		return rep, err
	}
	glob := func(pattern string) []string {
		files, _ := filepath.Glob(filepath.Join(exportDir, pattern))
		if len(files) == 0 {
			t.Fatalf("no vectors %s", pattern)
		}
		return files
	}
	numbered := func(name, prefix string) uint64 {
		var n uint64
		if _, err := fmt.Sscanf(strings.TrimPrefix(name, prefix), "%d_", &n); err != nil {
			t.Fatalf("vector %s does not start with %sN_", name, prefix)
		}
		return n
	}

	for _, f := range glob("unverified/past-*.jsonl") {
		name := "unverified/" + filepath.Base(f)
		rep, err := verify(name, mustRead(t, f), good)
		if n := numbered(filepath.Base(f), "past-"); err != nil || rep.Unverified() != n || rep.Verified() != 7 || (n == 0 && rep.TornBytes == 0) {
			t.Errorf("VerifyExport(%s) = %+v (%d unverified), %v; want 7 verified, %d unverified", name, rep, rep.Unverified(), err, n)
		}
	}
	if rep, err := verify("receipts/log.jsonl", mustRead(t, filepath.Join(exportDir, "receipts/log.jsonl")), mustRead(t, filepath.Join(exportDir, "receipts/checkpoint.note"))); err != nil || rep.Receipts != 2 {
		t.Errorf("VerifyExport(receipts/log.jsonl) = %+v, %v; want 2 receipts verified", rep, err)
	}
	for _, f := range glob("receipts/at-*.jsonl") {
		name := "receipts/" + filepath.Base(f)
		_, err := verify(name, mustRead(t, f), mustRead(t, strings.TrimSuffix(f, ".jsonl")+".note"))
		var br *BadReceiptError
		if at := numbered(filepath.Base(f), "at-"); !errors.As(err, &br) || br.At != at {
			t.Errorf("VerifyExport(%s) = %v, want *BadReceiptError at %d", name, err, at)
		}
	}
	for _, f := range glob("records/*.jsonl") {
		base := filepath.Base(f)
		name := "records/" + base
		_, err := verify(name, mustRead(t, f), mustRead(t, strings.TrimSuffix(f, ".jsonl")+".note"))
		if strings.HasPrefix(base, "ok_") {
			if err != nil {
				t.Errorf("VerifyExport(%s) = %v, want ok", name, err)
			}
			continue
		}
		checkInconsistent(t, "VerifyExport("+name+")", err, numbered(base, "at-"))
	}
	return out
}

// outcome is a verification's verdict as expected.txt records it.
func outcome(rep Report, err error) string {
	if err != nil {
		return err.Error()
	}
	s := "ok"
	if rep.Receipts > 0 {
		s += fmt.Sprintf("; %d receipts verified", rep.Receipts)
	}
	if u := rep.Unverified(); u > 0 {
		s += fmt.Sprintf("; %d records past the checkpoint, unverified", u)
	}
	if rep.TornBytes > 0 {
		s += fmt.Sprintf("; %d bytes of a torn last line, unverified", rep.TornBytes)
	}
	return s
}
