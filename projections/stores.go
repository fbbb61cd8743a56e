package projections

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// Sentinel errors; match them with errors.Is. They are *events.Error values,
// so events.ErrorCode maps them to not_found, conflict and unavailable.
var (
	ErrNotFound error = events.Errorf(events.ENOTFOUND, "not found")
	ErrExists   error = events.Errorf(events.ECONFLICT, "already exists")
	ErrClosed   error = events.Errorf(events.EUNAVAILABLE, "tenant stores are closed")
	// ErrStoreClosed is returned by the methods of a Store used after its
	// handle was released and its DB closed (e.g. by Remove).
	ErrStoreClosed error = events.Errorf(events.EUNAVAILABLE, "tenant store is closed")
)

// removingSuffix marks a store directory being deleted by Remove. The name
// starts with a dot, so it is never a tenant id.
const removingSuffix = ".removing"

// Stores is the set of tenant stores under one directory. It opens a
// tenant's Badger DB on first Acquire and keeps it open while handles are
// held; of the idle ones (no handle held) it keeps the MaxOpen most recently
// used open and closes the rest. Safe for concurrent use.
type Stores struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	cond   *sync.Cond                 // broadcast on every change of busy, refs and closed
	open   map[events.TenantID]*entry // open DBs, held or idle
	idle   *list.List                 // entries with refs == 0; front = most recently released
	busy   map[events.TenantID]bool   // a goroutine is opening, closing, creating or removing this store
	closed bool

	// The value-log GC loop (nil channels when ValueLogGCInterval < 0):
	// Close closes gcStop and waits for gcDone.
	gcStop, gcDone chan struct{}
	// testHookGC, if set, runs while CollectGarbage holds a store (atomic:
	// tests set it while the GC loop runs).
	testHookGC atomic.Pointer[func(events.TenantID)]
}

type entry struct {
	st       *Store
	refs     int
	elem     *list.Element // in Stores.idle while refs == 0
	released time.Time     // when refs last dropped to 0
	removing bool          // Remove waits for refs to drain; Acquire waits for Remove
}

// OpenStores validates cfg, fills in its defaults and creates cfg.Dir (mode
// 0700) if needed. Leftovers of an interrupted Remove are deleted. No tenant
// store is opened until Acquire.
func OpenStores(cfg Config) (*Stores, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create tenant stores dir: %w", err)
	}
	s := &Stores{
		cfg:  cfg,
		log:  cfg.Logger,
		now:  func() time.Time { return time.Now().UTC() },
		open: make(map[events.TenantID]*entry),
		idle: list.New(),
		busy: make(map[events.TenantID]bool),
	}
	s.cond = sync.NewCond(&s.mu)
	des, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("read tenant stores dir: %w", err)
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") && strings.Contains(de.Name(), removingSuffix) {
			if err := os.RemoveAll(filepath.Join(cfg.Dir, de.Name())); err != nil {
				return nil, fmt.Errorf("remove leftover of a removed store: %w", err)
			}
		}
	}
	if cfg.ValueLogGCInterval > 0 || cfg.IdleClose > 0 {
		s.gcStop, s.gcDone = make(chan struct{}), make(chan struct{})
		go s.gcLoop(cfg.ValueLogGCInterval, cfg.IdleClose)
	}
	return s, nil
}

// gcLoop collects the open stores' value-log garbage every interval, and
// closes the stores idle for idleClose, until Close (a non-positive
// duration: not that one).
func (s *Stores) gcLoop(interval, idleClose time.Duration) {
	defer close(s.gcDone)
	var gc, idle <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		gc = t.C
	}
	if idleClose > 0 {
		t := time.NewTicker(max(idleClose/4, time.Millisecond))
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case <-s.gcStop:
			return
		case <-gc:
			s.CollectGarbage()
		case <-idle:
			s.CloseIdle(idleClose)
		}
	}
}

// CloseIdle closes every store that no handle has held for d or longer,
// and returns how many it closed. Stores runs it every IdleClose/4.
func (s *Stores) CloseIdle(d time.Duration) int {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0
	}
	cutoff := s.now().Add(-d)
	var victims []*Store
	for el := s.idle.Back(); el != nil; {
		e := el.Value.(*entry)
		prev := el.Prev()
		if e.released.After(cutoff) {
			break // the rest were released later
		}
		s.idle.Remove(el)
		e.elem = nil
		delete(s.open, e.st.tenant)
		s.busy[e.st.tenant] = true
		victims = append(victims, e.st)
		el = prev
	}
	s.mu.Unlock()
	s.closeVictims(victims)
	return len(victims)
}

// gcDiscardRatio is the share of a value-log file that must be garbage for
// the GC to rewrite it: Badger's recommendation, a lifetime write
// amplification of 2 for the value log.
const gcDiscardRatio = 0.5

