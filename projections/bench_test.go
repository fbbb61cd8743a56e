package projections

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

const (
	benchBatch   = 256
	benchStreams = 64   // distinct streams per batch (4 events each)
	benchPool    = 4096 // streams in the store
)

// benchData is a JSON object of exactly 256 bytes.
var benchData = func() string {
	s := `{"n":1,"pad":""}`
	return `{"n":1,"pad":"` + strings.Repeat("x", 256-len(s)) + `"}`
}()

func benchRecords(iter int) []Record {
	b := make([]Record, benchBatch)
	for j := range b {
		stream := (iter*benchStreams + j%benchStreams) % benchPool
		b[j] = rec(0, int64(iter*benchBatch+j), newEvent(
			fmt.Sprintf("evt-%d-%d", iter, j), fmt.Sprintf("stream-%d", stream), benchData))
	}
	return b
}

// BenchmarkApply applies batches of 256 events (256-byte JSON data, 64
// streams per batch) with the test cipher: sealing, merge patch, index and
// state reads, one commit per batch.
func BenchmarkApply(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run("sync="+strconv.FormatBool(sync), func(b *testing.B) {
			s := MustOpenStores(b, func(cfg *Config) { cfg.NoSync = !sync })
			st := MustCreateStore(b, s, "bench")
			c := newTestCipher(b, "bench")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				res, err := st.Apply(c, benchRecords(i))
				if err != nil || res.Applied != benchBatch {
					b.Fatalf("Apply() = %+v, %v", res, err)
				}
				i++
			}
			b.ReportMetric(float64(i*benchBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkBadgerBaseline writes what Apply writes for a batch — 256 log
// entries, 256 index entries, 64 states and an offset, with values of the
// sizes Apply's sealed values have — as raw Badger sets in one transaction
// per batch, with the same options: no cipher, no JSON, no reads.
func BenchmarkBadgerBaseline(b *testing.B) {
	// Sizes of the sealed values Apply writes for benchRecords.
	s := MustOpenStores(b, func(cfg *Config) { cfg.NoSync = true })
	st := MustCreateStore(b, s, "bench")
	c := newTestCipher(b, "bench")
	MustApply(b, st, c, benchRecords(0))
	var logLen, stateLen int
	if err := st.db.View(func(txn *badger.Txn) error {
		for _, k := range [][]byte{logKey(c.Hash(hashStream, []byte("stream-0")), 1), stateKey(c.Hash(hashStream, []byte("stream-0")))} {
			item, err := txn.Get(k)
			if err != nil {
				return err
			}
			if k[0] == 'l' {
				logLen = int(item.ValueSize())
			} else {
				stateLen = int(item.ValueSize())
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("sealed log value %d bytes, state %d bytes", logLen, stateLen)

	for _, sync := range []bool{true, false} {
		b.Run("sync="+strconv.FormatBool(sync), func(b *testing.B) {
			cfg := Config{NoSync: !sync}
			db, err := badger.Open(cfg.badgerOptions(b.TempDir(), discardLogger()))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			logVal, stateVal := bytes.Repeat([]byte{0xa5}, logLen), bytes.Repeat([]byte{0x5a}, stateLen)
			idxVal := make([]byte, hashLen+8)
			key := func(prefix string, n int, extra int) []byte {
				k := make([]byte, len(prefix)+hashLen+extra)
				copy(k, prefix)
				copy(k[len(prefix):], fmt.Sprintf("%032d", n))
				return k
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				txn := db.NewTransaction(true)
				set := func(k, v []byte) {
					err := txn.Set(k, v)
					if errors.Is(err, badger.ErrTxnTooBig) {
						if err = txn.Commit(); err == nil {
							txn = db.NewTransaction(true)
							err = txn.Set(k, v)
						}
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				for j := range benchBatch {
					n := i*benchBatch + j
					set(key(prefixLog, n, 8), logVal)
					set(key(prefixIndex, n, 0), idxVal)
				}
				for j := range benchStreams {
					set(key(prefixState, (i*benchStreams+j)%benchPool, 0), stateVal)
				}
				set(offsetKey(testTopic, 0), be64(uint64(i)))
				if err := txn.Commit(); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i*benchBatch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkStoreFootprint opens stores, writes a few events to each and
// keeps them open, then reports per store: Go heap, RSS and address space
// (VmSize) growth, and goroutines. Run with -benchtime=1x. "defaults" opens
// a few stores with Badger's default options for comparison.
func BenchmarkStoreFootprint(b *testing.B) {
	for _, tc := range []struct {
		name   string
		stores int
		hook   func(badger.Options) badger.Options
	}{
		{"small", 50, nil},
		{"defaults", 8, func(o badger.Options) badger.Options { return badger.DefaultOptions(o.Dir).WithLogger(nil) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				s, err := OpenStores(Config{Dir: b.TempDir(), MaxOpen: tc.stores, BadgerOptions: tc.hook, Logger: discardLogger()})
				if err != nil {
					b.Fatal(err)
				}
				c := newTestCipher(b, "bench")
				heap0, rss0, vsz0, g0 := footprint()
				var releases []func()
				for i := range tc.stores {
					tn := events.TenantID(fmt.Sprintf("tenant-%d", i))
					if err := s.Create(tn); err != nil {
						b.Fatal(err)
					}
					st, release, err := s.Acquire(tn)
					if err != nil {
						b.Fatal(err)
					}
					MustApply(b, st, c, eventBatch("e", 8, 4, 0, benchData))
					releases = append(releases, release)
				}
				heap1, rss1, vsz1, g1 := footprint()
				for _, r := range releases {
					r()
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				n := float64(tc.stores)
				b.ReportMetric((heap1-heap0)/n, "heap-MiB/store")
				b.ReportMetric((rss1-rss0)/n, "rss-MiB/store")
				b.ReportMetric((vsz1-vsz0)/n, "vsz-MiB/store")
				b.ReportMetric(float64(g1-g0)/n, "goroutines/store")
			}
		})
	}
}

// footprint returns the live Go heap, RSS and VmSize in MiB, and the number
// of goroutines.
func footprint() (heap, rss, vsz float64, goroutines int) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = float64(ms.HeapAlloc) / (1 << 20)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(fields[1], 64)
			switch fields[0] {
			case "VmRSS:":
				rss = kb / 1024
			case "VmSize:":
				vsz = kb / 1024
			}
		}
	}
	return heap, rss, vsz, runtime.NumGoroutine()
}

// BenchmarkRewrap re-seals a store of 20,000 events (256-byte JSON data)
// over 200 streams, 20,200 sealed values, under a new primary key per
// iteration: open with the old key, seal with the new, in batches of
// rewrapBatchValues values per transaction.
func BenchmarkRewrap(b *testing.B) {
	const events, streams = 20000, 200
	for _, sync := range []bool{false, true} {
		b.Run("sync="+strconv.FormatBool(sync), func(b *testing.B) {
			s := MustOpenStores(b, func(cfg *Config) { cfg.NoSync = !sync; cfg.Logger = discardLogger() })
			st := MustCreateStore(b, s, "bench")
			c := newTestCipher(b, "bench")
			for first := 0; first < events; first += benchBatch {
				MustApply(b, st, c, eventBatch(fmt.Sprintf("e%d", first), min(benchBatch, events-first), streams, int64(first), benchData))
			}
			want := uint64(events + streams)
			var values uint64
			for b.Loop() {
				c.Rotate(b)
				p, err := st.Rewrap(context.Background(), c, nil)
				if err != nil || p.Rewrapped != want {
					b.Fatalf("Rewrap() = %+v, %v, want %d rewrapped", p, err, want)
				}
				values += p.Rewrapped
			}
			b.ReportMetric(float64(values)/b.Elapsed().Seconds(), "values/s")
		})
	}
}
