package projections

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

func TestOpenStoresValidates(t *testing.T) {
	_, err := OpenStores(Config{MaxOpen: -1})
	if events.ErrorCode(err) != events.EINVALID || !strings.Contains(err.Error(), "Dir") || !strings.Contains(err.Error(), "MaxOpen") {
		t.Errorf("OpenStores(no Dir, MaxOpen -1) = %v, want both problems, code invalid", err)
	}
	dir := filepath.Join(t.TempDir(), "data", "tenants")
	s, err := OpenStores(Config{Dir: dir})
	if err != nil {
		t.Fatalf("OpenStores(%s) = %v", dir, err)
	}
	defer s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Stat(Dir) = %v, %v, want a 0700 directory", fi, err)
	}
	if s.cfg.MaxOpen != DefaultMaxOpen || s.cfg.NoSync {
		t.Errorf("defaults: MaxOpen %d NoSync %v, want %d, false", s.cfg.MaxOpen, s.cfg.NoSync, DefaultMaxOpen)
	}
}

func TestStoresLifecycle(t *testing.T) {
	s := MustOpenStores(t)
	c := newTestCipher(t, "acme")

	if _, _, err := s.Acquire("acme"); !errors.Is(err, ErrNotFound) || events.ErrorCode(err) != events.ENOTFOUND {
		t.Errorf("Acquire(unknown) = %v, want ErrNotFound", err)
	}
	for _, bad := range []events.TenantID{"", "../x", "A", "a/b", "-x"} {
		if err := s.Create(bad); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("Create(%q) = %v, want code invalid", bad, err)
		}
		if _, _, err := s.Acquire(bad); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("Acquire(%q) = %v, want code invalid", bad, err)
		}
		if err := s.Remove(bad); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("Remove(%q) = %v, want code invalid", bad, err)
		}
	}
	if err := s.Create("acme"); err != nil {
		t.Fatalf("Create(acme) = %v", err)
	}
	if err := s.Create("acme"); !errors.Is(err, ErrExists) || events.ErrorCode(err) != events.ECONFLICT {
		t.Errorf("Create(acme) again = %v, want ErrExists", err)
	}
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatalf("Acquire(acme) = %v", err)
	}
	if st.Tenant() != "acme" {
		t.Errorf("Tenant() = %q, want acme", st.Tenant())
	}
	MustApply(t, st, c, []Record{rec(0, 0, newEvent("1", "s", `{"a":1}`))})
	release()
	release() // a second call does nothing

	if err := s.Remove("acme"); err != nil {
		t.Fatalf("Remove(acme) = %v", err)
	}
	if _, _, err := s.Acquire("acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire(acme) after Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove("acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove(acme) again = %v, want ErrNotFound", err)
	}
	if des, _ := os.ReadDir(s.cfg.Dir); len(des) != 0 {
		t.Errorf("Dir holds %d entries after Remove, want none", len(des))
	}

	// A new store under the same id starts empty.
	st = MustCreateStore(t, s, "acme")
	if _, err := st.State(c, "s"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State(s) in the re-created store = %v, want ErrNotFound", err)
	}
}