// CollectGarbage runs Badger's value-log GC on each open store, rewriting
// every value-log file that is at least half garbage (overwritten states,
// values re-sealed by Rewrap), and returns how many files it rewrote. It
// holds one store at a time, as Acquire does, so a Remove (a shred) waits
// for one store's GC at most; idle stores are taken least recently used
// first, so that they go back to the LRU in their order. Errors are
// logged. Stores runs it every ValueLogGCInterval.
func (s *Stores) CollectGarbage() int {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0
	}
	var order []events.TenantID
	for el := s.idle.Back(); el != nil; el = el.Prev() {
		order = append(order, el.Value.(*entry).st.tenant)
	}
	for t, e := range s.open {
		if e.refs > 0 {
			order = append(order, t)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, t := range order {
		s.mu.Lock()
		e := s.open[t]
		if s.closed || e == nil || e.removing || s.busy[t] {
			s.mu.Unlock()
			continue
		}
		e.refs++
		if e.elem != nil {
			s.idle.Remove(e.elem)
			e.elem = nil
		}
		s.mu.Unlock()
		if hook := s.testHookGC.Load(); hook != nil {
			(*hook)(t)
		}
		k, err := e.st.collectGarbage(gcDiscardRatio)
		if err != nil {
			s.log.Warn("value-log GC failed", "tenant", string(t), "err", err)
		}
		n += k
		s.release(e)
	}
	return n
}

// dir returns the directory of tenant t's store after checking t: a
// TenantID built by conversion instead of events.ParseTenantID must not
// escape cfg.Dir.
func (s *Stores) dir(t events.TenantID) (string, error) {
	if _, err := events.ParseTenantID(string(t)); err != nil {
		return "", err
	}
	return filepath.Join(s.cfg.Dir, string(t)), nil
}

// waitLocked blocks, with s.mu held, until no other goroutine works on t's
// store and no Remove of it is in progress. It returns the open entry of t,
// if any.
func (s *Stores) waitLocked(t events.TenantID) (*entry, error) {
	for {
		if s.closed {
			return nil, ErrClosed
		}
		if s.busy[t] {
			s.cond.Wait()
			continue
		}
		e := s.open[t]
		if e != nil && e.removing {
			s.cond.Wait()
			continue
		}
		return e, nil
	}
}

// Create creates tenant t's store directory and Badger DB. It fails with
// ErrExists if the directory is already there.
func (s *Stores) Create(t events.TenantID) error {
	dir, err := s.dir(t)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e, err := s.waitLocked(t)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if e != nil {
		s.mu.Unlock()
		return fmt.Errorf("create store of tenant %s: %w", t, ErrExists)
	}
	s.busy[t] = true
	s.mu.Unlock()

	st, err := s.create(t, dir)
	if err == nil && s.isClosed() {
		err = s.closeStore(st) // created, but there is no set to keep it in
		st = nil
	}

	s.mu.Lock()
	delete(s.busy, t)
	s.cond.Broadcast()
	if err != nil || st == nil {
		s.mu.Unlock()
		return err
	}
	e = &entry{st: st}
	e.elem = s.idle.PushFront(e)
	s.open[t] = e
	victims := s.evictLocked()
	s.mu.Unlock()
	s.closeVictims(victims)
	return nil
}

func (s *Stores) create(t events.TenantID, dir string) (*Store, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create store of tenant %s: %w", t, ErrExists)
		}
		return nil, fmt.Errorf("create store of tenant %s: %w", t, err)
	}
	st, err := s.openStore(t, dir)
	if err != nil {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove half-created store of tenant %s: %w", t, rmErr))
		}
		return nil, err
	}
	return st, nil
}

// Acquire returns tenant t's store, opening it if needed, and the function
// that releases it. The release function must be called exactly once when
// the caller is done with the store (further calls do nothing); the Store
// must not be used after it. Acquire fails with ErrNotFound (errors.Is) when
// t has no store.
func (s *Stores) Acquire(t events.TenantID) (*Store, func(), error) {
	dir, err := s.dir(t)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	e, err := s.waitLocked(t)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	if e != nil {
		e.refs++
		if e.elem != nil {
			s.idle.Remove(e.elem)
			e.elem = nil
		}
		s.mu.Unlock()
		return e.st, s.releaser(e), nil
	}
	s.busy[t] = true
	s.mu.Unlock()

	var st *Store
	if _, err = os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("store of tenant %s: %w", t, ErrNotFound)
	} else if err == nil {
		st, err = s.openStore(t, dir)
	}
	if err == nil && s.isClosed() {
		err = errors.Join(ErrClosed, s.closeStore(st))
	}

	s.mu.Lock()
	delete(s.busy, t)
	s.cond.Broadcast()
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	e = &entry{st: st, refs: 1}
	s.open[t] = e
	victims := s.evictLocked()
	s.mu.Unlock()
	s.closeVictims(victims)
	return st, s.releaser(e), nil
}

func (s *Stores) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Stores) releaser(e *entry) func() {
	var once sync.Once
	return func() { once.Do(func() { s.release(e) }) }
}

func (s *Stores) release(e *entry) {
	s.mu.Lock()
	e.refs--
	if e.refs > 0 {
		s.mu.Unlock()
		return
	}
	s.cond.Broadcast() // Remove and Close wait for refs to drain
	if e.removing || s.closed {
		s.mu.Unlock()
		return
	}
	e.released = s.now()
	e.elem = s.idle.PushFront(e)
	victims := s.evictLocked()
	s.mu.Unlock()
	s.closeVictims(victims)
}

