package projections

// stateCache keeps the states of the streams a store applied to most
// recently, so that the next batch on a stream neither reads, opens nor
// hashes it again: a stream's state is otherwise read back from Badger and
// unsealed by every transaction that touches it. It holds plaintext in
// memory only, as Apply does while it works; it is part of the Store, so
// closing or removing the store (a shred) drops it.
//
// Only Apply writes states, and it fills the cache after its commit, so the
// cache never holds what is not on disk. Rewrap re-seals states without
// changing them and needs no invalidation. A stream's entry is a copy that
// transactions replace, never modify: rec.Data is immutable once written.
//
// The cache is guarded by Store.apply. It is bounded by the bytes of its
// entries; when full, arbitrary entries make room (Go's map order), which
// costs a Badger read later, never correctness.
type stateCache struct {
	m     map[string]stateEntry
	bytes int
	limit int
}

type stateEntry struct {
	hash []byte
	rec  stateRecord
}

// stateCacheBytes bounds each store's cache: 100 streams of 1 KiB take a
// tenth of it. Idle stores are closed by the Stores LRU, and their caches
// with them.
const stateCacheBytes = 1 << 20

const stateEntryOverhead = 128 // map slot, header, time, hash

func (e *stateEntry) size() int {
	return stateEntryOverhead + len(e.rec.Stream) + len(e.rec.Data)
}

// get returns a copy of stream's cached state, or nil.
func (c *stateCache) get(stream string) *streamState {
	e, ok := c.m[stream]
	if !ok {
		return nil
	}
	return &streamState{hash: e.hash, rec: e.rec}
}

// put records s, as committed.
func (c *stateCache) put(s *streamState) {
	if c.limit == 0 {
		c.limit = stateCacheBytes
	}
	if c.m == nil {
		c.m = make(map[string]stateEntry)
	}
	e := stateEntry{hash: s.hash, rec: s.rec}
	if old, ok := c.m[e.rec.Stream]; ok {
		c.bytes -= old.size()
		delete(c.m, e.rec.Stream)
	}
	n := e.size()
	if n > c.limit/8 {
		return // a large document is read back when needed
	}
	for k, old := range c.m {
		if c.bytes+n <= c.limit {
			break
		}
		c.bytes -= old.size()
		delete(c.m, k)
	}
	c.m[e.rec.Stream] = e
	c.bytes += n
}
