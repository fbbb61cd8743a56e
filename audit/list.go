package audit

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

// Filter selects records for List. Zero fields select everything.
type Filter struct {
	Tenant  string    // only records that touched this tenant (normalized like Record.Tenant)
	Flagged bool      // only flagged records
	Action  Action    // only this action
	Since   time.Time // only records at or after Since
	Until   time.Time // only records before Until
	After   *uint64   // only records with an index greater than *After (a cursor: the last Index seen)
	Limit   int       // at most this many records; default DefaultListLimit, at most MaxListLimit
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// List returns the records that match f, in index order. Filters are
// evaluated against an in-memory index; only matching records are read from
// disk. To page, pass the last returned Index as f.After.
func (l *Log) List(ctx context.Context, f Filter) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start, limit, err := f.bounds()
	if err != nil || limit == 0 {
		return nil, err
	}

	l.filesMu.RLock() // keeps the segment files open while we read them
	defer l.filesMu.RUnlock()
	if l.filesClosed {
		return nil, ErrClosed
	}
	v, ok := l.snapshot(f)
	if !ok || start >= v.n {
		return nil, nil
	}
	hits := v.search(ctx, start, limit)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return v.read(hits)
}

// bounds returns the first index f asks for and how many records at most
// (0 when f.After is the last possible index: nothing can follow it).
func (f Filter) bounds() (start uint64, limit int, err error) {
	limit = f.Limit
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return 0, 0, events.Errorf(events.EINVALID, "audit filter: until is before since")
	}
	if f.After != nil {
		if *f.After == math.MaxUint64 {
			return 0, 0, nil
		}
		start = *f.After + 1
	}
	return start, limit, nil
}

// listView is what one List reads: a snapshot of the index (the first n
// records' metadata and the segments holding them) and f's terms in the
// index's interned ids.
type listView struct {
	f                  Filter
	n                  uint64
	meta               []recMeta
	segs               []*segment
	tenantID, actionID uint32
	candidates         []uint64 // the records to test, ascending, unless all
	all                bool
	since, until       int64 // timeKeys
}

// snapshot returns f's view of the index as it is now, and false if f names a tenant or
// an action no record has.
func (l *Log) snapshot(f Filter) (*listView, bool) {
	v := &listView{f: f, all: true, since: math.MinInt64, until: math.MaxInt64}
	if !f.Since.IsZero() {
		v.since = timeKey(f.Since)
	}
	if !f.Until.IsZero() {
		v.until = timeKey(f.Until)
	}
	// Every slice below is only ever appended to, so the first n entries
	// stay valid after the lock is released.
	l.mu.RLock()
	defer l.mu.RUnlock()
	v.n = l.idx.size
	v.meta = l.idx.meta[:v.n]
	v.segs = l.idx.segs[:len(l.idx.segs):len(l.idx.segs)]
	ok := true
	if f.Tenant != "" {
		v.tenantID, ok = l.idx.tenantIDs[NormalizeTenant(f.Tenant)]
		v.candidates, v.all = l.idx.byTenant[v.tenantID], false
	} else if f.Flagged {
		v.candidates, v.all = l.idx.flagged, false
	}
	if f.Action != "" && ok {
		v.actionID, ok = l.idx.actionIDs[string(f.Action)]
	}
	return v, ok
}

// match reports whether record i passes the filter.
func (v *listView) match(i uint64) bool {
	m := &v.meta[i]
	return (!v.f.Flagged || m.size&flaggedBit != 0) &&
		(v.f.Tenant == "" || m.tenant == v.tenantID) &&
		(v.f.Action == "" || m.action == v.actionID) &&
		m.time >= v.since && m.time < v.until
}

// search returns the indices of up to limit matching records from start
// on, ascending; it stops early (with what it found) if ctx ends.
func (v *listView) search(ctx context.Context, start uint64, limit int) []uint64 {
	var hits []uint64
	visit := func(i uint64, step int) bool {
		if step%4096 == 0 && ctx.Err() != nil {
			return false
		}
		if v.match(i) {
			hits = append(hits, i)
		}
		return len(hits) < limit
	}
	if v.all {
		for i, step := start, 0; i < v.n && visit(i, step); i, step = i+1, step+1 {
		}
	} else {
		j, _ := slices.BinarySearch(v.candidates, start)
		for step := 0; j < len(v.candidates) && visit(v.candidates[j], step); j, step = j+1, step+1 {
		}
	}
	return hits
}

