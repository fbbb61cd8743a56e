package projections

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/keys"
)

// mustTinkCiphers returns real Tink ciphers (keys.TenantCipher) of
// tenants, from one keystore with a local master key, closed at the end
// of the test.
func mustTinkCiphers(tb testing.TB, tenants ...events.TenantID) map[events.TenantID]*keys.TenantCipher {
	tb.Helper()
	dir := tb.TempDir()
	ks, err := keys.OpenKeystore(filepath.Join(dir, "keys"), "local://"+filepath.Join(dir, "master.key"), discardLogger())
	if err != nil {
		tb.Fatalf("OpenKeystore() = %v", err)
	}
	tb.Cleanup(func() { ks.Close() })
	out := make(map[events.TenantID]*keys.TenantCipher)
	for _, t := range tenants {
		c, err := ks.Create(t)
		if err != nil {
			tb.Fatalf("Create(%q) = %v", t, err)
		}
		out[t] = c
	}
	return out
}

var fixedNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// mustStoreAt creates tenant t's store in a new Stores, with a fixed
// clock, so that two stores fed the same batches read alike.
func mustStoreAt(tb testing.TB, t events.TenantID) (*Stores, *Store) {
	tb.Helper()
	s := MustOpenStores(tb)
	st := MustCreateStore(tb, s, t)
	st.now = func() time.Time { return fixedNow }
	return s, st
}

// changelog is a fake changelog topic: the encoded records, in order;
// record i has offset i.
type changelog struct{ recs [][]byte }

func (l *changelog) append(chs []Change) int64 {
	for _, ch := range chs {
		l.recs = append(l.recs, EncodeChange(ch))
	}
	return int64(len(l.recs))
}

// read decodes records [from, to).
func (l *changelog) read(tb testing.TB, from, to int64) []Change {
	tb.Helper()
	var out []Change
	for _, b := range l.recs[from:to] {
		ch, err := DecodeChange(b)
		if err != nil {
			tb.Fatalf("DecodeChange() = %v", err)
		}
		out = append(out, ch)
	}
	return out
}

// mustPrepareCommit applies batch through Prepare and Commit, writing its
// changes to l first, as cluster mode does.
func mustPrepareCommit(tb testing.TB, st *Store, c Cipher, l *changelog, batch []Record) Result {
	tb.Helper()
	p, err := st.Prepare(context.Background(), c, batch)
	if err != nil {
		tb.Fatalf("Prepare(%d records) = %v", len(batch), err)
	}
	if p.Len() != len(batch) {
		p.Discard()
		tb.Fatalf("Prepare(%d records).Len() = %d, want all", len(batch), p.Len())
	}
	next := l.append(p.Changes())
	res := p.Result()
	if err := p.Commit(next); err != nil {
		tb.Fatalf("Commit(%d) = %v", next, err)
	}
	return res
}

// mustRestore applies l's records from the store's position in chunks.
func mustRestore(tb testing.TB, st *Store, c Cipher, l *changelog, chunk int) {
	tb.Helper()
	from, err := st.ChangelogNext()
	if err != nil {
		tb.Fatalf("ChangelogNext() = %v", err)
	}
	for end := int64(len(l.recs)); from < end; {
		to := min(from+int64(chunk), end)
		if err := st.ApplyChanges(context.Background(), c, to, l.read(tb, from, to)); err != nil {
			tb.Fatalf("ApplyChanges(%d..%d) = %v", from, to, err)
		}
		from = to
	}
}

// dumpStore returns every key and value of st's DB, hex.
func dumpStore(tb testing.TB, st *Store) map[string]string {
	tb.Helper()
	out := make(map[string]string)
	if err := st.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[hex.EncodeToString(it.Item().Key())] = hex.EncodeToString(v)
		}
		return nil
	}); err != nil {
		tb.Fatalf("dump store: %v", err)
	}
	return out
}

// storeView is what a tenant reads from a store.
type storeView struct {
	Streams    []StreamSummary
	States     map[string]State
	History    map[string][]StoredEvent
	Quarantine []Quarantined
	Offsets    map[string]map[int]int64
	Hits       []Hit
}

