package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

// Record is one consumed Kafka message, in partition order.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Event     *events.Event // a valid event to apply, or nil when Reject is set
	Reject    *Rejection
}

// Rejection is input that could not be decoded or validated. It is kept,
// sealed, in the quarantine keyspace.
type Rejection struct {
	Code   string // an events error code (events.EINVALID, events.ETOOLARGE, ...)
	Reason string // safe to show to the tenant
	// ReasonCode is the stable reason code (events.ReasonSpecVersion,
	// ...) that the audit log records: it never holds input.
	ReasonCode string
	Raw        []byte // the record value as received (sealed when stored)
}

// Result counts what Apply did with a batch.
type Result struct {
	Applied     int // events appended to their stream's log
	Duplicates  int // events whose id was applied before (not applied again)
	Quarantined int // rejections and invalid events stored in the quarantine
	Skipped     int // records at or below the stored offset of their partition (Kafka redelivery)
	Streams     int // distinct streams touched by applied events
	Commits     int // Badger transactions committed (more than 1 when the batch was split)
}

// add counts a verdict.
func (r *Result) add(v VerdictKind) {
	switch v {
	case VerdictApplied:
		r.Applied++
	case VerdictDuplicate:
		r.Duplicates++
	case VerdictSkipped:
		r.Skipped++
	case VerdictQuarantined:
		r.Quarantined++
	}
}

// VerdictKind is what Apply decided for one record.
type VerdictKind uint8

const (
	// VerdictApplied: the event was appended to its stream's log.
	VerdictApplied VerdictKind = iota + 1
	// VerdictDuplicate: an event of that id was applied before; not
	// applied again.
	VerdictDuplicate
	// VerdictSkipped: the record is at or below the stored offset of its
	// (topic, partition), a Kafka redelivery: it was decided on before,
	// and nothing was done this time.
	VerdictSkipped
	// VerdictQuarantined: the record was sealed into the quarantine, as a
	// Rejection given by the caller or an event the store refused.
	VerdictQuarantined
)

func (k VerdictKind) String() string {
	switch k {
	case VerdictApplied:
		return "applied"
	case VerdictDuplicate:
		return "duplicate"
	case VerdictSkipped:
		return "skipped"
	case VerdictQuarantined:
		return "quarantined"
	}
	return "VerdictKind(" + strconv.Itoa(int(k)) + ")"
}

// Verdict is what Apply did with one record: the one decision, made under
// the store's lock against the stored offsets, from which the caller
// audits. A quarantined record's Code and Reason are those of its
// Rejection, or the store's when the store refused the event itself (e.g.
// too_large: more data than a value log file can hold).
type Verdict struct {
	Kind   VerdictKind
	Code   string // VerdictQuarantined: an events error code
	Reason string // VerdictQuarantined: safe to show to the tenant
	// ReasonCode is, for VerdictQuarantined, the stable reason code
	// (events.ReasonX): what the audit log records, never input.
	ReasonCode string
	Seq        uint64 // VerdictQuarantined: the Seq of the quarantine entry
}

// Apply is ApplyVerdicts without the verdicts.
func (st *Store) Apply(c Cipher, batch []Record) (Result, error) {
	res, _, err := st.applyBatch(c, batch, nil)
	return res, err
}

// ApplyVerdicts applies batch in one Badger transaction, splitting it into
// several only when Badger reports badger.ErrTxnTooBig; each part commits
// the offsets of its own records, so a crash between parts replays
// cleanly. Records are taken in order, and each gets one verdict:
//
//   - a record whose offset is at or below the stored offset of its
//     (topic, partition) is skipped (VerdictSkipped: a redelivery);
//   - a Rejection is sealed into the quarantine with its code, reason,
//     topic, partition, offset and time, and so is an event that fails
//     events.Event.Validate, has data that is not JSON, has more data than
//     a value log file can hold (too_large), or names another tenant in its
//     tenant extension (forbidden), with the store's code and reason
//     (VerdictQuarantined); raw input over that size is cut (see
//     Quarantined.RawSize);
//   - an event whose id was applied before is a duplicate
//     (VerdictDuplicate);
//   - any other event gets version = the stream's version + 1, is sealed
//     into the stream's log, and updates the stream's state: a JSON merge
//     patch (RFC 7386) of its data, a tombstone if IsDelete, or nothing but
//     the version for events without JSON data (VerdictApplied);
//   - the offset of each (topic, partition) is stored with the rest.
//
// It returns the verdicts in the order of batch, and the Result, which
// counts them. Events of one stream in a batch are merged in
// memory: its state is opened once and sealed once per transaction. Apply
// calls on one store are serialised. On error, the Result counts what the
// parts committed before it and the verdicts are those of their records,
// a prefix of batch (those records will be Skipped when the batch comes
// again); a record that is neither an event nor a rejection, or has an
// impossible topic, partition or offset, fails the batch (EINVALID) before
// anything is written.
func (st *Store) ApplyVerdicts(c Cipher, batch []Record) (Result, []Verdict, error) {
	verdicts := make([]Verdict, len(batch))
	res, done, err := st.applyBatch(c, batch, verdicts)
	return res, verdicts[:done], err
}

