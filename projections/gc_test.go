package projections

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// vlogBytes sums the sizes of a store's value-log files.
func vlogBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestCollectGarbage(t *testing.T) {
	dir := t.TempDir()
	edit := func(c *Config) {
		c.Dir = dir
		c.NoSync = true
		c.ValueLogGCInterval = -1 // by hand
		c.BadgerOptions = func(o badger.Options) badger.Options {
			return o.WithValueLogFileSize(1 << 20).WithNumLevelZeroTables(1)
		}
	}
	c := newTestCipher(t, "acme")
	const events = 400
	// One stream whose state grows by a member per event: each batch
	// rewrites the whole state, and the old one is garbage. Two rounds,
	// each ending with a Close that flushes the memtable into a level-0
	// table; with one such table allowed, Flatten compacts them, and
	// compactions are where Badger counts each value-log file's garbage.
	pad := strings.Repeat("p", 100)
	for round := range 2 {
		s := MustOpenStores(t, edit)
		if round == 0 {
			if err := s.Create("acme"); err != nil {
				t.Fatal(err)
			}
		}
		st, release, err := s.Acquire("acme")
		if err != nil {
			t.Fatal(err)
		}
		for i := round * events / 2; i < (round+1)*events/2; i++ {
			MustApply(t, st, c, []Record{rec(0, int64(i), newEvent(fmt.Sprint(i), "grows", fmt.Sprintf(`{"k%d":%q}`, i, pad)))})
		}
		release()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	s := MustOpenStores(t, edit)
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.db.Flatten(1); err != nil { // compactions find the stale states
		t.Fatal(err)
	}
	release()
	storeDir := filepath.Join(dir, "acme")
	before := vlogBytes(t, storeDir)
	n := s.CollectGarbage()
	after := vlogBytes(t, storeDir)
	if n < 1 || after >= before {
		t.Fatalf("CollectGarbage() rewrote %d files; value log %d -> %d bytes, want fewer", n, before, after)
	}
	t.Logf("rewrote %d value-log files: %d -> %d bytes", n, before, after)

	// Everything still reads.
	st, release, err = s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	state, err := st.State(c, "grows")
	if err != nil || state.Version != events || !strings.Contains(string(state.Data), fmt.Sprintf(`"k%d":`, events-1)) {
		t.Fatalf("State after GC = version %d, %v", state.Version, err)
	}
	h, err := st.History(c, "grows", 0, events)
	if err != nil || len(h) != events {
		t.Fatalf("History after GC = %d events, %v", len(h), err)
	}
}

func TestGarbageLoopStopsWithClose(t *testing.T) {
	s := MustOpenStores(t, func(c *Config) { c.ValueLogGCInterval = time.Millisecond })
	if err := s.Create("acme"); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	var once sync.Once
	hook := func(events.TenantID) { once.Do(func() { close(ran) }) }
	s.testHookGC.Store(&hook)
	c := newTestCipher(t, "acme")
	for i := range 20 {
		st, release, err := s.Acquire("acme")
		if err != nil {
			t.Fatal(err)
		}
		MustApply(t, st, c, []Record{rec(0, int64(i), newEvent(fmt.Sprint(i), "s", `{"a":1}`))})
		release()
	}
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the GC loop never held a store")
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with the GC loop running")
	}
	if n := s.CollectGarbage(); n != 0 {
		t.Errorf("CollectGarbage after Close = %d, want 0", n)
	}
}

// TestCollectGarbageHoldsOneStore removes one store while the GC holds
// another: the Remove must not wait for the GC's round.
func TestCollectGarbageHoldsOneStore(t *testing.T) {
	s := MustOpenStores(t, func(c *Config) { c.ValueLogGCInterval = -1 })
	for _, tenant := range []events.TenantID{"acme", "globex"} {
		if err := s.Create(tenant); err != nil {
			t.Fatal(err)
		}
		_, release, err := s.Acquire(tenant) // open, then idle
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	var held []events.TenantID
	hook := func(tenant events.TenantID) {
		held = append(held, tenant)
		if len(held) > 1 {
			return
		}
		other := events.TenantID("globex")
		if tenant == other {
			other = "acme"
		}
		done := make(chan error, 1)
		go func() { done <- s.Remove(other) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Remove(%s) = %v", other, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Remove(%s) waited for the GC of %s", other, tenant)
		}
	}
	s.testHookGC.Store(&hook)
	s.CollectGarbage()
	if len(held) != 1 {
		t.Errorf("GC held %v, want only the store not removed", held)
	}
}
