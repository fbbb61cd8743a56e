package projections

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// storeSnapshot is everything a store's readers can see.
type storeSnapshot struct {
	States     map[string]State
	History    map[string][]StoredEvent
	Quarantine []Quarantined
}

func snapshot(tb testing.TB, st *Store, c Cipher) storeSnapshot {
	tb.Helper()
	snap := storeSnapshot{States: map[string]State{}, History: map[string][]StoredEvent{}}
	for cursor := ""; ; {
		page, next, err := st.Streams(c, cursor, 0)
		if err != nil {
			tb.Fatalf("Streams(%q) = %v", cursor, err)
		}
		for _, s := range page {
			got, err := st.State(c, s.Stream)
			if err != nil {
				tb.Fatalf("State(%s) = %v", s.Stream, err)
			}
			snap.States[s.Stream] = got
			for after := uint64(0); ; {
				evs, err := st.History(c, s.Stream, after, 0)
				if err != nil {
					tb.Fatalf("History(%s, %d) = %v", s.Stream, after, err)
				}
				if len(evs) == 0 {
					break
				}
				snap.History[s.Stream] = append(snap.History[s.Stream], evs...)
				after = evs[len(evs)-1].Version
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for cursor := ""; ; {
		page, next, err := st.Quarantine(c, cursor, 0)
		if err != nil {
			tb.Fatalf("Quarantine(%q) = %v", cursor, err)
		}
		snap.Quarantine = append(snap.Quarantine, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	return snap
}

func assertSameSnapshot(tb testing.TB, what string, got, want storeSnapshot) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("%s: reads differ: %d states, %d histories, %d quarantined; want %d, %d, %d",
			what, len(got.States), len(got.History), len(got.Quarantine), len(want.States), len(want.History), len(want.Quarantine))
	}
}

// fillStore applies n events over streams streams (one of them deleted
// afterwards), a large event kept in the value log, a duplicate and two
// rejections, on partition 0 from offset 0. It returns the next offset.
func fillStore(tb testing.TB, st *Store, c Cipher, n, streams int) int64 {
	tb.Helper()
	batch := eventBatch("fill", n, streams, 0, `{"n":1,"note":"x"}`)
	off := int64(n)
	del := newEvent("fill-del", "stream-0", "")
	del.Type = "customer.deleted"
	batch = append(batch,
		rec(0, off, newEvent("fill-big", "stream-1", fmt.Sprintf(`{"blob":%q}`, strings.Repeat("b", 20<<10)))),
		rec(0, off+1, newEvent("fill-0", "stream-0", `{}`)), // duplicate id
		reject(0, off+2, events.EINVALID, "not JSON", []byte("\x00raw")),
		rec(0, off+3, del),
		reject(0, off+4, events.ETOOLARGE, "too large", []byte("big")),
	)
	for len(batch) > 0 {
		k := min(len(batch), 256)
		MustApply(tb, st, c, batch[:k])
		batch = batch[k:]
	}
	return off + 5
}

func mustKeyUsage(tb testing.TB, st *Store, c KeyedCipher) map[uint32]uint64 {
	tb.Helper()
	u, err := st.KeyUsage(c)
	if err != nil {
		tb.Fatalf("KeyUsage() = %v", err)
	}
	return u
}

func mustStats(tb testing.TB, st *Store) Stats {
	tb.Helper()
	s, err := st.Stats()
	if err != nil {
		tb.Fatalf("Stats() = %v", err)
	}
	return s
}

func (s Stats) sealed() uint64 { return s.Events + s.Streams + s.Quarantined }

func TestStats(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	if got := mustStats(t, st); got != (Stats{}) {
		t.Errorf("Stats() of an empty store = %+v, want zeros", got)
	}
	fillStore(t, st, c, 30, 4)
	// 30 events + the large one + the delete; 4 streams (one a tombstone);
	// 2 rejections; the duplicate is not counted.
	if got, want := mustStats(t, st), (Stats{Events: 32, Streams: 4, Quarantined: 2}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestRewrapMovesEveryValue(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	st.rewrapLimit = 7 // many batches, some across keyspaces
	c := newTestCipher(t, "acme")
	k1 := c.PrimaryKeyID()
	off := fillStore(t, st, c, 60, 6)
	stats := mustStats(t, st)
	if got, want := mustKeyUsage(t, st, c), map[uint32]uint64{k1: stats.sealed()}; !maps.Equal(got, want) {
		t.Fatalf("KeyUsage() = %v, want %v", got, want)
	}

	k2 := c.Rotate(t)
	// Values written after the rotation are under the new primary.
	MustApply(t, st, c, []Record{rec(0, off, newEvent("late", "stream-2", `{"late":true}`))})
	before := mustKeyUsage(t, st, c)
	if before[k1] == 0 || before[k2] != 2 { // the late log entry and stream-2's state
		t.Fatalf("KeyUsage() after rotation = %v, want most under 0x%08x and 2 under 0x%08x", before, k1, k2)
	}
	want := snapshot(t, st, c)

	var calls []RewrapProgress
	p, err := st.Rewrap(context.Background(), c, func(p RewrapProgress) { calls = append(calls, p) })
	if err != nil {
		t.Fatalf("Rewrap() = %v", err)
	}
	total := before[k1] + before[k2]
	if wantP := (RewrapProgress{Scanned: total, Rewrapped: before[k1], Total: total, Done: true}); p != wantP {
		t.Errorf("Rewrap() = %+v, want %+v", p, wantP)
	}
	if n := len(calls); uint64(n) != (total+6)/7 || calls[n-1] != p {
		t.Errorf("progress called %d times, last %+v; want %d times, last %+v", n, calls[n-1], (total+6)/7, p)
	}
	for i, cp := range calls[:len(calls)-1] {
		if cp.Done || cp.Scanned != uint64(7*(i+1)) {
			t.Errorf("progress[%d] = %+v, want %d scanned, not done", i, cp, 7*(i+1))
		}
	}
	if got, want := mustKeyUsage(t, st, c), map[uint32]uint64{k2: total}; !maps.Equal(got, want) {
		t.Errorf("KeyUsage() after Rewrap = %v, want %v", got, want)
	}
	if pending, err := st.RewrapPending(); err != nil || pending {
		t.Errorf("RewrapPending() after Rewrap = %v, %v, want false", pending, err)
	}

	// Nothing needs the old key any more.
	c.Drop(k1)
	assertSameSnapshot(t, "after Rewrap, old key dropped", snapshot(t, st, c), want)

	// A second run finds nothing to do.
	p, err = st.Rewrap(context.Background(), c, nil)
	if wantP := (RewrapProgress{Scanned: total, Total: total, Done: true}); err != nil || p != wantP {
		t.Errorf("Rewrap() again = %+v, %v, want %+v", p, err, wantP)
	}
}

// TestRewrapUnopenableValue: a value under a key the cipher lacks stops
// Rewrap with the cipher's error; the batches before it stay done.
func TestRewrapUnopenableValue(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	st.rewrapLimit = 5
	c := newTestCipher(t, "acme")
	fillStore(t, st, c, 20, 2)
	k1 := c.PrimaryKeyID()
	c.Rotate(t)
	other := newTestCipher(t, "globex")
	// Re-seal the last state under another tenant's key.
	k := stateKey(c.Hash(hashStream, []byte("stream-1")))
	foreign, err := st.seal(other, ksState, k, stateRecord{Stream: "stream-1", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Update(func(txn *badger.Txn) error { return txn.Set(k, foreign) }); err != nil {
		t.Fatal(err)
	}
	p, err := st.Rewrap(context.Background(), c, nil)
	var oe *openError
	if !errors.As(err, &oe) || p.Done || p.Rewrapped == 0 {
		t.Fatalf("Rewrap() over a foreign value = %+v, %v, want the cipher's open error after some batches", p, err)
	}
	if pending, _ := st.RewrapPending(); !pending {
		t.Errorf("RewrapPending() after a failed Rewrap = false, want true")
	}
	if u := mustKeyUsage(t, st, c); u[k1] == 0 || u[other.PrimaryKeyID()] != 1 {
		t.Errorf("KeyUsage() = %v, want values left under 0x%08x and one foreign", u, k1)
	}
	if _, err := st.Rewrap(context.Background(), nil, nil); events.ErrorCode(err) != events.EINTERNAL {
		t.Errorf("Rewrap(nil cipher) = %v, want code internal", err)
	}
}

// TestRewrapRetriesConflict commits an Apply to every stream between a
// batch's reads and its commit: the batch must fail with a conflict and be
// retried (the second time holding the apply lock), and no update is lost.
func TestRewrapRetriesConflict(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	const streams = 5
	off := fillStore(t, st, c, 20, streams)
	c.Rotate(t)
	hooks := 0
	st.testHookRewrapCommit = func() {
		hooks++
		var batch []Record
		for i := range streams {
			batch = append(batch, rec(0, off, newEvent(fmt.Sprintf("hook-%d-%d", hooks, i), fmt.Sprintf("stream-%d", i), fmt.Sprintf(`{"hook":%d}`, hooks))))
			off++
		}
		MustApply(t, st, c, batch)
	}
	p, err := st.Rewrap(context.Background(), c, nil) // one batch holds the whole store
	if err != nil || !p.Done {
		t.Fatalf("Rewrap() = %+v, %v", p, err)
	}
	if hooks != rewrapOptimisticTries || p.Conflicts != rewrapOptimisticTries {
		t.Errorf("Rewrap() = %+v after %d optimistic tries, want %d conflicts", p, hooks, rewrapOptimisticTries)
	}
	for i := range streams {
		got, err := st.State(c, fmt.Sprintf("stream-%d", i))
		if err != nil || !strings.Contains(string(got.Data), fmt.Sprintf(`"hook":%d`, hooks)) {
			t.Errorf("State(stream-%d) = %s, %v, want the last hook's update", i, got.Data, err)
		}
	}
	if u := mustKeyUsage(t, st, c); len(u) != 1 || u[c.PrimaryKeyID()] != mustStats(t, st).sealed() {
		t.Errorf("KeyUsage() = %v, want everything under 0x%08x", u, c.PrimaryKeyID())
	}
}

// TestRewrapConcurrent runs Apply and reads on the store while Rewrap
// works through it in small batches, each batch waiting for an Apply.
func TestRewrapConcurrent(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	st.rewrapLimit = 16
	c := newTestCipher(t, "acme")
	const streams = 20
	fillStore(t, st, c, 200, streams)
	base := snapshot(t, st, c)
	c.Rotate(t)

	var (
		mu      sync.Mutex
		count   = map[string]uint64{} // events applied per stream by the writers
		applied atomic.Int64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for w := 1; w <= 2; w++ {
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				var batch []Record
				for j := range 3 {
					stream := fmt.Sprintf("stream-%d", (i*3+j+w)%(streams+2)) // two new streams too
					batch = append(batch, Record{Topic: testTopic, Partition: w, Offset: int64(i*3 + j),
						Event: newEvent(fmt.Sprintf("w%d-%d-%d", w, i, j), stream, fmt.Sprintf(`{"w%d":%d}`, w, i))})
				}
				res, err := st.Apply(c, batch)
				if err != nil || res.Applied != len(batch) {
					t.Errorf("writer %d: Apply() = %+v, %v", w, res, err)
					return
				}
				mu.Lock()
				for _, r := range batch {
					count[r.Event.Subject]++
				}
				mu.Unlock()
				applied.Add(1)
			}
		})
	}
	for r := range 2 {
		wg.Go(func() {
			for i := 0; !stopped(); i++ {
				stream := fmt.Sprintf("stream-%d", (i+r)%streams)
				if _, err := st.State(c, stream); err != nil {
					t.Errorf("reader: State(%s) = %v", stream, err)
					return
				}
				if _, err := st.History(c, stream, 0, 5); err != nil {
					t.Errorf("reader: History(%s) = %v", stream, err)
					return
				}
				if _, _, err := st.Streams(c, "", 10); err != nil {
					t.Errorf("reader: Streams() = %v", err)
					return
				}
				if _, _, err := st.Quarantine(c, "", 10); err != nil {
					t.Errorf("reader: Quarantine() = %v", err)
					return
				}
			}
		})
	}

	last := applied.Load()
	batches := 0
	p, err := st.Rewrap(context.Background(), c, func(RewrapProgress) {
		batches++
		// Let at least one Apply commit between batches.
		for deadline := time.Now().Add(5 * time.Second); applied.Load() == last; {
			if time.Now().After(deadline) {
				t.Errorf("no Apply committed within 5s of rewrap batch %d", batches)
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		last = applied.Load()
	})
	close(stop)
	wg.Wait()
	if err != nil || !p.Done {
		t.Fatalf("Rewrap() = %+v, %v", p, err)
	}
	t.Logf("Rewrap() = %+v in %d batches, %d Apply calls meanwhile", p, batches, applied.Load())

	stats := mustStats(t, st)
	if u := mustKeyUsage(t, st, c); len(u) != 1 || u[c.PrimaryKeyID()] != stats.sealed() {
		t.Errorf("KeyUsage() = %v, want all %d values under 0x%08x", u, stats.sealed(), c.PrimaryKeyID())
	}
	var writes uint64
	for _, n := range count {
		writes += n
	}
	if stats.Events != uint64(countEvents(base))+writes {
		t.Errorf("Stats().Events = %d, want %d + %d written meanwhile", stats.Events, countEvents(base), writes)
	}
	for stream, n := range count {
		got, err := st.State(c, stream)
		want := base.States[stream].Version + n
		if err != nil || got.Version != want {
			t.Errorf("State(%s) = version %d, %v, want %d", stream, got.Version, err, want)
		}
		evs, err := st.History(c, stream, base.States[stream].Version, int(n)+1)
		if err != nil || uint64(len(evs)) != n {
			t.Errorf("History(%s) after v%d = %d events, %v, want %d", stream, base.States[stream].Version, len(evs), err, n)
		}
	}
}

func countEvents(s storeSnapshot) int {
	n := 0
	for _, h := range s.History {
		n += len(h)
	}
	return n
}

// TestRewrapResume stops Rewrap after a few batches, closes and reopens
// the stores, and finishes it: the counts go on where they stopped and
// every value opens as before.
func TestRewrapResume(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenStores(t, func(cfg *Config) { cfg.Dir = dir })
	if err := s.Create("acme"); err != nil {
		t.Fatal(err)
	}
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCipher(t, "acme")
	fillStore(t, st, c, 100, 10)
	want := snapshot(t, st, c)
	old := c.PrimaryKeyID()
	total := mustStats(t, st).sealed()
	c.Rotate(t)

	const limit, stopAfter = 10, 3
	st.rewrapLimit = limit
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	p, err := st.Rewrap(ctx, c, func(RewrapProgress) {
		if batches++; batches == stopAfter {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || p.Done || p.Scanned != stopAfter*limit || p.Rewrapped != stopAfter*limit {
		t.Fatalf("Rewrap() cancelled after %d batches = %+v, %v; want %d scanned and context.Canceled", stopAfter, p, err, stopAfter*limit)
	}
	if pending, err := st.RewrapPending(); err != nil || !pending {
		t.Fatalf("RewrapPending() = %v, %v, want true", pending, err)
	}
	if u := mustKeyUsage(t, st, c); u[old] != total-stopAfter*limit || u[c.PrimaryKeyID()] != stopAfter*limit {
		t.Errorf("KeyUsage() halfway = %v, want %d under the old key", u, total-stopAfter*limit)
	}

	// Stop the process: close everything, reopen.
	release()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := st.Stats(); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Stats() on a closed store = %v, want ErrStoreClosed", err)
	}
	s = MustOpenStores(t, func(cfg *Config) { cfg.Dir = dir })
	st, release, err = s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	st.rewrapLimit = limit
	if pending, err := st.RewrapPending(); err != nil || !pending {
		t.Fatalf("RewrapPending() after reopen = %v, %v, want true", pending, err)
	}
	var first *RewrapProgress
	p, err = st.Rewrap(context.Background(), c, func(p RewrapProgress) {
		if first == nil {
			first = &p
		}
	})
	if err != nil || p != (RewrapProgress{Scanned: total, Rewrapped: total, Total: total, Done: true}) {
		t.Fatalf("Rewrap() resumed = %+v, %v, want all %d scanned and rewrapped once", p, err, total)
	}
	if first == nil || first.Scanned != (stopAfter+1)*limit {
		t.Errorf("first progress of the resumed run = %+v, want %d scanned", first, (stopAfter+1)*limit)
	}
	if pending, _ := st.RewrapPending(); pending {
		t.Errorf("RewrapPending() after the resumed run = true")
	}
	if u := mustKeyUsage(t, st, c); len(u) != 1 || u[c.PrimaryKeyID()] != total {
		t.Errorf("KeyUsage() = %v, want all %d under the primary", u, total)
	}
	c.Drop(old)
	assertSameSnapshot(t, "after the resumed Rewrap", snapshot(t, st, c), want)
}

// TestRewrapPrimaryChanged rotates between two runs, and during one: each
// time Rewrap starts over and ends with everything under the newest key.
func TestRewrapPrimaryChanged(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	fillStore(t, st, c, 50, 5)
	want := snapshot(t, st, c)
	total := mustStats(t, st).sealed()
	k1 := c.PrimaryKeyID()
	k2 := c.Rotate(t)

	const limit = 8
	st.rewrapLimit = limit
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Rewrap(ctx, c, func(RewrapProgress) { cancel() }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rewrap() cancelled = %v", err)
	}
	k3 := c.Rotate(t)
	var first *RewrapProgress
	p, err := st.Rewrap(context.Background(), c, func(p RewrapProgress) {
		if first == nil {
			first = &p
		}
	})
	if err != nil || p != (RewrapProgress{Scanned: total, Rewrapped: total, Total: total, Done: true}) {
		t.Fatalf("Rewrap() after another rotation = %+v, %v, want every value rewrapped", p, err)
	}
	if first.Scanned != limit {
		t.Errorf("first progress = %+v, want a start over (%d scanned)", first, limit)
	}
	if u := mustKeyUsage(t, st, c); len(u) != 1 || u[k3] != total {
		t.Errorf("KeyUsage() = %v, want all %d under 0x%08x", u, total, k3)
	}

	// Rotated during the run: Rewrap notices and starts over.
	var k4 uint32
	batches := 0
	p, err = st.Rewrap(context.Background(), c, func(RewrapProgress) {
		if batches++; batches == 2 {
			k4 = c.Rotate(t)
		}
	})
	if err != nil || !p.Done || p.Scanned != total {
		t.Fatalf("Rewrap() with a rotation during it = %+v, %v", p, err)
	}
	if u := mustKeyUsage(t, st, c); len(u) != 1 || u[k4] != total {
		t.Errorf("KeyUsage() = %v, want all %d under 0x%08x", u, total, k4)
	}
	for _, k := range []uint32{k1, k2, k3} {
		c.Drop(k)
	}
	assertSameSnapshot(t, "after rotations", snapshot(t, st, c), want)
}

// TestRemoveRacingAcquire removes a store while other goroutines acquire
// and use it: each Acquire gets a store that works until released, or
// ErrNotFound; afterwards the directory is gone and a handle kept past
// its release fails with ErrStoreClosed.
func TestRemoveRacingAcquire(t *testing.T) {
	s := MustOpenStores(t)
	c := newTestCipher(t, "acme")
	for round := range 5 {
		if err := s.Create("acme"); err != nil {
			t.Fatal(err)
		}
		stale, release, err := s.Acquire("acme")
		if err != nil {
			t.Fatal(err)
		}
		release()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 4 {
			wg.Go(func() {
				<-start
				for i := range 20 {
					st, release, err := s.Acquire("acme")
					if errors.Is(err, ErrNotFound) {
						return
					}
					if err != nil {
						t.Errorf("Acquire() = %v", err)
						return
					}
					_, err = st.Apply(c, []Record{{Topic: testTopic, Partition: w, Offset: int64(i), Event: newEvent(fmt.Sprintf("%d-%d-%d", round, w, i), "s", `{}`)}})
					if err == nil {
						_, err = st.State(c, "s")
					}
					release()
					if err != nil {
						t.Errorf("use of an acquired store = %v", err)
						return
					}
				}
			})
		}
		close(start)
		if err := s.Remove("acme"); err != nil {
			t.Fatalf("Remove() = %v", err)
		}
		wg.Wait()
		if _, err := os.Stat(filepath.Join(s.cfg.Dir, "acme")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("store directory after Remove: %v, want it gone", err)
		}
		if _, err := stale.State(c, "s"); !errors.Is(err, ErrStoreClosed) || events.ErrorCode(err) != events.EUNAVAILABLE {
			t.Errorf("State() on a removed store = %v, want ErrStoreClosed", err)
		}
		if _, err := stale.Apply(c, []Record{rec(0, 99, newEvent("late", "s", `{}`))}); !errors.Is(err, ErrStoreClosed) {
			t.Errorf("Apply() on a removed store = %v, want ErrStoreClosed", err)
		}
		if _, err := stale.Rewrap(context.Background(), c, nil); !errors.Is(err, ErrStoreClosed) {
			t.Errorf("Rewrap() on a removed store = %v, want ErrStoreClosed", err)
		}
	}
}