// applyBatch is ApplyVerdicts; verdicts is nil or has one entry per record
// of batch, to fill. It also returns how many records (from the first) the
// committed parts hold: all of them unless it fails.
func (st *Store) applyBatch(c Cipher, batch []Record, verdicts []Verdict) (Result, int, error) {
	if err := checkCipher(c); err != nil {
		return Result{}, 0, err
	}
	if err := validateBatch(batch); err != nil {
		return Result{}, 0, err
	}
	if err := st.enter(); err != nil {
		return Result{}, 0, err
	}
	defer st.leave()
	st.apply.Lock()
	defer st.apply.Unlock()

	var res Result
	done := 0 // records of committed parts
	touched := make(map[string]struct{})
	fits := len(batch) // records known to fit in one transaction
	if st.fits > 0 {
		fits = min(fits, st.fits)
	}
	for rest := batch; len(rest) > 0; {
		n := min(len(rest), fits)
		for {
			var vs []Verdict
			if verdicts != nil {
				vs = verdicts[done : done+n]
			}
			part, written, err := st.applyPart(c, rest[:n], vs, touched)
			if errors.Is(err, badger.ErrTxnTooBig) && n > 1 {
				// Retry with fewer records: three quarters of those written
				// before the overflow, leaving room for the state and offset
				// writes at the end, or three quarters of n if those
				// overflowed. Later parts start from the size that fitted.
				if written > 0 && written < n {
					n = written
				}
				n = max(1, n-max(1, n/4))
				fits, st.fits = n, n
				continue
			}
			if err != nil {
				res.Streams = len(touched)
				return res, done, fmt.Errorf("apply to store of tenant %s: %w", st.tenant, err)
			}
			res.Applied += part.Applied
			res.Duplicates += part.Duplicates
			res.Quarantined += part.Quarantined
			res.Skipped += part.Skipped
			res.Commits++
			break
		}
		rest, done = rest[n:], done+n
	}
	res.Streams = len(touched)
	return res, done, nil
}

func validateBatch(batch []Record) error {
	for i, r := range batch {
		switch {
		case (r.Event == nil) == (r.Reject == nil):
			return events.Errorf(events.EINVALID, "record %d: want exactly one of Event and Reject", i)
		case r.Topic == "" || strings.IndexByte(r.Topic, 0) >= 0:
			return events.Errorf(events.EINVALID, "record %d: invalid topic", i)
		case r.Partition < 0 || r.Partition > math.MaxInt32:
			return events.Errorf(events.EINVALID, "record %d: invalid partition %d", i, r.Partition)
		case r.Offset < 0:
			return events.Errorf(events.EINVALID, "record %d: invalid offset %d", i, r.Offset)
		}
	}
	return nil
}

// applier holds one transaction's view of a part of a batch.
type applier struct {
	st      *Store
	c       Cipher
	txn     *badger.Txn
	now     time.Time
	offsets map[string]*offsetState
	offKeys []string
	states  map[string]*streamState
	byName  map[string]*streamState // the same, by stream id
	order   []*streamState
	nextSeq uint64 // next quarantine seq; 0 until loaded
	res     Result
	// dim is the tenant's embedding dimension (-1 until read, 0: none
	// yet), dimDirty whether this transaction fixed it; docOps are the
	// index changes to bring to memory after commit (vectors.go).
	dim      int
	dimDirty bool
	docOps   []docOp
	// collect: keep the transaction's writes in changes (Prepare), the
	// last write of each key at the place of its first (changeAt).
	collect  bool
	changes  []Change
	changeAt map[string]int
}

type offsetState struct {
	key    []byte
	offset int64 // -1: none stored
	dirty  bool
}

