package projections

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// The vector index of a tenant's documents (events.IsDocumentType). It
// lives in the tenant's own store, every value sealed like the others:
//
//	d/dim        → sealed BE32 dimension of the tenant's embeddings (fixed by the first document)
//	v/<h(stream)> → sealed vectorRecord: document id, text, attributes, embedding
//	m/vindex     → clear marker: the index was built from the log (format version)
//
// Apply writes v/ and d/ in the transaction that appends the document
// event to the log, so the index never disagrees with the log; the log
// holds every document event, so the index is rebuilt from it
// (RebuildIndex) when m/vindex is missing — a store from before the
// index, or an index lost (a new store is marked built at Create).
//
// In memory, a Store loads its index on first search (every v/ value
// opened with the caller's cipher), keeps it up to date after each commit
// of Apply, and drops it when the store is closed (evicted by the LRU,
// idle-closed, or removed by a shred). Search is exact: a scan of every
// document's normalised vector (cosine similarity), then the k best
// entries are opened from the store again for their text, so every search
// decrypts what it answers (the caller audits the key ids, and a value
// sealed under another tenant's key is refused).
const (
	prefixDim    = "d/"
	prefixVector = "v/"
	ksDim        = "vector-dim"
	ksVector     = "vector"

	vectorCodecV1 = 0x01
	vindexV1      = 0x01
)

var (
	dimKey        = []byte(prefixDim + "dim")
	vindexMarker  = []byte(prefixMeta + "vindex")
	errMalformedV = errors.New("malformed vector record")
)

func vectorKey(sh []byte) []byte { return concat([]byte(prefixVector), sh) }