func readView(tb testing.TB, st *Store, c Cipher) storeView {
	tb.Helper()
	v := storeView{States: map[string]State{}, History: map[string][]StoredEvent{}}
	var err error
	if v.Streams, _, err = st.Streams(c, "", 1000); err != nil {
		tb.Fatalf("Streams() = %v", err)
	}
	for _, s := range v.Streams {
		if v.States[s.Stream], err = st.State(c, s.Stream); err != nil {
			tb.Fatalf("State(%q) = %v", s.Stream, err)
		}
		if v.History[s.Stream], err = st.History(c, s.Stream, 0, 0); err != nil {
			tb.Fatalf("History(%q) = %v", s.Stream, err)
		}
	}
	if v.Quarantine, _, err = st.Quarantine(c, "", 1000); err != nil {
		tb.Fatalf("Quarantine() = %v", err)
	}
	if v.Offsets, err = st.Offsets(); err != nil {
		tb.Fatalf("Offsets() = %v", err)
	}
	if v.Hits, err = st.Search(c, SearchQuery{Vector: []float32{1, 0.5, 0}, K: 10}); err != nil {
		tb.Fatalf("Search() = %v", err)
	}
	return v
}

func deleteEvent(id, stream, typ string) *events.Event {
	e := newEvent(id, stream, "")
	e.Type = typ
	return e
}

// changelogBatches exercise every keyspace: states, logs, the event
// index, offsets on two partitions, the quarantine, documents (vectors,
// the dimension) and a document's delete; duplicates and a redelivery.
func changelogBatches() [][]Record {
	return [][]Record{
		{
			rec(0, 0, newEvent("e1", "cust-1", `{"name":"Ada","city":"London"}`)),
			rec(0, 1, newEvent("e2", "cust-2", `{"name":"Bob"}`)),
			rec(1, 0, docEvent("d1", "doc-1", "refund policy", []float32{1, 0, 0}, map[string]any{"lang": "en"})),
			reject(1, 1, events.EINVALID, "not JSON", []byte("{garbage")),
		},
		{
			rec(0, 2, newEvent("e3", "cust-1", `{"city":null,"vip":true}`)),
			rec(0, 3, newEvent("e1", "cust-3", `{"dup":true}`)), // duplicate id
			rec(1, 2, docEvent("d2", "doc-2", "shipping times", []float32{0, 1, 0}, nil)),
			rec(1, 3, docEvent("d3", "doc-1", "refund policy v2", []float32{1, 1, 0}, nil)),
		},
		{
			rec(0, 3, newEvent("e9", "cust-9", `{}`)), // redelivery: skipped
			rec(0, 4, deleteEvent("e4", "cust-2", "customer.deleted")),
			rec(1, 4, deleteEvent("d4", "doc-2", "kb.deleted")),
			reject(0, 5, events.ETOOLARGE, "too large", []byte("xxxx")),
			rec(0, 6, newEvent("e5", "cust-4", `{"n":1}`)),
		},
	}
}

func TestChangelogRestore(t *testing.T) {
	cs := mustTinkCiphers(t, "acme")
	c := cs["acme"]
	_, a := mustStoreAt(t, "acme")
	var l changelog
	for i, b := range changelogBatches() {
		res := mustPrepareCommit(t, a, c, &l, b)
		if i == 2 && (res.Skipped != 1 || res.Quarantined != 1 || res.Applied != 3) {
			t.Errorf("batch 3 Result() = %+v, want 3 applied, 1 quarantined, 1 skipped", res)
		}
	}
	if next, err := a.ChangelogNext(); err != nil || next != int64(len(l.recs)) {
		t.Fatalf("A.ChangelogNext() = %d, %v, want %d", next, err, len(l.recs))
	}
	want := readView(t, a, c)
	if len(want.Streams) != 5 || len(want.Quarantine) != 2 || len(want.Hits) != 1 || want.Offsets[testTopic][1] != 4 {
		t.Fatalf("store A reads %d streams, %d quarantined, %d hits, offsets %v: the batches did not apply as meant",
			len(want.Streams), len(want.Quarantine), len(want.Hits), want.Offsets)
	}

	for _, chunk := range []int{1, 3, 7, 1000} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			_, b := mustStoreAt(t, "acme")
			if next, err := b.ChangelogNext(); err != nil || next != 0 {
				t.Fatalf("new store ChangelogNext() = %d, %v, want 0", next, err)
			}
			mustRestore(t, b, c, &l, chunk)
			if got := readView(t, b, c); !reflect.DeepEqual(got, want) {
				t.Errorf("restored store reads\n%s\nwant\n%s", dump(got), dump(want))
			}
			if got, wantDump := dumpStore(t, b), dumpStore(t, a); !reflect.DeepEqual(got, wantDump) {
				t.Errorf("restored store holds %d keys, differing from the %d of the original", len(got), len(wantDump))
			}

			// Replays change nothing: the last chunk again, and an old one.
			before := dumpStore(t, b)
			n := int64(len(l.recs))
			for _, r := range [][2]int64{{max(0, n-int64(chunk)), n}, {0, min(n, int64(chunk))}} {
				if err := b.ApplyChanges(context.Background(), c, r[1], l.read(t, r[0], r[1])); err != nil {
					t.Fatalf("ApplyChanges(%d..%d) again = %v", r[0], r[1], err)
				}
				if got := dumpStore(t, b); !reflect.DeepEqual(got, before) {
					t.Errorf("replay of records %d..%d changed the store", r[0], r[1])
				}
			}

			// Ingest goes on where A would: a redelivery is skipped.
			p, err := b.Prepare(context.Background(), c, changelogBatches()[2])
			if err != nil {
				t.Fatalf("Prepare(batch 3 again) = %v", err)
			}
			if res := p.Result(); res.Skipped != 5 || len(p.Changes()) != 0 {
				t.Errorf("Prepare(batch 3 again) = %+v with %d changes, want all 5 skipped, no change", res, len(p.Changes()))
			}
			p.Discard()
		})
	}
}