// stateRecord is the sealed value of s/<h(stream)>.
type stateRecord struct {
	Stream    string          `json:"stream"`
	Version   uint64          `json:"v"`
	Data      json.RawMessage `json:"data,omitempty"`
	UpdatedAt time.Time       `json:"at"`
	Deleted   bool            `json:"deleted,omitempty"`
}

// logRecord is the sealed value of l/<h(stream)><version>, in the binary
// encoding of logcodec.go; it converts to StoredEvent.
type logRecord struct {
	Version   uint64
	Event     events.Event
	Topic     string
	Partition int
	Offset    int64
	StoredAt  time.Time
}

// streamState is a stream's state while a transaction works on it: rec.Data
// is the current document, compact JSON, replaced (never modified in place)
// by each event's merge patch; or, for a document of largeState bytes or
// more, doc holds it decoded until flush writes it back into rec.Data.
type streamState struct {
	hash    []byte
	rec     stateRecord
	doc     *events.Document
	decoded bool // doc is the document; rec.Data is stale
}

// largeState is the size from which a stream's document is decoded once per
// transaction and the transaction's patches merged into it decoded: the raw
// merge walks the whole document for each event.
const largeState = 16 << 10

// applyPart applies records in one transaction and commits it, filling
// verdicts (nil, or one per record). On ErrTxnTooBig it reports how many
// records were fully written before the overflow, so the caller can retry
// with fewer (and verdicts are filled again).
func (st *Store) applyPart(c Cipher, records []Record, verdicts []Verdict, touched map[string]struct{}) (Result, int, error) {
	a, written, err := st.preparePart(c, records, verdicts, false)
	if err != nil {
		return Result{}, written, err
	}
	defer a.txn.Discard()
	if err := a.txn.Commit(); err != nil {
		return Result{}, len(records), fmt.Errorf("commit: %w", err)
	}
	a.committed(touched)
	return a.res, len(records), nil
}

// preparePart applies records in a new transaction, filling verdicts
// (nil, or one per record), and returns it open: the caller commits or
// discards a.txn. With collect, the applier keeps the writes as Changes.
// On error the transaction is discarded; on ErrTxnTooBig it reports how
// many records were fully written before the overflow. Nothing in memory
// (the state cache, the vector index) changes until committed is called.
func (st *Store) preparePart(c Cipher, records []Record, verdicts []Verdict, collect bool) (*applier, int, error) {
	txn := st.db.NewTransaction(true)
	a := &applier{
		st: st, c: c, txn: txn, now: st.now(),
		offsets: make(map[string]*offsetState),
		states:  make(map[string]*streamState),
		byName:  make(map[string]*streamState),
		dim:     -1,
		collect: collect,
	}
	for i := range records {
		v, err := a.record(&records[i])
		if err != nil {
			txn.Discard()
			return nil, i, err
		}
		a.res.add(v.Kind)
		if verdicts != nil {
			verdicts[i] = v
		}
	}
	if err := a.flush(); err != nil {
		txn.Discard()
		return nil, len(records), err
	}
	return a, len(records), nil
}

// committed brings the in-memory index and the state cache up to date
// once a's transaction committed, and adds the streams it touched to
// touched (if not nil). The caller holds the apply lock.
func (a *applier) committed(touched map[string]struct{}) {
	a.st.applyIndex(a.docOps)
	for _, s := range a.order {
		if touched != nil {
			touched[string(s.hash)] = struct{}{}
		}
		if s.rec.Version > 0 {
			a.st.states.put(s)
		}
	}
}