// Hit is one document a search found.
type Hit struct {
	ID         string            `json:"id"` // the document's stream id
	Score      float32           `json:"score"`
	Text       string            `json:"text"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// SearchQuery is a search of one tenant's documents.
type SearchQuery struct {
	Vector []float32         // the query embedding: the tenant's dimension
	K      int               // how many documents at most: 1..events.MaxSearchK
	Filter map[string]string // attributes a document must have, all of them
}

// IndexStats describes a store's in-memory index.
type IndexStats struct {
	Loaded    bool
	Documents int
	Dimension int
	Bytes     int64 // memory the index holds (vectors, ids, attributes), estimated
}

// vectorRecord is the sealed value of v/<h(stream)>:
//
//	0x01 | bytes id | bytes text | uvarint n | n × (bytes name, bytes value) | uvarint dim | dim × float32 LE
//
// bytes = uvarint length + bytes.
type vectorRecord struct {
	ID         string
	Text       string
	Attributes map[string]string
	Embedding  []float32
	// head, when set, makes UnmarshalBinary skip the embedding.
	head bool
}

var (
	_ encoding.BinaryMarshaler   = vectorRecord{}
	_ encoding.BinaryUnmarshaler = (*vectorRecord)(nil)
)

// MarshalBinary encodes r.
func (r vectorRecord) MarshalBinary() ([]byte, error) {
	n := 16 + len(r.ID) + len(r.Text) + 4*len(r.Embedding)
	for k, v := range r.Attributes {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, vectorCodecV1)
	b = appendBytes(b, r.ID)
	b = appendBytes(b, r.Text)
	b = binary.AppendUvarint(b, uint64(len(r.Attributes)))
	for _, k := range slices.Sorted(mapsKeys(r.Attributes)) {
		b = appendBytes(b, k)
		b = appendBytes(b, r.Attributes[k])
	}
	b = binary.AppendUvarint(b, uint64(len(r.Embedding)))
	for _, x := range r.Embedding {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded, copying what it
// keeps (the caller clears the input).
func (r *vectorRecord) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != vectorCodecV1 {
		return errMalformedV
	}
	d := logDecoder{b: b[1:]}
	r.ID = string(d.bytes())
	r.Text = string(d.bytes())
	n := d.uvarint()
	if d.err != nil || n > events.MaxAttributes {
		return errMalformedV
	}
	r.Attributes = nil
	if n > 0 {
		r.Attributes = make(map[string]string, n)
		for range n {
			k := string(d.bytes())
			r.Attributes[k] = string(d.bytes())
		}
	}
	dim := d.uvarint()
	if d.err != nil || dim == 0 || dim > events.MaxEmbeddingDim || uint64(len(d.b)) != 4*dim {
		return errMalformedV
	}
	r.Embedding = nil
	if !r.head {
		r.Embedding = make([]float32, dim)
		for i := range r.Embedding {
			r.Embedding[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[4*i:]))
		}
	}
	return nil
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// dimRecord is the sealed value of d/dim.
type dimRecord uint32

func (d dimRecord) MarshalBinary() ([]byte, error) {
	return binary.BigEndian.AppendUint32(nil, uint32(d)), nil
}
func (d *dimRecord) UnmarshalBinary(b []byte) error {
	if len(b) != 4 {
		return errMalformedV
	}
	*d = dimRecord(binary.BigEndian.Uint32(b))
	return nil
}

// docOp is a change of the index that a committed transaction made.
type docOp struct {
	key string // h(stream)
	rec *vectorRecord
	del bool
}

// vectorIndex is a tenant's documents in memory: row i is ids[i],
// attrs[i] and vecs[i*dim:(i+1)*dim], the embedding scaled to unit
// length.
type vectorIndex struct {
	dim   int
	keys  []string // h(stream) of each row
	ids   []string
	attrs []map[string]string
	vecs  []float32
	row   map[string]int // h(stream) → row
}

func newVectorIndex(dim int) *vectorIndex {
	return &vectorIndex{dim: dim, row: make(map[string]int)}
}

func (ix *vectorIndex) put(key string, r *vectorRecord) {
	if ix.dim == 0 {
		ix.dim = len(r.Embedding)
	}
	if len(r.Embedding) != ix.dim {
		return // never applied: Apply quarantines other dimensions
	}
	if i, ok := ix.row[key]; ok {
		ix.ids[i], ix.attrs[i] = r.ID, r.Attributes
		normalize(ix.vecs[i*ix.dim:(i+1)*ix.dim], r.Embedding)
		return
	}
	ix.row[key] = len(ix.keys)
	ix.keys = append(ix.keys, key)
	ix.ids = append(ix.ids, r.ID)
	ix.attrs = append(ix.attrs, r.Attributes)
	n := len(ix.vecs)
	ix.vecs = slices.Grow(ix.vecs, ix.dim)[:n+ix.dim]
	normalize(ix.vecs[n:], r.Embedding)
}

func (ix *vectorIndex) del(key string) {
	i, ok := ix.row[key]
	if !ok {
		return
	}
	last := len(ix.keys) - 1
	if i != last {
		ix.keys[i], ix.ids[i], ix.attrs[i] = ix.keys[last], ix.ids[last], ix.attrs[last]
		copy(ix.vecs[i*ix.dim:(i+1)*ix.dim], ix.vecs[last*ix.dim:])
		ix.row[ix.keys[i]] = i
	}
	clear(ix.vecs[last*ix.dim:])
	ix.keys, ix.ids, ix.attrs, ix.vecs = ix.keys[:last], ix.ids[:last], ix.attrs[:last], ix.vecs[:last*ix.dim]
	delete(ix.row, key)
}

func (ix *vectorIndex) bytes() int64 {
	n := int64(cap(ix.vecs))*4 + int64(len(ix.keys))*(16+16+8+hashLen+48)
	for i, id := range ix.ids {
		n += int64(len(id))
		for k, v := range ix.attrs[i] {
			n += int64(len(k) + len(v) + 32)
		}
	}
	return n
}

// normalize writes v scaled to unit length into dst.
func normalize(dst, v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	inv := 1 / math.Sqrt(s)
	for i, x := range v {
		dst[i] = float32(float64(x) * inv)
	}
}

// Dot returns the dot product of a and b (of equal length).
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// scored is a row and its score.
type scored struct {
	row   int
	score float32
}

// TopK keeps the k best of the scores it is offered: a min-heap on score
// (ties: the lower row wins, so results are deterministic).
type TopK struct {
	k int
	h []scored
}

// NewTopK returns a TopK of k.
func NewTopK(k int) *TopK { return &TopK{k: k, h: make([]scored, 0, k)} }

func worse(a, b scored) bool { return a.score < b.score || (a.score == b.score && a.row > b.row) }

// Offer considers row with score.
func (t *TopK) Offer(row int, score float32) {
	s := scored{row, score}
	if len(t.h) < t.k {
		t.h = append(t.h, s)
		for i := len(t.h) - 1; i > 0; {
			p := (i - 1) / 2
			if !worse(t.h[i], t.h[p]) {
				break
			}
			t.h[i], t.h[p] = t.h[p], t.h[i]
			i = p
		}
		return
	}
	if !worse(t.h[0], s) {
		return
	}
	t.h[0] = s
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(t.h) && worse(t.h[l], t.h[m]) {
			m = l
		}
		if r := l + 1; r < len(t.h) && worse(t.h[r], t.h[m]) {
			m = r
		}
		if m == i {
			break
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// Rows returns the rows kept, best first, and their scores.
func (t *TopK) Rows() (rows []int, scores []float32) {
	s := slices.Clone(t.h)
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.row, b.row)
	})
	for _, x := range s {
		rows, scores = append(rows, x.row), append(scores, x.score)
	}
	return rows, scores
}

func matches(attrs, filter map[string]string) bool {
	for k, v := range filter {
		if got, ok := attrs[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// search scans the index. q.Vector has ix.dim values.
func (ix *vectorIndex) search(q []float32, k int, filter map[string]string) ([]int, []float32) {
	nq := make([]float32, len(q))
	normalize(nq, q)
	top := NewTopK(k)
	d := ix.dim
	for i := range ix.ids {
		if len(filter) > 0 && !matches(ix.attrs[i], filter) {
			continue
		}
		top.Offer(i, Dot(nq, ix.vecs[i*d:(i+1)*d]))
	}
	return top.Rows()
}

// vindex is the Store's in-memory index state, guarded by Store.vmu.
type vindex struct {
	idx *vectorIndex // nil until loaded
}

// Search returns the k documents of the store most similar to q.Vector
// (cosine similarity), of those whose attributes include q.Filter, best
// first. The index is loaded on first use (and rebuilt from the log if it
// is missing). A query vector of another dimension than the tenant's is
// EINVALID (events.ReasonEmbeddingDimension); a store without documents
// answers none. The answers' text is opened from the store with c.
func (st *Store) Search(c Cipher, q SearchQuery) ([]Hit, error) {
	if err := checkCipher(c); err != nil {
		return nil, err
	}
	if q.K < 1 || q.K > events.MaxSearchK {
		return nil, events.Reasonf(events.EINVALID, events.ReasonSearchKInvalid, "k must be 1 to %d", events.MaxSearchK)
	}
	if err := events.CheckVector(q.Vector); err != nil {
		return nil, err
	}
	if err := st.enter(); err != nil {
		return nil, err
	}
	defer st.leave()
	if err := st.ensureIndex(c); err != nil {
		return nil, err
	}
	st.vmu.RLock()
	ix := st.vidx.idx
	if ix == nil || len(ix.ids) == 0 {
		st.vmu.RUnlock()
		return nil, nil
	}
	if len(q.Vector) != ix.dim {
		st.vmu.RUnlock()
		return nil, events.Reasonf(events.EINVALID, events.ReasonEmbeddingDimension, "query vector has %d values, the tenant's documents %d", len(q.Vector), ix.dim)
	}
	rows, scores := ix.search(q.Vector, q.K, q.Filter)
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = ix.keys[r]
	}
	st.vmu.RUnlock()

	hits := make([]Hit, 0, len(rows))
	err := st.db.View(func(txn *badger.Txn) error {
		for i, key := range keys {
			k := vectorKey([]byte(key))
			item, err := txn.Get(k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // deleted since the scan
			}
			if err != nil {
				return fmt.Errorf("read vector: %w", err)
			}
			rec := vectorRecord{head: true}
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksVector, k, v, &rec) }); err != nil {
				return err
			}
			hits = append(hits, Hit{ID: rec.ID, Score: scores[i], Text: rec.Text, Attributes: rec.Attributes})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return hits, nil
}

// IndexStats describes the store's in-memory index.
func (st *Store) IndexStats() IndexStats {
	st.vmu.RLock()
	defer st.vmu.RUnlock()
	ix := st.vidx.idx
	if ix == nil {
		return IndexStats{}
	}
	return IndexStats{Loaded: true, Documents: len(ix.ids), Dimension: ix.dim, Bytes: ix.bytes()}
}

// ensureIndex loads the index if it is not in memory, rebuilding it from
// the log first when the store has none. It holds the apply lock, so no
// Apply commits meanwhile. The caller holds st.enter.
func (st *Store) ensureIndex(c Cipher) error {
	st.vmu.RLock()
	loaded := st.vidx.idx != nil
	st.vmu.RUnlock()
	if loaded {
		return nil
	}
	st.apply.Lock()
	defer st.apply.Unlock()
	st.vmu.Lock()
	defer st.vmu.Unlock()
	if st.vidx.idx != nil {
		return nil
	}
	built, err := st.indexBuilt()
	if err != nil {
		return err
	}
	if !built {
		if _, err := st.rebuildIndex(c); err != nil {
			return err
		}
	}
	ix, err := st.loadIndex(c)
	if err != nil {
		return err
	}
	st.vidx.idx = ix
	return nil
}

func (st *Store) indexBuilt() (bool, error) {
	var built bool
	err := st.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(vindexMarker)
		switch {
		case err == nil:
			built = true
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("read index marker: %w", err)
		}
		return nil
	})
	return built, err
}

// markIndexBuilt records that the index is complete (a new store).
func (st *Store) markIndexBuilt() error {
	if err := st.db.Update(func(txn *badger.Txn) error { return txn.Set(vindexMarker, []byte{vindexV1}) }); err != nil {
		return fmt.Errorf("mark vector index of tenant %s: %w", st.tenant, err)
	}
	return nil
}

// loadIndex reads every v/ value into a new index.
func (st *Store) loadIndex(c Cipher) (*vectorIndex, error) {
	var ix *vectorIndex
	err := st.db.View(func(txn *badger.Txn) error {
		dim, err := readDim(st, c, txn)
		if err != nil {
			return err
		}
		ix = newVectorIndex(dim)
		it := txn.NewIterator(iterOptions([]byte(prefixVector), 100))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefixVector)+hashLen {
				return events.Errorf(events.EINTERNAL, "malformed vector key %x", k)
			}
			var rec vectorRecord
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksVector, k, v, &rec) }); err != nil {
				return err
			}
			if dim == 0 || len(rec.Embedding) != dim {
				return events.Errorf(events.EINTERNAL, "vector %x has %d values, the index %d", k, len(rec.Embedding), dim)
			}
			ix.put(string(k[len(prefixVector):]), &rec)
			clear(rec.Embedding)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load vector index of tenant %s: %w", st.tenant, err)
	}
	return ix, nil
}

func readDim(st *Store, c Cipher, txn *badger.Txn) (int, error) {
	item, err := txn.Get(dimKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read vector dimension: %w", err)
	}
	var d dimRecord
	if err := item.Value(func(v []byte) error { return st.unseal(c, ksDim, dimKey, v, &d) }); err != nil {
		return 0, err
	}
	if d == 0 || d > events.MaxEmbeddingDim {
		return 0, events.Errorf(events.EINTERNAL, "malformed vector dimension")
	}
	return int(d), nil
}

// applyIndex brings the in-memory index, if loaded, up to date with what
// a committed transaction did. The caller holds the apply lock.
func (st *Store) applyIndex(ops []docOp) {
	if len(ops) == 0 {
		return
	}
	st.vmu.Lock()
	defer st.vmu.Unlock()
	ix := st.vidx.idx
	if ix == nil {
		return
	}
	for _, op := range ops {
		if op.del {
			ix.del(op.key)
		} else {
			ix.put(op.key, op.rec)
		}
	}
}

// dropIndex forgets the in-memory index, clearing its vectors.
func (st *Store) dropIndex() {
	st.vmu.Lock()
	defer st.vmu.Unlock()
	if ix := st.vidx.idx; ix != nil {
		clear(ix.vecs)
		clear(ix.ids)
		clear(ix.attrs)
	}
	st.vidx.idx = nil
}

// RebuildIndex deletes the store's vector index and builds it again from
// the sealed log: for each stream, the last document event (unless a
// delete came after it). It returns how many documents the index holds.
// The in-memory index is dropped and loaded again on the next search.
// Apply waits meanwhile.
func (st *Store) RebuildIndex(c Cipher) (int, error) {
	if err := checkCipher(c); err != nil {
		return 0, err
	}
	if err := st.enter(); err != nil {
		return 0, err
	}
	defer st.leave()
	st.apply.Lock()
	defer st.apply.Unlock()
	st.dropIndex()
	return st.rebuildIndex(c)
}

// rebuildIndex is RebuildIndex with the apply lock held.
func (st *Store) rebuildIndex(c Cipher) (int, error) {
	// Drop what is there: the old entries, the dimension, the marker.
	var old [][]byte
	err := st.db.View(func(txn *badger.Txn) error {
		for _, p := range []string{prefixVector, prefixDim} {
			opts := badger.DefaultIteratorOptions
			opts.Prefix, opts.PrefetchValues = []byte(p), false
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				old = append(old, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
	}
	wb := st.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range append(old, vindexMarker) {
		if err := wb.Delete(k); err != nil {
			return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
	}

	// Replay the log, stream by stream (its keys are h(stream) then the
	// version): the last document event of each stream wins, a delete
	// after it removes it.
	wb = st.db.NewWriteBatch()
	defer wb.Cancel()
	dim, n := 0, 0
	var cur []byte
	var doc *vectorRecord
	emit := func() error {
		if doc == nil {
			return nil
		}
		k := vectorKey(cur)
		sealed, err := st.seal(c, ksVector, k, *doc)
		clear(doc.Embedding)
		doc = nil
		if err != nil {
			return err
		}
		n++
		return wb.Set(k, sealed)
	}
	err = st.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions([]byte(prefixLog), 100))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefixLog)+hashLen+8 {
				return events.Errorf(events.EINTERNAL, "malformed log key %x", k)
			}
			sh := k[len(prefixLog) : len(prefixLog)+hashLen]
			if !bytes.Equal(sh, cur) {
				if err := emit(); err != nil {
					return err
				}
				cur = bytes.Clone(sh)
			}
			var rec logRecord
			if err := item.Value(func(v []byte) error { return st.unseal(c, ksLog, k, v, &rec) }); err != nil {
				return err
			}
			ev := &rec.Event
			switch {
			case ev.IsDelete():
				doc = nil
			case events.IsDocumentType(ev.Type):
				d, err := events.ParseDocument(ev.Data)
				if err != nil || d.Embedding == nil || (dim != 0 && len(d.Embedding) != dim) {
					continue // never indexed (an event from before documents were)
				}
				dim = len(d.Embedding)
				doc = &vectorRecord{ID: ev.Subject, Text: d.Text, Attributes: d.Attributes, Embedding: d.Embedding}
			}
		}
		return emit()
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
	}
	if dim > 0 {
		sealed, err := st.seal(c, ksDim, dimKey, dimRecord(dim))
		if err != nil {
			return 0, err
		}
		if err := wb.Set(dimKey, sealed); err != nil {
			return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
		}
	}
	if err := wb.Set(vindexMarker, []byte{vindexV1}); err != nil {
		return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
	}
	if err := wb.Flush(); err != nil {
		return 0, fmt.Errorf("rebuild vector index of tenant %s: %w", st.tenant, err)
	}
	return n, nil
}

// document checks the data of a document event for the store: a valid
// document with an embedding of the tenant's dimension (the first
// document's, or this one's if it is the first). The error is the reason
// it is quarantined.
func (a *applier) document(ev *events.Event) (*vectorRecord, error) {
	d, err := events.ParseDocument(ev.Data)
	if err != nil {
		return nil, err
	}
	if d.Embedding == nil {
		return nil, events.Reasonf(events.EINVALID, events.ReasonEmbeddingMissing, "document has no data.embedding, and the vault has no embedder")
	}
	if a.dim < 0 {
		dim, err := readDim(a.st, a.c, a.txn)
		if err != nil {
			return nil, err
		}
		a.dim = dim
	}
	switch {
	case a.dim == 0:
		a.dim, a.dimDirty = len(d.Embedding), true
	case a.dim != len(d.Embedding):
		return nil, events.Reasonf(events.EINVALID, events.ReasonEmbeddingDimension, "document embedding has %d values, the tenant's documents %d", len(d.Embedding), a.dim)
	}
	return &vectorRecord{ID: ev.Subject, Text: d.Text, Attributes: d.Attributes, Embedding: d.Embedding}, nil
}

// index writes the index entry of stream hash sh: doc, or a delete when
// doc is nil (if there is an entry).
func (a *applier) index(sh []byte, doc *vectorRecord) error {
	k := vectorKey(sh)
	if doc == nil {
		switch _, err := a.txn.Get(k); {
		case errors.Is(err, badger.ErrKeyNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("read vector: %w", err)
		}
		if err := a.del(k); err != nil {
			return fmt.Errorf("delete vector: %w", err)
		}
		a.docOps = append(a.docOps, docOp{key: string(sh), del: true})
		return nil
	}
	sealed, err := a.st.seal(a.c, ksVector, k, *doc)
	if err != nil {
		return err
	}
	if err := a.set(k, sealed); err != nil {
		return fmt.Errorf("write vector: %w", err)
	}
	a.docOps = append(a.docOps, docOp{key: string(sh), rec: doc})
	return nil
}

// flushDim writes the tenant's dimension if this transaction fixed it.
func (a *applier) flushDim() error {
	if !a.dimDirty {
		return nil
	}
	sealed, err := a.st.seal(a.c, ksDim, dimKey, dimRecord(a.dim))
	if err != nil {
		return err
	}
	if err := a.set(dimKey, sealed); err != nil {
		return fmt.Errorf("write vector dimension: %w", err)
	}
	return nil
}