// evictLocked takes idle stores beyond MaxOpen out of the set, least
// recently used first, and marks them busy until closeVictims closed them.
func (s *Stores) evictLocked() []*Store {
	var victims []*Store
	for len(s.open) > s.cfg.MaxOpen && s.idle.Len() > 0 {
		e := s.idle.Remove(s.idle.Back()).(*entry)
		e.elem = nil
		delete(s.open, e.st.tenant)
		s.busy[e.st.tenant] = true
		victims = append(victims, e.st)
	}
	return victims
}

// closeVictims closes the stores evictLocked chose, outside s.mu. There is
// no caller to return an error to, so errors are logged.
func (s *Stores) closeVictims(victims []*Store) {
	for _, st := range victims {
		if err := s.closeStore(st); err != nil {
			s.log.Error("close idle tenant store", "tenant", st.tenant, "err", err)
		}
		s.mu.Lock()
		delete(s.busy, st.tenant)
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// Remove closes tenant t's store and deletes its directory. It waits for
// the handles held on it to be released (so it must not be called while the
// caller holds one, and a long call on a held store, such as Rewrap, delays
// it: cancel it first) and makes Acquire wait meanwhile; afterwards Acquire
// fails with ErrNotFound, and a *Store kept past its release fails with
// ErrStoreClosed. Remove fails with ErrNotFound if t has no store.
//
// The directory is renamed away first, so a crash halfway leaves no
// half-deleted store behind (OpenStores deletes the leftover). Deleting the
// files does not wipe their blocks: what remains is ciphertext, made
// unreadable by destroying the tenant's keys.
func (s *Stores) Remove(t events.TenantID) error {
	dir, err := s.dir(t)
	if err != nil {
		return err
	}
	s.mu.Lock()
	e, err := s.waitLocked(t)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if e != nil {
		e.removing = true
		for e.refs > 0 {
			s.cond.Wait()
		}
		if e.elem != nil {
			s.idle.Remove(e.elem)
			e.elem = nil
		}
		delete(s.open, t)
	}
	s.busy[t] = true
	s.mu.Unlock()

	err = s.remove(t, dir, e)

	s.mu.Lock()
	delete(s.busy, t)
	s.cond.Broadcast()
	s.mu.Unlock()
	return err
}

func (s *Stores) remove(t events.TenantID, dir string, e *entry) error {
	var closeErr error
	if e != nil {
		closeErr = s.closeStore(e.st)
	}
	trash := filepath.Join(s.cfg.Dir, "."+string(t)+removingSuffix+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.Join(fmt.Errorf("remove store of tenant %s: %w", t, ErrNotFound), closeErr)
		}
		return errors.Join(fmt.Errorf("remove store of tenant %s: %w", t, err), closeErr)
	}
	if err := os.RemoveAll(trash); err != nil {
		return errors.Join(fmt.Errorf("remove store of tenant %s: %w", t, err), closeErr)
	}
	return closeErr
}

// Close waits for every handle to be released, then closes all open stores.
// Acquire, Create and Remove fail with ErrClosed once Close has begun.
func (s *Stores) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	if s.gcStop != nil {
		s.mu.Unlock()
		close(s.gcStop)
		<-s.gcDone // a GC under way releases its handles first
		s.mu.Lock()
	}
	for !s.drainedLocked() {
		s.cond.Wait()
	}
	all := make([]*Store, 0, len(s.open))
	for _, e := range s.open {
		all = append(all, e.st)
	}
	clear(s.open)
	s.idle.Init()
	s.mu.Unlock()

	var errs []error
	for _, st := range all {
		errs = append(errs, s.closeStore(st))
	}
	return errors.Join(errs...)
}

func (s *Stores) drainedLocked() bool {
	if len(s.busy) > 0 {
		return false
	}
	for _, e := range s.open {
		if e.refs > 0 || e.removing {
			return false
		}
	}
	return true
}

// OpenCount reports how many tenant stores are open (a gauge).
func (s *Stores) OpenCount() int { return s.openCount() }

// openCount reports how many Badger DBs are open.
func (s *Stores) openCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

func (s *Stores) openStore(t events.TenantID, dir string) (*Store, error) {
	log := s.log.With("tenant", string(t))
	db, err := badger.Open(s.cfg.badgerOptions(dir, log))
	if err != nil {
		return nil, fmt.Errorf("open store of tenant %s: %w", t, err)
	}
	return &Store{
		tenant: t, db: db, now: s.now, maxPayload: int(db.Opts().ValueLogFileSize / 2),
		rewrapping: make(chan struct{}, 1),
	}, nil
}

// closeStore closes st's DB once the calls using st have returned; later
// calls fail with ErrStoreClosed.
func (s *Stores) closeStore(st *Store) error {
	if !st.markClosed() {
		return nil
	}
	if err := st.db.Close(); err != nil {
		return fmt.Errorf("close store of tenant %s: %w", st.tenant, err)
	}
	return nil
}