// record applies r and returns its verdict.
func (a *applier) record(r *Record) (Verdict, error) {
	off, err := a.offset(r.Topic, r.Partition)
	if err != nil {
		return Verdict{}, err
	}
	if r.Offset <= off.offset {
		return Verdict{Kind: VerdictSkipped}, nil
	}
	off.offset, off.dirty = r.Offset, true

	if r.Reject != nil {
		return a.quarantine(r, r.Reject.Code, r.Reject.Reason, r.Reject.ReasonCode, r.Reject.Raw)
	}
	ev := r.Event
	if err := a.check(ev); err != nil {
		return a.quarantine(r, events.ErrorCode(err), events.ErrorMessage(err), events.ErrorReason(err), rawEvent(ev))
	}
	var doc *vectorRecord
	if events.IsDocumentType(ev.Type) && !ev.IsDelete() {
		d, err := a.document(ev)
		if events.ErrorCode(err) == events.EINVALID {
			return a.quarantine(r, events.ErrorCode(err), events.ErrorMessage(err), events.ErrorReason(err), rawEvent(ev))
		}
		if err != nil {
			return Verdict{}, err
		}
		doc = d
	}

	eh, err := hash(a.c, hashEvent, ev.ID)
	if err != nil {
		return Verdict{}, err
	}
	ik := indexKey(eh)
	switch _, err := a.txn.Get(ik); {
	case err == nil:
		return Verdict{Kind: VerdictDuplicate}, nil
	case !errors.Is(err, badger.ErrKeyNotFound):
		return Verdict{}, fmt.Errorf("read event index: %w", err)
	}

	s, err := a.state(ev.Subject)
	if err != nil {
		return Verdict{}, err
	}
	version := s.rec.Version + 1
	switch {
	case ev.IsDelete():
		s.rec.Data, s.rec.Deleted = nil, true
		s.doc, s.decoded = nil, false
	case len(ev.Data) > 0:
		if err := s.merge(ev.Data); err != nil {
			return Verdict{}, err
		}
	}
	s.rec.Version = version
	s.rec.UpdatedAt = a.now

	lk := logKey(s.hash, version)
	sealed, err := a.st.seal(a.c, ksLog, lk, logRecord{
		Version: version, Event: *ev,
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, StoredAt: a.now,
	})
	if err != nil {
		return Verdict{}, err
	}
	if err := a.set(lk, sealed); err != nil {
		return Verdict{}, fmt.Errorf("write log entry: %w", err)
	}
	if err := a.set(ik, concat(s.hash, be64(version))); err != nil {
		return Verdict{}, fmt.Errorf("write event index: %w", err)
	}
	if doc != nil || ev.IsDelete() {
		if err := a.index(s.hash, doc); err != nil {
			return Verdict{}, err
		}
	}
	return Verdict{Kind: VerdictApplied}, nil
}

// check refuses events Apply must not project; they are quarantined.
func (a *applier) check(ev *events.Event) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	if n := len(ev.Data) + len(ev.DataBase64); n > a.st.maxPayload {
		return events.Reasonf(events.ETOOLARGE, events.ReasonStoreLimit, "event data of %d bytes is over the store's limit of %d bytes", n, a.st.maxPayload)
	}
	if len(ev.Data) > 0 && !events.ValidJSON(ev.Data) {
		return events.Reasonf(events.EINVALID, events.ReasonDataInvalid, "attribute data is not valid JSON")
	}
	if ev.Tenant != "" && ev.Tenant != string(a.st.tenant) {
		return events.Reasonf(events.EFORBIDDEN, events.ReasonTenantMismatch, "event names another tenant than the store's")
	}
	return nil
}

// rawEvent is the best-effort encoding of an event being quarantined.
func rawEvent(ev *events.Event) []byte {
	e := *ev
	if len(e.Data) > 0 && !events.ValidJSON(e.Data) {
		e.DataBase64, e.Data = append([]byte(nil), e.Data...), nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil
	}
	return b
}

func (a *applier) offset(topic string, partition int) (*offsetState, error) {
	k := offsetKey(topic, partition)
	if o, ok := a.offsets[string(k)]; ok {
		return o, nil
	}
	o := &offsetState{key: k, offset: -1}
	item, err := a.txn.Get(k)
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error {
			if len(v) != 8 {
				return events.Errorf(events.EINTERNAL, "malformed offset of %s/%d", topic, partition)
			}
			o.offset = int64(binary.BigEndian.Uint64(v))
			return nil
		}); err != nil {
			return nil, err
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return nil, fmt.Errorf("read offset: %w", err)
	}
	a.offsets[string(k)] = o
	a.offKeys = append(a.offKeys, string(k))
	return o, nil
}

// state returns the state of stream, opening it on first use in this
// transaction: from the store's cache of recently applied states, else
// from Badger.
func (a *applier) state(stream string) (*streamState, error) {
	if s, ok := a.byName[stream]; ok {
		return s, nil // one keyed hash per stream and transaction
	}
	if s := a.st.states.get(stream); s != nil {
		a.states[string(s.hash)] = s
		a.byName[stream] = s
		a.order = append(a.order, s)
		return s, nil
	}
	sh, err := hash(a.c, hashStream, stream)
	if err != nil {
		return nil, err
	}
	if s, ok := a.states[string(sh)]; ok {
		a.byName[stream] = s
		return s, nil
	}
	s := &streamState{hash: sh, rec: stateRecord{Stream: stream}}
	k := stateKey(sh)
	item, err := a.txn.Get(k)
	switch {
	case err == nil:
		if err := item.Value(func(v []byte) error {
			return a.st.unseal(a.c, ksState, k, v, &s.rec)
		}); err != nil {
			return nil, err
		}
		if s.rec.Stream != stream {
			return nil, events.Errorf(events.EINTERNAL, "state %x belongs to another stream", sh)
		}
	case !errors.Is(err, badger.ErrKeyNotFound):
		return nil, fmt.Errorf("read state: %w", err)
	}
	a.states[string(sh)] = s
	a.byName[stream] = s
	a.order = append(a.order, s)
	return s, nil
}