func TestStoresCloseAndReopen(t *testing.T) {
	dir := t.TempDir()
	c := newTestCipher(t, "acme")
	s, err := OpenStores(Config{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create("acme"); err != nil {
		t.Fatal(err)
	}
	st, release, _ := s.Acquire("acme")
	MustApply(t, st, c, []Record{rec(0, 0, newEvent("1", "s", `{"a":1}`))})
	release()
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, _, err := s.Acquire("acme"); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() again = %v, want nil", err)
	}

	// A leftover of an interrupted Remove is cleaned up on open.
	if err := os.Mkdir(filepath.Join(dir, ".gone"+removingSuffix+"-1"), 0o700); err != nil {
		t.Fatal(err)
	}
	s = MustOpenStores(t, func(cfg *Config) { cfg.Dir = dir })
	if _, err := os.Stat(filepath.Join(dir, ".gone"+removingSuffix+"-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover of Remove still there: %v", err)
	}
	st, release, err = s.Acquire("acme")
	if err != nil {
		t.Fatalf("Acquire(acme) after reopen = %v", err)
	}
	defer release()
	if got, err := st.State(c, "s"); err != nil || got.Version != 1 {
		t.Errorf("State(s) after reopen = %+v, %v, want version 1", got, err)
	}
}

func TestLRUClosesIdleStores(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) { cfg.MaxOpen = 2 })
	c := newTestCipher(t, "k")
	tenants := []events.TenantID{"t0", "t1", "t2", "t3", "t4"}
	for _, tn := range tenants {
		if err := s.Create(tn); err != nil {
			t.Fatal(err)
		}
		if n := s.openCount(); n > 2 {
			t.Errorf("after Create(%s): %d open, want at most 2", tn, n)
		}
	}

	// Held stores are never closed, even beyond MaxOpen.
	var releases []func()
	for i, tn := range tenants[:4] {
		st, release, err := s.Acquire(tn)
		if err != nil {
			t.Fatalf("Acquire(%s) = %v", tn, err)
		}
		MustApply(t, st, c, []Record{rec(0, 0, newEvent(fmt.Sprint(i), "s", fmt.Sprintf(`{"i":%d}`, i)))})
		releases = append(releases, release)
	}
	if n := s.openCount(); n != 4 {
		t.Errorf("4 stores held: %d open, want 4", n)
	}
	for _, r := range releases {
		r()
	}
	if n := s.openCount(); n != 2 {
		t.Errorf("all released: %d open, want 2", n)
	}
	// The last released stay open; the others reopen with their data.
	for i, tn := range tenants[:4] {
		st, release, err := s.Acquire(tn)
		if err != nil {
			t.Fatalf("Acquire(%s) again = %v", tn, err)
		}
		got, err := st.State(c, "s")
		if err != nil || got.Version != 1 || string(got.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Errorf("State(s) of %s after reopen = %+v, %v", tn, got, err)
		}
		release()
	}
}