// read reads the records hits from the segment files, checking each is
// canonical and at its place.
func (v *listView) read(hits []uint64) ([]Record, error) {
	out := make([]Record, 0, len(hits))
	var buf []byte
	for _, i := range hits {
		m := &v.meta[i]
		s := sort.Search(len(v.segs), func(k int) bool { return v.segs[k].first > i }) - 1
		seg := v.segs[s]
		size := int(m.size &^ flaggedBit)
		buf = slices.Grow(buf[:0], size)[:size]
		if _, err := seg.r.ReadAt(buf, int64(m.off)); err != nil {
			return nil, fmt.Errorf("audit: read record %d: %w", i, err)
		}
		rec, err := ParseRecord(buf)
		if err != nil {
			return nil, &InconsistentError{At: i, Want: "a canonical record", Got: err.Error(), File: seg.name, Offset: int64(m.off)}
		}
		if rec.Index != i {
			return nil, &InconsistentError{At: i, Want: fmt.Sprintf("index %d", i), Got: fmt.Sprintf("index %d", rec.Index), File: seg.name, Offset: int64(m.off)}
		}
		out = append(out, rec)
	}
	return out, nil
}

// segment is one segment file, open for reading.
type segment struct {
	first uint64
	name  string
	r     *os.File
}

// recMeta is what the in-memory index keeps per record: where it is and what
// List filters on. 24 bytes.
type recMeta struct {
	off    uint32 // byte offset in its segment
	size   uint32 // line length without the newline; flaggedBit if flagged
	time   int64  // timeKey of Time
	tenant uint32 // interned Tenant (0: none)
	action uint32 // interned Action
}

const flaggedBit = 1 << 31

// index is the in-memory index of the durable records. The writer appends to
// it under Log.mu; List reads a snapshot.
type index struct {
	size uint64
	head string // hex leaf hash of the last record
	segs []*segment
	meta []recMeta

	tenantIDs map[string]uint32
	actionIDs map[string]uint32
	byTenant  map[uint32][]uint64 // tenant → indices, ascending
	flagged   []uint64            // indices of flagged records, ascending
}

func newIndex() index {
	return index{
		tenantIDs: map[string]uint32{"": 0},
		actionIDs: map[string]uint32{"": 0},
		byTenant:  map[uint32][]uint64{},
	}
}

// add indexes a committed batch, in index order, after the records already
// indexed.
func (x *index) add(ps []pending) {
	for _, p := range ps {
		x.add1(p.rec, p.off, p.size)
	}
}

// add1 indexes the record after the last one indexed: its line is size bytes
// (without the newline) at offset off of its segment.
func (x *index) add1(r Record, off int64, size int) {
	m := recMeta{
		off:    uint32(off),
		size:   uint32(size),
		time:   timeKey(r.Time),
		tenant: intern(x.tenantIDs, r.Tenant),
		action: intern(x.actionIDs, string(r.Action)),
	}
	if r.Flagged {
		m.size |= flaggedBit
		x.flagged = append(x.flagged, r.Index)
	}
	if m.tenant != 0 {
		x.byTenant[m.tenant] = append(x.byTenant[m.tenant], r.Index)
	}
	x.meta = append(x.meta, m)
}

func intern(ids map[string]uint32, s string) uint32 {
	id, ok := ids[s]
	if !ok {
		id = uint32(len(ids))
		ids[s] = id
	}
	return id
}

var (
	minTimeKey = time.Unix(0, math.MinInt64)
	maxTimeKey = time.Unix(0, math.MaxInt64)
)

// timeKey maps t to Unix nanoseconds, clamped to the int64 range, keeping
// the order of times.
func timeKey(t time.Time) int64 {
	switch {
	case t.Before(minTimeKey):
		return math.MinInt64
	case t.After(maxTimeKey):
		return math.MaxInt64
	}
	return t.UnixNano()
}
