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
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return nil, events.Errorf(events.EINVALID, "audit filter: until is before since")
	}
	var start uint64
	if f.After != nil {
		if *f.After == math.MaxUint64 {
			return nil, nil
		}
		start = *f.After + 1
	}

	l.filesMu.RLock() // keeps the segment files open while we read them
	defer l.filesMu.RUnlock()
	if l.filesClosed {
		return nil, ErrClosed
	}

	// Snapshot: every slice below is only ever appended to, so the first n
	// entries stay valid after the lock is released.
	l.mu.RLock()
	n := l.idx.size
	meta := l.idx.meta[:n]
	segs := l.idx.segs[:len(l.idx.segs):len(l.idx.segs)]
	var tenantID, actionID uint32
	var ok = true
	var candidates []uint64
	all := true
	if f.Tenant != "" {
		tenantID, ok = l.idx.tenantIDs[NormalizeTenant(f.Tenant)]
		candidates, all = l.idx.byTenant[tenantID], false
	} else if f.Flagged {
		candidates, all = l.idx.flagged, false
	}
	if f.Action != "" && ok {
		actionID, ok = l.idx.actionIDs[string(f.Action)]
	}
	l.mu.RUnlock()
	if !ok || start >= n {
		return nil, nil
	}

	since, until := int64(math.MinInt64), int64(math.MaxInt64)
	if !f.Since.IsZero() {
		since = timeKey(f.Since)
	}
	if !f.Until.IsZero() {
		until = timeKey(f.Until)
	}
	match := func(i uint64) bool {
		m := &meta[i]
		return (!f.Flagged || m.size&flaggedBit != 0) &&
			(f.Tenant == "" || m.tenant == tenantID) &&
			(f.Action == "" || m.action == actionID) &&
			m.time >= since && m.time < until
	}
	var hits []uint64
	visit := func(i uint64, step int) bool {
		if step%4096 == 0 && ctx.Err() != nil {
			return false
		}
		if match(i) {
			hits = append(hits, i)
		}
		return len(hits) < limit
	}
	if all {
		for i, step := start, 0; i < n && visit(i, step); i, step = i+1, step+1 {
		}
	} else {
		j, _ := slices.BinarySearch(candidates, start)
		for step := 0; j < len(candidates) && visit(candidates[j], step); j, step = j+1, step+1 {
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	out := make([]Record, 0, len(hits))
	var buf []byte
	for _, i := range hits {
		m := &meta[i]
		s := sort.Search(len(segs), func(k int) bool { return segs[k].first > i }) - 1
		seg := segs[s]
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