// TestStoresConcurrent hammers a small LRU from several goroutines: Acquire,
// Apply, State and release on random tenants while idle stores are evicted
// and one tenant is removed and re-created. Run with -race; closing a store
// in use would also crash inside Badger.
func TestStoresConcurrent(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) { cfg.MaxOpen = 2 })
	c := newTestCipher(t, "k")
	tenants := []events.TenantID{"t0", "t1", "t2", "t3", "t4"}
	for _, tn := range tenants {
		if err := s.Create(tn); err != nil {
			t.Fatal(err)
		}
	}
	const workers, rounds = 6, 25
	var (
		mu      sync.Mutex
		applied = map[events.TenantID]int{}
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				tn := tenants[r.IntN(len(tenants))]
				st, release, err := s.Acquire(tn)
				if err != nil {
					t.Errorf("Acquire(%s) = %v", tn, err)
					return
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				res, err := st.Apply(c, []Record{{Topic: testTopic, Partition: w, Offset: int64(i), Event: newEvent(id, "s", fmt.Sprintf(`{%q:%d}`, id, i))}})
				if err == nil && res.Applied != 1 {
					err = fmt.Errorf("result %+v", res)
				}
				if err == nil {
					_, err = st.State(c, "s")
				}
				release()
				if err != nil {
					t.Errorf("%s: %v", tn, err)
					return
				}
				mu.Lock()
				applied[tn]++
				mu.Unlock()
			}
		})
	}
	// Meanwhile another tenant comes and goes.
	var churnErr error
	churn := make(chan struct{})
	go func() {
		defer close(churn)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Create("churn"); err != nil {
				churnErr = err
				return
			}
			if st, release, err := s.Acquire("churn"); err == nil {
				_, err = st.Apply(c, []Record{rec(0, 0, newEvent("x", "s", `{}`))})
				release()
				if err != nil {
					churnErr = err
					return
				}
			}
			if err := s.Remove("churn"); err != nil {
				churnErr = err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-churn
	if churnErr != nil {
		t.Errorf("churn: %v", churnErr)
	}
	if n := s.openCount(); n > 2 {
		t.Errorf("after the run: %d open, want at most 2", n)
	}
	total := 0
	for _, tn := range tenants {
		st, release, err := s.Acquire(tn)
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.State(c, "s")
		release()
		if applied[tn] == 0 {
			continue
		}
		if err != nil || got.Version != uint64(applied[tn]) {
			t.Errorf("State(s) of %s = version %d, %v, want %d", tn, got.Version, err, applied[tn])
		}
		total += applied[tn]
	}
	if total != workers*rounds {
		t.Errorf("applied %d in all, want %d", total, workers*rounds)
	}
}

func TestRemoveWaitsForHandles(t *testing.T) {
	s := MustOpenStores(t)
	if err := s.Create("acme"); err != nil {
		t.Fatal(err)
	}
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	go func() { removed <- s.Remove("acme") }()
	select {
	case err := <-removed:
		t.Fatalf("Remove() = %v while a handle is held, want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	// The held store still works.
	if _, err := st.Offsets(); err != nil {
		t.Errorf("Offsets() while Remove waits = %v", err)
	}
	release()
	if err := <-removed; err != nil {
		t.Errorf("Remove() = %v", err)
	}
	if _, _, err := s.Acquire("acme"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire after Remove = %v, want ErrNotFound", err)
	}
}

// TestNoPlaintextOnDisk writes payloads, stream ids and event ids with
// recognisable markers, small and large (value log) values and a
// quarantined record, closes the stores, and greps every file.
func TestNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStores(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create("acme"); err != nil {
		t.Fatal(err)
	}
	st, release, err := s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCipher(t, "acme")
	const (
		payload = "PAYLOAD-MARKER-93f1c2"
		stream  = "customer-SECRET-4471@example.com"
		eventID = "event-ID-MARKER-58d0"
		rawIn   = "QUARANTINED-RAW-MARKER-1b7e"
	)
	big := strings.Repeat(payload, 2000) // ~42 KB: over the value threshold
	var batch []Record
	for i := range 40 {
		batch = append(batch, rec(0, int64(i), newEvent(fmt.Sprintf("%s-%d", eventID, i), fmt.Sprintf("%s-%d", stream, i%4), fmt.Sprintf(`{"note":%q,"n":%d}`, payload, i))))
	}
	batch = append(batch,
		rec(0, 40, newEvent(eventID+"-big", stream, fmt.Sprintf(`{"blob":%q}`, big))),
		reject(0, 41, events.EINVALID, "bad "+payload, []byte(rawIn+" "+stream)),
	)
	MustApply(t, st, c, batch)
	if got, err := st.State(c, stream); err != nil || !strings.Contains(string(got.Data), payload) {
		t.Fatalf("State() = %v, want the payload back", err)
	}
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	markers := []string{payload, stream, eventID, rawIn, "customer-SECRET"}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range markers {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("%s holds %q in clear", path, m)
			}
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walk %s: %d files, %v", dir, files, err)
	}
}

// TestIdleStoresClosed: a store no handle held for IdleClose is closed (an
// idle tenant holds no open DB), a held one never is, and an Acquire opens
// a closed one again with its data.
func TestIdleStoresClosed(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) { cfg.IdleClose = 50 * time.Millisecond })
	c := newTestCipher(t, "k")
	for _, tn := range []events.TenantID{"idle", "busy"} {
		if err := s.Create(tn); err != nil {
			t.Fatal(err)
		}
	}
	st, release, err := s.Acquire("busy")
	if err != nil {
		t.Fatal(err)
	}
	MustApply(t, st, c, []Record{rec(0, 0, newEvent("e", "s", `{"a":1}`))})
	deadline := time.Now().Add(10 * time.Second)
	for s.openCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d stores open after the idle one's IdleClose, want 1 (the held one)", s.openCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	release()
	for s.openCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d stores open after every IdleClose, want 0", s.openCount())
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, release, err = s.Acquire("busy")
	if err != nil {
		t.Fatalf("Acquire after it was closed = %v", err)
	}
	defer release()
	if got, err := st.State(c, "s"); err != nil || got.Version != 1 {
		t.Errorf("State(s) after the store was closed and opened again = %+v, %v, want version 1", got, err)
	}
}