func dump(v any) string { return fmt.Sprintf("%+v", v) }

// TestChangelogCrashBetweenKafkaAndBadger: batch 2's changes reached the
// changelog but its Badger transaction never committed (the node died):
// after a restart the store is behind, catches up from the changelog and
// reads as a store that committed batch 2.
func TestChangelogCrashBetweenKafkaAndBadger(t *testing.T) {
	cs := mustTinkCiphers(t, "acme")
	c := cs["acme"]
	batches := changelogBatches()

	_, ref := mustStoreAt(t, "acme")
	var refLog changelog
	mustPrepareCommit(t, ref, c, &refLog, batches[0])
	mustPrepareCommit(t, ref, c, &refLog, batches[1])

	dir := t.TempDir()
	s, err := OpenStores(Config{Dir: dir, NoSync: true})
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
	st.now = func() time.Time { return fixedNow }
	var l changelog
	mustPrepareCommit(t, st, c, &l, batches[0])
	committed := int64(len(l.recs))
	p, err := st.Prepare(context.Background(), c, batches[1])
	if err != nil {
		t.Fatalf("Prepare(batch 2) = %v", err)
	}
	next := l.append(p.Changes()) // the Kafka transaction committed
	p.Discard()                   // the process died before Commit
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenStores(Config{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, release, err = s.Acquire("acme")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if got, err := st.ChangelogNext(); err != nil || got != committed {
		t.Fatalf("ChangelogNext() after the crash = %d, %v, want %d (batch 1 only)", got, err, committed)
	}
	if got, want := readView(t, st, c), readView(t, ref, c); reflect.DeepEqual(got, want) {
		t.Fatalf("the crashed store already reads as one that committed batch 2")
	}
	if err := st.ApplyChanges(context.Background(), c, next, l.read(t, committed, next)); err != nil {
		t.Fatalf("ApplyChanges(batch 2) = %v", err)
	}
	if got, want := readView(t, st, c), readView(t, ref, c); !reflect.DeepEqual(got, want) {
		t.Errorf("caught-up store reads\n%s\nwant\n%s", dump(got), dump(want))
	}
	if got, err := st.ChangelogNext(); err != nil || got != next {
		t.Errorf("ChangelogNext() after catching up = %d, %v, want %d", got, err, next)
	}
	// Kafka redelivers batch 2 (its ingress offsets were committed with
	// the changelog, but say the group rebalanced first): skipped.
	res := mustPrepareCommit(t, st, c, &l, batches[1])
	if res.Skipped != len(batches[1]) {
		t.Errorf("batch 2 redelivered after catching up: %+v, want all skipped", res)
	}
}

// TestPrepareDiscard: a discarded batch leaves the store, its state cache
// and its loaded vector index as they were; prepared again and committed,
// it applies as Apply would.
func TestPrepareDiscard(t *testing.T) {
	cs := mustTinkCiphers(t, "acme")
	c := cs["acme"]
	_, st := mustStoreAt(t, "acme")
	_, ref := mustStoreAt(t, "acme")
	batches := changelogBatches()
	var l changelog
	mustPrepareCommit(t, st, c, &l, batches[0])
	MustApply(t, ref, c, batches[0])
	view := readView(t, st, c) // loads the index
	disk := dumpStore(t, st)
	cached := st.states.get("cust-1")
	if cached == nil || st.IndexStats().Documents != 1 {
		t.Fatalf("after batch 1: cache of cust-1 %v, index %+v; want both filled", cached, st.IndexStats())
	}
	stats := st.IndexStats()

	p, err := st.Prepare(context.Background(), c, batches[1])
	if err != nil {
		t.Fatalf("Prepare(batch 2) = %v", err)
	}
	if len(p.Changes()) == 0 || p.Result().Applied != 3 {
		t.Fatalf("Prepare(batch 2): %d changes, %+v; want changes and 3 applied", len(p.Changes()), p.Result())
	}
	p.Discard()
	p.Discard() // does nothing
	if err := p.Commit(1); err == nil {
		t.Errorf("Commit after Discard = nil, want an error")
	}
	if got := dumpStore(t, st); !reflect.DeepEqual(got, disk) {
		t.Errorf("Discard left %d keys, want the %d of before", len(got), len(disk))
	}
	if got := st.states.get("cust-1"); !reflect.DeepEqual(got, cached) {
		t.Errorf("state cache of cust-1 after Discard = %+v, want %+v", got, cached)
	}
	if got := st.IndexStats(); got != stats {
		t.Errorf("IndexStats() after Discard = %+v, want %+v", got, stats)
	}
	if got := readView(t, st, c); !reflect.DeepEqual(got, view) {
		t.Errorf("reads after Discard differ from before")
	}

	// Prepared and committed now, it reads as Apply's (the index in
	// memory, kept up to date by Commit, and the state cache too).
	mustPrepareCommit(t, st, c, &l, batches[1])
	MustApply(t, ref, c, batches[1])
	if got, want := readView(t, st, c), readView(t, ref, c); !reflect.DeepEqual(got, want) {
		t.Errorf("Prepare+Commit reads\n%s\nApply reads\n%s", dump(got), dump(want))
	}
	if got := st.IndexStats().Documents; got != 2 {
		t.Errorf("index after Commit holds %d documents, want 2", got)
	}
	if s := st.states.get("cust-1"); s == nil || s.rec.Version != 2 {
		t.Errorf("state cache of cust-1 after Commit = %+v, want version 2", s)
	}
	// A position behind the stored one is refused.
	p, err = st.Prepare(context.Background(), c, batches[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(1); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("Commit(1) behind position %d = %v, want invalid", len(l.recs), err)
	}
	if got := st.IndexStats().Documents; got != 2 {
		t.Errorf("index after a refused Commit holds %d documents, want 2", got)
	}
}

// TestApplyChangesRefusesTampering: each bad change refuses the whole run,
// with nothing written.
func TestApplyChangesRefusesTampering(t *testing.T) {
	cs := mustTinkCiphers(t, "acme", "globex")
	acme, globex := cs["acme"], cs["globex"]
	_, src := mustStoreAt(t, "acme")
	var l changelog
	mustPrepareCommit(t, src, acme, &l, changelogBatches()[0])
	good := l.read(t, 0, int64(len(l.recs)))

	_, gsrc := mustStoreAt(t, "globex")
	var gl changelog
	mustPrepareCommit(t, gsrc, globex, &gl, []Record{{Topic: "tenant.globex.events", Offset: 0, Event: newEvent("e1", "cust-1", `{"name":"Ada"}`)}})
	var globexLog Change
	for _, ch := range gl.read(t, 0, int64(len(gl.recs))) {
		if ch.Keyspace == KeyspaceLog {
			globexLog = ch
		}
	}
	find := func(ks string) (int, Change) {
		for i, ch := range good {
			if ch.Keyspace == ks {
				return i, ch
			}
		}
		t.Fatalf("no %s change in batch 1", ks)
		return 0, Change{}
	}
	_, logCh := find(KeyspaceLog)
	_, offCh := find(KeyspaceOffset)
	// A value sealed with globex's key under acme's associated data.
	pt := []byte("forged")
	aad := (&Store{tenant: "acme"}).aad(ksLog, concat([]byte(prefixLog), logCh.Key))
	forged, err := globex.Encrypt(pt, aad)
	if err != nil {
		t.Fatal(err)
	}

	tamper := func(edit func(Change) Change) Change {
		ch := logCh
		ch.Key, ch.Value = bytes.Clone(ch.Key), bytes.Clone(ch.Value)
		return edit(ch)
	}
	tests := []struct {
		name string
		ch   Change
		// foreign: the error carries keys' *ForeignKeyError.
		foreign bool
	}{
		{"bit flip in a sealed value", tamper(func(ch Change) Change { ch.Value[len(ch.Value)-3] ^= 0x10; return ch }), false},
		{"bit flip in a key", tamper(func(ch Change) Change { ch.Key[0] ^= 1; return ch }), false},
		{"another tenant's change", globexLog, true},
		{"sealed with another tenant's key", tamper(func(ch Change) Change { ch.Value = forged; return ch }), true},
		{"moved to another keyspace", tamper(func(ch Change) Change { ch.Keyspace = KeyspaceQuarantine; ch.Key = ch.Key[:8]; return ch }), false},
		{"delete of a log entry", tamper(func(ch Change) Change { ch.Value, ch.Delete = nil, true; return ch }), false},
		{"unknown keyspace", tamper(func(ch Change) Change { ch.Keyspace = "meta"; return ch }), false},
		{"malformed offset", func() Change { ch := offCh; ch.Value = []byte{1, 2, 3}; return ch }(), false},
		{"plaintext value", tamper(func(ch Change) Change { ch.Value = []byte(`{"name":"Ada"}`); return ch }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, dst := mustStoreAt(t, "acme")
			before := dumpStore(t, dst)
			run := append(append([]Change(nil), good...), tc.ch) // good changes first: none may be written
			err := dst.ApplyChanges(context.Background(), acme, int64(len(run)), run)
			var ce *ChangeError
			if !errors.Is(err, ErrChangelogTampered) || !errors.As(err, &ce) || ce.Index != len(good) {
				t.Fatalf("ApplyChanges(%s) = %v, want a *ChangeError at %d (ErrChangelogTampered)", tc.name, err, len(good))
			}
			var fk *keys.ForeignKeyError
			if got := errors.As(err, &fk); got != tc.foreign {
				t.Errorf("ApplyChanges(%s) = %v: names a foreign key %v, want %v", tc.name, err, got, tc.foreign)
			}
			if got := dumpStore(t, dst); !reflect.DeepEqual(got, before) {
				t.Errorf("ApplyChanges(%s) wrote %d keys, want none", tc.name, len(got)-len(before))
			}
			if next, _ := dst.ChangelogNext(); next != 0 {
				t.Errorf("ChangelogNext() after a refused run = %d, want 0", next)
			}
		})
	}
	// The good run alone goes in.
	_, dst := mustStoreAt(t, "acme")
	if err := dst.ApplyChanges(context.Background(), acme, int64(len(good)), good); err != nil {
		t.Fatalf("ApplyChanges(good) = %v", err)
	}
}

// plaintextMarker is put in every field a producer controls.
const plaintextMarker = "Zq7MARKERxK2"

// containsMarker reports whether b holds the marker, as is or in the
// encodings the store might use for text (JSON escapes none of it).
func containsMarker(b []byte) bool {
	return bytes.Contains(b, []byte(plaintextMarker)) || bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(plaintextMarker)))
}

// TestChangesHoldNoPlaintext scans the encoded changes of a batch whose
// every producer-controlled field holds a marker: stream ids, event ids,
// source, type, data, a document's text and attributes, quarantined raw
// input and its reason. Every value is Tink ciphertext of the tenant's
// primary key, or clear metadata of a known size.
func TestChangesHoldNoPlaintext(t *testing.T) {
	if !containsMarker(EncodeChange(Change{Keyspace: KeyspaceState, Key: []byte("x" + plaintextMarker), Value: []byte("v")})) {
		t.Fatal("containsMarker does not find the marker in a key that holds it")
	}
	cs := mustTinkCiphers(t, "acme")
	c := cs["acme"]
	_, st := mustStoreAt(t, "acme")
	m := plaintextMarker
	ev := newEvent("id-"+m, "stream-"+m, `{"secret":"`+m+`","`+m+`":1}`)
	ev.Source = "src-" + m
	ev.Type = "t" + m + ".updated"
	ev.DataSchema = "https://x/" + m
	doc := docEvent("doc-id-"+m, "doc-"+m, "text "+m, []float32{1, 2, 3}, map[string]any{"k" + m: "v" + m})
	batch := []Record{
		rec(0, 0, ev),
		rec(0, 1, newEvent("id2-"+m, "stream-"+m, `{"more":"`+m+`"}`)),
		rec(0, 2, doc),
		rec(0, 3, deleteEvent("del-"+m, "doc-"+m, "kb.deleted")),
		rec(0, 4, doc),
		reject(0, 5, events.EINVALID, "reason "+m, []byte(`{"raw":"`+m+`"`)),
		rec(0, 6, newEvent("bad-"+m, "s-"+m, `{"x":`)), // not JSON: quarantined by the store
	}
	p, err := st.Prepare(context.Background(), c, batch)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	defer p.Discard()
	seen := map[string]int{}
	for _, ch := range p.Changes() {
		seen[ch.Keyspace]++
		enc := EncodeChange(ch)
		if containsMarker(enc) || containsMarker(ch.RecordKey()) {
			t.Errorf("change in %s (key %x) holds the plaintext marker", ch.Keyspace, ch.Key)
		}
		switch {
		case ch.Delete:
			if ch.Keyspace != KeyspaceVector || ch.Value != nil {
				t.Errorf("delete in %s with a %d-byte value, want only vector deletes", ch.Keyspace, len(ch.Value))
			}
		case ch.Keyspace == KeyspaceOffset:
			if len(ch.Value) != 8 {
				t.Errorf("offset value of %d bytes, want 8", len(ch.Value))
			}
		case ch.Keyspace == KeyspaceIndex:
			if len(ch.Value) != hashLen+8 {
				t.Errorf("index value of %d bytes, want %d", len(ch.Value), hashLen+8)
			}
		default:
			if id, ok := c.KeyIDOf(ch.Value); !ok || id != c.PrimaryKeyID() {
				t.Errorf("%s value is not a ciphertext of the tenant's primary key (key id %08x, %v)", ch.Keyspace, id, ok)
			}
		}
	}
	for _, ks := range []string{KeyspaceOffset, KeyspaceState, KeyspaceLog, KeyspaceIndex, KeyspaceQuarantine, KeyspaceVector, KeyspaceVectorDim} {
		if seen[ks] == 0 {
			t.Errorf("no change in keyspace %s: the batch does not cover it (%v)", ks, seen)
		}
	}
}

func TestChangeEncoding(t *testing.T) {
	tests := []struct {
		ch   Change
		want string // hex
	}{
		{Change{Keyspace: "log", Key: []byte{0xaa, 0xbb}, Value: []byte{1, 2, 3}}, "0100036c6f6702aabb010203"},
		{Change{Keyspace: "vector", Key: []byte{0xcc}, Delete: true}, "010106766563746f7201cc"},
		{Change{Keyspace: "offset", Key: []byte{}, Value: []byte{}}, "0100066f666673657400"},
	}
	for _, tc := range tests {
		got := EncodeChange(tc.ch)
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("EncodeChange(%+v) = %x, want %s", tc.ch, got, tc.want)
		}
		back, err := DecodeChange(got)
		if err != nil || back.Keyspace != tc.ch.Keyspace || !bytes.Equal(back.Key, tc.ch.Key) || !bytes.Equal(back.Value, tc.ch.Value) || back.Delete != tc.ch.Delete {
			t.Errorf("DecodeChange(%x) = %+v, %v, want %+v", got, back, err, tc.ch)
		}
		if !bytes.HasPrefix(got[2:], tc.ch.RecordKey()) {
			t.Errorf("RecordKey() = %x is not the head of the encoding %x", tc.ch.RecordKey(), got)
		}
	}
	for _, bad := range []string{"", "01", "0200036c6f6700", "0102036c6f6700", "0100006c", "0100036c6f", "0100036c6f6705aa", "010106766563746f7201ccff", "0100ffffffffffffffffff01"} {
		b, _ := hex.DecodeString(bad)
		if ch, err := DecodeChange(b); err == nil {
			t.Errorf("DecodeChange(%s) = %+v, want an error", bad, ch)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add(EncodeChange(Change{Keyspace: "log", Key: []byte{1, 2}, Value: []byte{3}}))
	f.Add(EncodeChange(Change{Keyspace: "vector", Key: []byte{1}, Delete: true}))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := DecodeChange(b)
		if err != nil {
			return
		}
		if again := EncodeChange(ch); !bytes.Equal(again, b) {
			t.Fatalf("EncodeChange(DecodeChange(%x)) = %x", b, again)
		}
	})
}