// merge applies an event's data, a valid JSON merge patch, to the state.
func (s *streamState) merge(patch []byte) error {
	var target []byte
	if !s.rec.Deleted {
		target = s.rec.Data
	}
	s.rec.Deleted = false
	if !s.decoded && len(target) < largeState {
		s.rec.Data = events.AppendMergePatch(make([]byte, 0, len(target)+len(patch)), target, patch)
		return nil
	}
	if !s.decoded {
		s.doc = new(events.Document)
		if len(target) > 0 {
			if err := s.doc.Set(target); err != nil {
				return events.Errorf(events.EINTERNAL, "state %x: malformed document", s.hash)
			}
		}
		s.decoded = true
	}
	if err := s.doc.MergePatch(patch); err != nil {
		return events.Reasonf(events.EINVALID, events.ReasonDataInvalid, "attribute data is not valid JSON")
	}
	return nil
}

// settle writes a decoded document back into rec.Data.
func (s *streamState) settle() error {
	if !s.decoded {
		return nil
	}
	data, err := s.doc.AppendJSON(nil)
	if err != nil {
		return events.Errorf(events.EINTERNAL, "state %x: cannot encode document", s.hash)
	}
	s.rec.Data, s.doc, s.decoded = data, nil, false
	return nil
}

// quarantine seals r into the quarantine with code and reason.
func (a *applier) quarantine(r *Record, code, reason, reasonCode string, raw []byte) (Verdict, error) {
	if a.nextSeq == 0 {
		seq, err := lastQuarantineSeq(a.txn)
		if err != nil {
			return Verdict{}, err
		}
		a.nextSeq = seq + 1
	}
	seq := a.nextSeq
	k := quarantineKey(seq)
	size := len(raw)
	if size > a.st.maxPayload {
		raw = raw[:a.st.maxPayload] // a Badger value cannot exceed a value log file
	}
	sealed, err := a.st.seal(a.c, ksQuarantine, k, Quarantined{
		Seq: seq, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Code: code, Reason: reason, Raw: raw, RawSize: size, At: a.now,
	})
	if err != nil {
		return Verdict{}, err
	}
	if err := a.set(k, sealed); err != nil {
		return Verdict{}, fmt.Errorf("write quarantine entry: %w", err)
	}
	a.nextSeq++
	if reasonCode == "" {
		reasonCode = code
	}
	return Verdict{Kind: VerdictQuarantined, Code: code, Reason: reason, ReasonCode: reasonCode, Seq: seq}, nil
}

func lastQuarantineSeq(txn *badger.Txn) (uint64, error) {
	opts := badger.DefaultIteratorOptions
	opts.Reverse, opts.PrefetchValues, opts.Prefix = true, false, []byte(prefixQuarantine)
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Seek(concat([]byte(prefixQuarantine), bytes.Repeat([]byte{0xff}, 9)))
	if !it.Valid() {
		return 0, nil
	}
	k := it.Item().Key()
	if len(k) != len(prefixQuarantine)+8 {
		return 0, events.Errorf(events.EINTERNAL, "malformed quarantine key %x", k)
	}
	return binary.BigEndian.Uint64(k[len(prefixQuarantine):]), nil
}

// flush writes the states, offsets and embedding dimension the
// transaction changed.
func (a *applier) flush() error {
	if err := a.flushDim(); err != nil {
		return err
	}
	for _, s := range a.order {
		if s.rec.Version == 0 {
			continue // only read, never applied to
		}
		if err := s.settle(); err != nil {
			return err
		}
		k := stateKey(s.hash)
		sealed, err := a.st.seal(a.c, ksState, k, s.rec)
		if err != nil {
			return err
		}
		if err := a.set(k, sealed); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	for _, k := range a.offKeys {
		o := a.offsets[k]
		if !o.dirty {
			continue
		}
		if err := a.set(o.key, be64(uint64(o.offset))); err != nil {
			return fmt.Errorf("write offset: %w", err)
		}
	}
	return nil
}
