package audit

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
)

func TestExport(t *testing.T) {
	s, vkey := testKey(t, "tenantvault/test")
	dir := t.TempDir()
	l := MustOpenLog(t, func(o *Options) { o.Dir = dir; o.SegmentBytes = 4096 }, withSigner(s, vkey))
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := l.Append(ctx, Record{Principal: "ingest", Tenant: "acme", Action: ActionIngestBatch, Outcome: OutcomeOK, Count: i}); err != nil {
			t.Fatal(err)
		}
	}
	cp, _ := waitCheckpoint(t, l, 100)
	var all bytes.Buffer
	if n, err := l.Export(ctx, &all, 0, 1<<62); err != nil || n != 100 {
		t.Fatalf("Export(0, ∞) = %d, %v, want 100", n, err)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(segs) < 2 {
		t.Fatalf("want several segments to cross, got %d", len(segs))
	}
	if _, err := VerifyExport(ctx, bytes.NewReader(all.Bytes()), cp, vkey); err != nil {
		t.Fatalf("VerifyExport(Export) = %v", err)
	}
	for _, r := range [][2]uint64{{0, 1}, {10, 20}, {37, 100}, {99, 100}, {100, 200}, {50, 50}} {
		var part bytes.Buffer
		n, err := l.Export(ctx, &part, r[0], r[1])
		want := min(r[1], 100) - min(r[0], min(r[1], 100))
		if err != nil || n != want {
			t.Fatalf("Export(%d, %d) = %d, %v, want %d", r[0], r[1], n, err, want)
		}
		lines := bytes.Split(bytes.TrimSuffix(part.Bytes(), []byte("\n")), []byte("\n"))
		for j, line := range lines {
			if n == 0 {
				break
			}
			rec, err := ParseRecord(line)
			if err != nil || rec.Index != r[0]+uint64(j) {
				t.Fatalf("Export(%d, %d) line %d = %v, %v", r[0], r[1], j, rec.Index, err)
			}
		}
	}
}
