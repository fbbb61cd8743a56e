package projections

import (
	"context"
	"testing"
)

// restoreBatches is how many benchRecords batches (256 events each) the
// changelog of BenchmarkChangelogRestore holds; restoreChunk is the run
// ApplyChanges gets at a time.
const (
	restoreBatches = 16
	restoreChunk   = 1024
)

// BenchmarkChangelogRestore restores a tenant's store from its changelog:
// the Changes of 16 batches of 256 events (256-byte JSON data, sealed with
// real Tink keys), decoded and given to ApplyChanges 1024 at a time, each
// checked by a trial decrypt. Baselines in the same run: the same keys and
// values as raw Badger sets in transactions of 1024 (no decode, no
// checks), and Apply of the events the changes came from (what a rebuild
// from the ingress topic would cost). One op is the whole changelog; no
// sync (a restore syncs once at the end).
func BenchmarkChangelogRestore(b *testing.B) {
	c := mustTinkCiphers(b, "bench")["bench"]
	_, src := mustStoreAt(b, "bench")
	var l changelog
	for i := range restoreBatches {
		mustPrepareCommit(b, src, c, &l, benchRecords(i))
	}
	var bytesTotal int64
	for _, r := range l.recs {
		bytesTotal += int64(len(r))
	}
	changes := l.read(b, 0, int64(len(l.recs)))
	n := len(changes)
	events := restoreBatches * benchBatch
	b.Logf("changelog: %d changes, %d bytes, of %d events", n, bytesTotal, events)
	report := func(b *testing.B, ops int) {
		sec := b.Elapsed().Seconds()
		b.ReportMetric(float64(ops*n)/sec, "changes/s")
		b.ReportMetric(float64(ops*events)/sec, "events/s")
	}

	b.Run("ApplyChanges", func(b *testing.B) {
		_, dst := mustStoreAt(b, "bench")
		b.SetBytes(bytesTotal)
		b.ReportAllocs()
		ops := 0
		var pos int64
		for b.Loop() {
			for from := 0; from < n; from += restoreChunk {
				to := min(from+restoreChunk, n)
				run := make([]Change, 0, to-from)
				for _, r := range l.recs[from:to] {
					ch, err := DecodeChange(r)
					if err != nil {
						b.Fatal(err)
					}
					run = append(run, ch)
				}
				pos += int64(to - from) // later positions each time: never a replay
				if err := dst.ApplyChanges(context.Background(), c, pos, run); err != nil {
					b.Fatal(err)
				}
			}
			ops++
		}
		report(b, ops)
	})

	b.Run("raw-badger", func(b *testing.B) {
		_, dst := mustStoreAt(b, "bench")
		b.SetBytes(bytesTotal)
		b.ReportAllocs()
		ops := 0
		for b.Loop() {
			for from := 0; from < n; from += restoreChunk {
				txn := dst.db.NewTransaction(true)
				for _, ch := range changes[from:min(from+restoreChunk, n)] {
					prefix, _ := changelogPrefixOf(ch.Keyspace)
					if err := txn.Set(concat([]byte(prefix), ch.Key), ch.Value); err != nil {
						b.Fatal(err)
					}
				}
				if err := txn.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			ops++
		}
		report(b, ops)
	})

	b.Run("Apply", func(b *testing.B) {
		_, dst := mustStoreAt(b, "bench")
		b.SetBytes(bytesTotal)
		b.ReportAllocs()
		ops := 0
		for b.Loop() {
			for i := range restoreBatches {
				res, err := dst.Apply(c, benchRecords(ops*restoreBatches+i))
				if err != nil || res.Applied != benchBatch {
					b.Fatalf("Apply() = %+v, %v", res, err)
				}
			}
			ops++
		}
		report(b, ops)
	})
}
