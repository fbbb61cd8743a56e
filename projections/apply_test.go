package projections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tenantvault/tenantvault/events"
)

func TestApplyStateAndHistory(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	del := newEvent("e5", "cust-1", "")
	del.Type = "customer.deleted"
	bin := newEvent("e4", "cust-1", "")
	bin.DataContentType, bin.DataBase64 = "application/octet-stream", []byte{0, 1, 2}

	res := MustApply(t, st, c, []Record{
		rec(0, 0, newEvent("e1", "cust-1", `{"name":"Ada","address":{"city":"London","zip":"N1"},"tags":["a"]}`)),
		rec(0, 1, newEvent("e2", "cust-2", `{"name":"Bob"}`)),
		rec(0, 2, newEvent("e3", "cust-1", `{"address":{"zip":null},"tags":["b"],"vip":true}`)),
		rec(0, 3, bin),
	})
	if want := (Result{Applied: 4, Streams: 2, Commits: 1}); res != want {
		t.Errorf("Apply() = %+v, want %+v", res, want)
	}

	got, err := st.State(c, "cust-1")
	if err != nil {
		t.Fatalf("State(cust-1) = %v", err)
	}
	assertJSON(t, "State(cust-1).Data", got.Data, `{"name":"Ada","address":{"city":"London"},"tags":["b"],"vip":true}`)
	if got.Stream != "cust-1" || got.Version != 3 || got.Deleted || got.UpdatedAt.IsZero() {
		t.Errorf("State(cust-1) = %+v, want stream cust-1, version 3, not deleted, with a time", got)
	}

	hist, err := st.History(c, "cust-1", 0, 0)
	if err != nil {
		t.Fatalf("History(cust-1) = %v", err)
	}
	if len(hist) != 3 {
		t.Fatalf("History(cust-1) has %d events, want 3", len(hist))
	}
	for i, h := range hist {
		if h.Version != uint64(i+1) || h.Topic != testTopic || h.Partition != 0 || h.StoredAt.IsZero() {
			t.Errorf("History(cust-1)[%d] = v%d %s/%d, want v%d %s/0", i, h.Version, h.Topic, h.Partition, i+1, testTopic)
		}
	}
	if hist[0].Event.ID != "e1" || hist[1].Event.ID != "e3" || hist[2].Event.ID != "e4" || hist[2].Offset != 3 {
		t.Errorf("History(cust-1) ids = %s %s %s, want e1 e3 e4", hist[0].Event.ID, hist[1].Event.ID, hist[2].Event.ID)
	}
	if !reflect.DeepEqual(hist[2].Event.DataBase64, []byte{0, 1, 2}) {
		t.Errorf("History(cust-1)[2].Event.DataBase64 = %v, want [0 1 2]", hist[2].Event.DataBase64)
	}
	if page, _ := st.History(c, "cust-1", 1, 1); len(page) != 1 || page[0].Version != 2 {
		t.Errorf("History(cust-1, after 1, limit 1) = %+v, want version 2 only", page)
	}
	if page, _ := st.History(c, "cust-1", 3, 10); len(page) != 0 {
		t.Errorf("History(cust-1, after 3) = %d events, want none", len(page))
	}

	// Delete, then a non-JSON event on the tombstone, then a revival.
	bin2 := newEvent("e6", "cust-1", "")
	bin2.DataBase64 = []byte("x")
	MustApply(t, st, c, []Record{rec(0, 4, del), rec(0, 5, bin2)})
	got, err = st.State(c, "cust-1")
	if err != nil {
		t.Fatalf("State(cust-1) after delete = %v", err)
	}
	if !got.Deleted || got.Data != nil || got.Version != 5 {
		t.Errorf("State(cust-1) after delete = %+v, want a tombstone at version 5", got)
	}
	MustApply(t, st, c, []Record{rec(0, 6, newEvent("e7", "cust-1", `{"name":"Ada II","x":null}`))})
	got, _ = st.State(c, "cust-1")
	if got.Deleted || got.Version != 6 {
		t.Errorf("State(cust-1) after revival = %+v, want version 6, not deleted", got)
	}
	assertJSON(t, "State(cust-1).Data after revival", got.Data, `{"name":"Ada II"}`)

	// JSON null data deletes too.
	MustApply(t, st, c, []Record{rec(0, 7, newEvent("e8", "cust-2", `null`))})
	if got, _ := st.State(c, "cust-2"); !got.Deleted || got.Version != 2 {
		t.Errorf("State(cust-2) after null data = %+v, want a tombstone at version 2", got)
	}

	if _, err := st.State(c, "nobody"); !errors.Is(err, ErrNotFound) || events.ErrorCode(err) != events.ENOTFOUND {
		t.Errorf("State(nobody) = %v, want ErrNotFound with code not_found", err)
	}
	if _, err := st.History(c, "nobody", 0, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("History(nobody) = %v, want ErrNotFound", err)
	}
}

func TestApplyManyEventsOfOneStreamInABatch(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	var batch []Record
	for i := range 50 {
		batch = append(batch, rec(0, int64(i), newEvent(fmt.Sprintf("e%d", i), "s", fmt.Sprintf(`{"k%d":%d,"last":%d}`, i%5, i, i))))
	}
	res := MustApply(t, st, c, batch)
	if res.Applied != 50 || res.Streams != 1 {
		t.Errorf("Apply() = %+v, want 50 applied on 1 stream", res)
	}
	got, _ := st.State(c, "s")
	assertJSON(t, "State(s).Data", got.Data, `{"k0":45,"k1":46,"k2":47,"k3":48,"k4":49,"last":49}`)
	if got.Version != 50 {
		t.Errorf("State(s).Version = %d, want 50", got.Version)
	}
}

func TestApplyIdempotent(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	batch := []Record{
		rec(0, 10, newEvent("e1", "s1", `{"a":1}`)),
		rec(1, 5, newEvent("e2", "s1", `{"b":2}`)),
		reject(0, 11, events.EINVALID, "not JSON", []byte("garbage")),
		rec(0, 12, newEvent("e3", "s2", `{"c":3}`)),
	}
	if res := MustApply(t, st, c, batch); res.Applied != 3 || res.Quarantined != 1 {
		t.Fatalf("first Apply() = %+v, want 3 applied, 1 quarantined", res)
	}
	before, _ := st.State(c, "s1")

	// Kafka redelivers the same records: all skipped, nothing changes.
	if res := MustApply(t, st, c, batch); res != (Result{Skipped: 4, Commits: 1}) {
		t.Errorf("second Apply() = %+v, want all 4 skipped", res)
	}
	after, _ := st.State(c, "s1")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("State(s1) after replay = %+v, want %+v", after, before)
	}
	if q, _, _ := st.Quarantine(c, "", 0); len(q) != 1 {
		t.Errorf("Quarantine() has %d entries after replay, want 1", len(q))
	}

	// The producer resends e1 and e3: a new offset, the same ids.
	res := MustApply(t, st, c, []Record{
		rec(0, 13, newEvent("e1", "s1", `{"a":"again"}`)),
		rec(0, 14, newEvent("e4", "s1", `{"d":4}`)),
		rec(0, 15, newEvent("e4", "s1", `{"d":5}`)), // and a duplicate within the batch
		rec(1, 6, newEvent("e3", "s2", `{"c":"again"}`)),
	})
	if want := (Result{Applied: 1, Duplicates: 3, Streams: 1, Commits: 1}); res != want {
		t.Errorf("Apply(resent ids) = %+v, want %+v", res, want)
	}
	got, _ := st.State(c, "s1")
	assertJSON(t, "State(s1).Data", got.Data, `{"a":1,"b":2,"d":4}`)
	if got.Version != 3 {
		t.Errorf("State(s1).Version = %d, want 3", got.Version)
	}

	// Offsets out of order within a batch: the older one is skipped.
	res = MustApply(t, st, c, []Record{
		rec(2, 7, newEvent("e5", "s3", `{}`)),
		rec(2, 3, newEvent("e6", "s3", `{}`)),
	})
	if res.Applied != 1 || res.Skipped != 1 {
		t.Errorf("Apply(out of order) = %+v, want 1 applied, 1 skipped", res)
	}
}

func TestOffsets(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	if got, err := st.Offsets(); err != nil || len(got) != 0 {
		t.Fatalf("Offsets() of a new store = %v, %v, want empty", got, err)
	}
	MustApply(t, st, c, []Record{
		rec(0, 100, newEvent("a", "s", `{}`)),
		rec(0, 101, newEvent("a", "s", `{}`)), // duplicate: the offset still advances
		rec(3, 7, newEvent("b", "s", `{}`)),
		reject(2, 0, events.ETOOLARGE, "too big", nil),
		{Topic: "tenant.acme.events.v2", Partition: 1 << 20, Offset: 1<<40 + 1, Event: newEvent("c", "s", `{}`)},
	})
	want := map[string]map[int]int64{
		testTopic:               {0: 101, 2: 0, 3: 7},
		"tenant.acme.events.v2": {1 << 20: 1<<40 + 1},
	}
	if got, err := st.Offsets(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Offsets() = %v, %v, want %v", got, err, want)
	}

	// A topic created again starts over: its offsets are forgotten, the
	// other topic's (whose name it prefixes) are kept, and an event id
	// applied before is still a duplicate.
	if err := st.ForgetOffsets(testTopic); err != nil {
		t.Fatalf("ForgetOffsets(%q) = %v", testTopic, err)
	}
	delete(want, testTopic)
	if got, err := st.Offsets(); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Offsets() after ForgetOffsets = %v, %v, want %v", got, err, want)
	}
	res := MustApply(t, st, c, []Record{rec(0, 0, newEvent("a", "s", `{}`)), rec(0, 1, newEvent("new", "s", `{}`))})
	if res.Applied != 1 || res.Duplicates != 1 || res.Skipped != 0 {
		t.Errorf("Apply after ForgetOffsets = %+v, want 1 applied, 1 duplicate, none skipped", res)
	}
}

func TestApplyRejectsMalformedBatch(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	e := newEvent("a", "s", `{}`)
	for name, r := range map[string]Record{
		"neither":        {Topic: testTopic},
		"both":           {Topic: testTopic, Event: e, Reject: &Rejection{}},
		"no topic":       {Event: e},
		"nul in topic":   {Topic: "a\x00b", Event: e},
		"neg partition":  {Topic: testTopic, Partition: -1, Event: e},
		"neg offset":     {Topic: testTopic, Offset: -1, Event: e},
		"huge partition": {Topic: testTopic, Partition: 1 << 31, Event: e},
	} {
		batch := []Record{rec(0, 0, newEvent("ok", "s", `{}`)), r}
		if _, err := st.Apply(c, batch); events.ErrorCode(err) != events.EINVALID {
			t.Errorf("Apply(%s) = %v, want code invalid", name, err)
		}
	}
	if _, err := st.State(c, "s"); !errors.Is(err, ErrNotFound) {
		t.Errorf("State(s) after refused batches = %v, want ErrNotFound (nothing written)", err)
	}
	if _, err := st.Apply(nil, nil); err == nil {
		t.Error("Apply(nil cipher) = nil error, want an error")
	}
}

func TestQuarantine(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	invalid := newEvent("bad", "", `{}`) // no subject
	foreign := newEvent("f", "s", `{}`)
	foreign.Tenant = "globex"
	notJSON := newEvent("nj", "s", "")
	notJSON.Data = json.RawMessage(`{oops`)
	res := MustApply(t, st, c, []Record{
		reject(0, 0, events.EINVALID, "event is not a JSON object", []byte("\x00raw bytes\xff")),
		rec(0, 1, newEvent("ok", "s", `{"a":1}`)),
		rec(0, 2, invalid),
		rec(0, 3, foreign),
		rec(0, 4, notJSON),
	})
	if res.Quarantined != 4 || res.Applied != 1 {
		t.Fatalf("Apply() = %+v, want 4 quarantined, 1 applied", res)
	}
	MustApply(t, st, c, []Record{reject(1, 9, events.ETOOLARGE, "too large", []byte("big"))})

	var all []Quarantined
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := st.Quarantine(c, cursor, 2)
		if err != nil {
			t.Fatalf("Quarantine(%q, 2) = %v", cursor, err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("Quarantine() cursor does not end")
		}
		cursor = next
	}
	if len(all) != 5 {
		t.Fatalf("Quarantine() listed %d entries, want 5", len(all))
	}
	for i, q := range all {
		if q.Seq != uint64(i+1) || q.At.IsZero() || q.Topic != testTopic {
			t.Errorf("Quarantine()[%d] = seq %d at %v topic %s, want seq %d with a time", i, q.Seq, q.At, q.Topic, i+1)
		}
	}
	if q := all[0]; q.Code != events.EINVALID || q.Reason != "event is not a JSON object" || string(q.Raw) != "\x00raw bytes\xff" || q.Offset != 0 {
		t.Errorf("Quarantine()[0] = %+v, want the rejection as given", q)
	}
	if q := all[1]; q.Code != events.EINVALID || !strings.Contains(q.Reason, "subject") || q.Offset != 2 {
		t.Errorf("Quarantine()[1] = %+v, want the invalid event (missing subject)", q)
	}
	var raw events.Event
	if err := json.Unmarshal(all[1].Raw, &raw); err != nil || raw.ID != "bad" {
		t.Errorf("Quarantine()[1].Raw = %s, want the encoded event", all[1].Raw)
	}
	if q := all[2]; q.Code != events.EFORBIDDEN {
		t.Errorf("Quarantine()[2].Code = %q, want forbidden (tenant mismatch)", q.Code)
	}
	if q := all[3]; q.Code != events.EINVALID || len(q.Raw) == 0 {
		t.Errorf("Quarantine()[3] = %+v, want the non-JSON event with its raw form", q)
	}
	if q := all[4]; q.Code != events.ETOOLARGE || q.Partition != 1 || q.Offset != 9 {
		t.Errorf("Quarantine()[4] = %+v, want the second batch's rejection", q)
	}
	if _, _, err := st.Quarantine(c, "x", 1); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("Quarantine(bad cursor) = %v, want code invalid", err)
	}
}

func TestStreamsListing(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	want := map[string]uint64{}
	var batch []Record
	for i := range 7 {
		id := fmt.Sprintf("stream-%d", i)
		for v := 0; v <= i; v++ {
			batch = append(batch, rec(0, int64(len(batch)), newEvent(fmt.Sprintf("%d-%d", i, v), id, `{}`)))
		}
		want[id] = uint64(i + 1)
	}
	del := newEvent("del", "stream-3", "")
	del.Type = "x.deleted"
	batch = append(batch, rec(0, int64(len(batch)), del))
	want["stream-3"]++
	MustApply(t, st, c, batch)

	got := map[string]uint64{}
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := st.Streams(c, cursor, 3)
		if err != nil {
			t.Fatalf("Streams(%q, 3) = %v", cursor, err)
		}
		if len(page) > 3 {
			t.Errorf("Streams(%q, 3) returned %d", cursor, len(page))
		}
		for _, p := range page {
			if _, dup := got[p.Stream]; dup {
				t.Errorf("Streams() listed %s twice", p.Stream)
			}
			got[p.Stream] = p.Version
			if p.Deleted != (p.Stream == "stream-3") {
				t.Errorf("Streams() %s Deleted = %v", p.Stream, p.Deleted)
			}
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("Streams() cursor does not end")
		}
		cursor = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Streams() = %v, want %v", got, want)
	}
	if page, next, err := st.Streams(c, "", 7); err != nil || len(page) != 7 || next != "" {
		t.Errorf("Streams(\"\", 7) = %d, %q, %v, want all 7 and no cursor", len(page), next, err)
	}
	if _, _, err := st.Streams(c, "zz", 1); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("Streams(bad cursor) = %v, want code invalid", err)
	}
}

// TestSealedValuesAreBound moves sealed values between keys, streams and
// tenants with raw Badger writes: each must fail to open, with the cipher's
// error reachable through errors.As.
func TestSealedValuesAreBound(t *testing.T) {
	s := MustOpenStores(t)
	acme := MustCreateStore(t, s, "acme")
	globex := MustCreateStore(t, s, "globex")
	c := newTestCipher(t, "shared") // the same key in both stores: only the AAD tells them apart

	MustApply(t, acme, c, []Record{
		rec(0, 0, newEvent("1", "alice", `{"who":"alice"}`)),
		rec(0, 1, newEvent("2", "bob", `{"who":"bob"}`)),
		rec(0, 2, newEvent("3", "bob", `{"who":"bob2"}`)),
	})
	MustApply(t, globex, c, []Record{rec(0, 0, newEvent("1", "alice", `{"who":"globex alice"}`))})

	sh := func(stream string) []byte { return c.Hash(hashStream, []byte(stream)) }
	copyValue := func(from, to *Store, fromKey, toKey []byte) {
		t.Helper()
		var v []byte
		if err := from.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(fromKey)
			if err != nil {
				return err
			}
			v, err = item.ValueCopy(nil)
			return err
		}); err != nil {
			t.Fatalf("read %x: %v", fromKey, err)
		}
		if err := to.db.Update(func(txn *badger.Txn) error { return txn.Set(toKey, v) }); err != nil {
			t.Fatalf("write %x: %v", toKey, err)
		}
	}
	wantOpenError := func(what string, err error) {
		t.Helper()
		var oe *openError
		if !errors.As(err, &oe) {
			t.Errorf("%s = %v, want the cipher's open error", what, err)
		}
		if err != nil && (strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "bob")) {
			t.Errorf("%s error %q names a stream id", what, err)
		}
	}

	// alice's state under bob's key.
	copyValue(acme, acme, stateKey(sh("alice")), stateKey(sh("bob")))
	_, err := acme.State(c, "bob")
	wantOpenError("State(bob) holding alice's state", err)
	_, _, err = acme.Streams(c, "", 10)
	wantOpenError("Streams() over a moved state", err)

	// Version 1 of bob's log at version 2.
	copyValue(acme, acme, logKey(sh("bob"), 1), logKey(sh("bob"), 2))
	_, err = acme.History(c, "bob", 1, 10)
	wantOpenError("History(bob) with version 1 at version 2", err)

	// acme's alice in globex's store, at the same key.
	copyValue(acme, globex, stateKey(sh("alice")), stateKey(sh("alice")))
	_, err = globex.State(c, "alice")
	wantOpenError("globex State(alice) holding acme's", err)
	// ... where Apply must not overwrite it silently either. Badger's
	// directory lock keeps other processes out of an open store, so such a
	// copy happens while the store is closed, which drops its cache of
	// applied states: as here.
	globex.states = stateCache{}
	_, err = globex.Apply(c, []Record{rec(0, 1, newEvent("9", "alice", `{}`))})
	wantOpenError("globex Apply on acme's state", err)

	// Another tenant's key cannot open acme's values.
	_, _, err = acme.Quarantine(c, "", 10) // empty: nothing to open
	if err != nil {
		t.Errorf("Quarantine() = %v", err)
	}
	other := newTestCipher(t, "other")
	_, _, err = globex.Streams(other, "", 10)
	wantOpenError("Streams() with another tenant's cipher", err)
}

// TestTxnTooBigSplits applies a batch far over Badger's transaction limit.
func TestTxnTooBigSplits(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) {
		cfg.BadgerOptions = func(o badger.Options) badger.Options {
			return o.WithMemTableSize(1 << 20) // max batch ≈ 157 KB
		}
	})
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	data := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 256))
	batch := eventBatch("e", 1500, 700, 0, data)
	res := MustApply(t, st, c, batch)
	if res.Applied != 1500 || res.Streams != 700 || res.Commits < 2 {
		t.Fatalf("Apply(1500 events) = %+v, want 1500 applied on 700 streams in several commits", res)
	}
	t.Logf("1500 events in %d commits", res.Commits)
	if off, _ := st.Offsets(); off[testTopic][0] != 1499 {
		t.Errorf("Offsets() = %v, want partition 0 at 1499", off)
	}
	for _, stream := range []string{"stream-0", "stream-699", "stream-99"} {
		h, err := st.History(c, stream, 0, 10)
		if err != nil || len(h) != 2 && len(h) != 3 {
			t.Errorf("History(%s) = %d events, %v, want 2 or 3", stream, len(h), err)
		}
		for i, e := range h {
			if e.Version != uint64(i+1) {
				t.Errorf("History(%s)[%d].Version = %d, want %d", stream, i, e.Version, i+1)
			}
		}
	}
	if res := MustApply(t, st, c, batch); res.Skipped != 1500 {
		t.Errorf("Apply(same batch) = %+v, want all skipped", res)
	}
	// One event over the limit on its own still fits: large values go to
	// the value log and count as pointers.
	big := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("y", 300<<10))
	if res := MustApply(t, st, c, []Record{rec(0, 2000, newEvent("big", "stream-0", big))}); res.Applied != 1 {
		t.Errorf("Apply(300 KiB event) = %+v, want applied", res)
	}
}

func assertJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%s = %s, not JSON: %v", what, got, err)
		return
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil || !reflect.DeepEqual(g, w) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

func TestApplyOversizedInput(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) {
		cfg.BadgerOptions = func(o badger.Options) badger.Options { return o.WithValueLogFileSize(1 << 20) }
	})
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	huge := newEvent("huge", "s", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 600<<10)))
	raw := bytes.Repeat([]byte{7}, 2<<20)
	res := MustApply(t, st, c, []Record{
		rec(0, 0, huge),
		reject(0, 1, events.ETOOLARGE, "record too large", raw),
		rec(0, 2, newEvent("ok", "s", `{"a":1}`)),
	})
	if res.Quarantined != 2 || res.Applied != 1 {
		t.Fatalf("Apply() = %+v, want 2 quarantined, 1 applied", res)
	}
	q, _, err := st.Quarantine(c, "", 10)
	if err != nil || len(q) != 2 {
		t.Fatalf("Quarantine() = %d entries, %v, want 2", len(q), err)
	}
	if q[0].Code != events.ETOOLARGE || len(q[0].Raw) != st.maxPayload || q[0].RawSize <= st.maxPayload {
		t.Errorf("Quarantine()[0] = code %s, %d of %d raw bytes, want too_large cut to %d", q[0].Code, len(q[0].Raw), q[0].RawSize, st.maxPayload)
	}
	if !bytes.Equal(q[1].Raw, raw[:st.maxPayload]) || q[1].RawSize != len(raw) {
		t.Errorf("Quarantine()[1] = %d of %d raw bytes, want the first %d of %d", len(q[1].Raw), q[1].RawSize, st.maxPayload, len(raw))
	}
}

// TestApplyLargeState merges into a document over largeState, which is
// decoded once per transaction: several events in one batch, then more in
// the next, a delete, and a merge into the emptied stream.
func TestApplyLargeState(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	big := strings.Repeat("b", largeState)
	var batch []Record
	for i := range 5 {
		batch = append(batch, rec(0, int64(i), newEvent(fmt.Sprintf("e%d", i), "big", fmt.Sprintf(`{"pad":%q,"n%d":%d,"obj":{"k%d":true}}`, big, i, i, i))))
	}
	MustApply(t, st, c, batch)
	MustApply(t, st, c, []Record{
		rec(0, 5, newEvent("e5", "big", `{"n0":null,"obj":{"k1":null,"x":[1,2]}}`)),
		rec(0, 6, newEvent("e6", "big", `{"n4":"four"}`)),
	})
	got, err := st.State(c, "big")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 7 {
		t.Errorf("State(big).Version = %d, want 7", got.Version)
	}
	assertJSON(t, "State(big).Data", got.Data, fmt.Sprintf(`{"pad":%q,"n1":1,"n2":2,"n3":3,"n4":"four","obj":{"k0":true,"k2":true,"k3":true,"k4":true,"x":[1,2]}}`, big))

	del := newEvent("e7", "big", "")
	del.Type = "customer.deleted"
	MustApply(t, st, c, []Record{
		rec(0, 7, newEvent("e6b", "big", `{"more":1}`)),
		rec(0, 8, del),
		rec(0, 9, newEvent("e8", "big", `{"fresh":true}`)),
	})
	got, err = st.State(c, "big")
	if err != nil || got.Deleted {
		t.Fatalf("State(big) = %+v, %v", got, err)
	}
	assertJSON(t, "State(big).Data after a delete", got.Data, `{"fresh":true}`)
}

// TestApplyVerdicts checks the verdict of every kind of record, in input
// order: applied, duplicate (of a stored event and within the batch),
// skipped (a redelivery, and an older offset within the batch),
// quarantined as the caller's Rejection, and quarantined by the store
// itself (an event too large for a value, an invalid event), with the
// store's code and reason and the seqs of the quarantine entries.
func TestApplyVerdicts(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) {
		cfg.BadgerOptions = func(o badger.Options) badger.Options { return o.WithValueLogFileSize(1 << 20) }
	})
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	MustApply(t, st, c, []Record{rec(0, 0, newEvent("e0", "s", `{"a":0}`))})

	huge := newEvent("huge", "s", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", st.maxPayload)))
	hugeSize := len(huge.Data)
	batch := []Record{
		rec(0, 0, newEvent("e0", "s", `{"a":0}`)), // redelivered
		rec(0, 1, newEvent("e1", "s", `{"a":1}`)),
		rec(0, 2, newEvent("e0", "s", `{"a":"again"}`)), // resent at a new offset
		reject(0, 3, events.EINVALID, "event is not a JSON object", []byte("garbage")),
		rec(0, 4, huge),
		rec(0, 5, newEvent("no-subject", "", `{}`)),
		rec(0, 4, newEvent("e2", "s", `{}`)), // an older offset within the batch
		rec(0, 6, newEvent("e1", "s", `{"a":"dup"}`)),
		rec(1, 0, newEvent("e3", "t", `{}`)),
	}
	res, verdicts, err := st.ApplyVerdicts(c, batch)
	if err != nil {
		t.Fatalf("ApplyVerdicts() = %v", err)
	}
	want := []Verdict{
		{Kind: VerdictSkipped},
		{Kind: VerdictApplied},
		{Kind: VerdictDuplicate},
		{Kind: VerdictQuarantined, Code: events.EINVALID, Reason: "event is not a JSON object", ReasonCode: events.EINVALID, Seq: 1}, // the Rejection has no reason code: its code
		{Kind: VerdictQuarantined, Code: events.ETOOLARGE, ReasonCode: events.ReasonStoreLimit, Seq: 2,
			Reason: fmt.Sprintf("event data of %d bytes is over the store's limit of %d bytes", hugeSize, st.maxPayload)},
		{Kind: VerdictQuarantined, Code: events.EINVALID, Reason: "(mentions the subject)", ReasonCode: events.ReasonSubjectMissing, Seq: 3},
		{Kind: VerdictSkipped},
		{Kind: VerdictDuplicate},
		{Kind: VerdictApplied},
	}
	if len(verdicts) == len(want) && verdicts[5].Kind == VerdictQuarantined && strings.Contains(verdicts[5].Reason, "subject") {
		verdicts[5].Reason = want[5].Reason // Validate's words
	}
	if !reflect.DeepEqual(verdicts, want) {
		t.Errorf("ApplyVerdicts() verdicts =\n%+v\nwant\n%+v", verdicts, want)
	}
	if wantRes := (Result{Applied: 2, Duplicates: 2, Quarantined: 3, Skipped: 2, Streams: 2, Commits: 1}); res != wantRes {
		t.Errorf("ApplyVerdicts() = %+v, want %+v", res, wantRes)
	}
	q, _, err := st.Quarantine(c, "", 10)
	if err != nil || len(q) != 3 {
		t.Fatalf("Quarantine() = %d entries, %v, want 3", len(q), err)
	}
	for i, e := range q {
		if v := want[3+i]; e.Seq != v.Seq || e.Code != v.Code || e.Offset != batch[3+i].Offset {
			t.Errorf("Quarantine()[%d] = seq %d code %s offset %d, want the verdict's seq %d code %s, offset %d",
				i, e.Seq, e.Code, e.Offset, v.Seq, v.Code, batch[3+i].Offset)
		}
	}

	// The same batch again: every record is a redelivery.
	_, verdicts, err = st.ApplyVerdicts(c, batch)
	if err != nil || len(verdicts) != len(batch) {
		t.Fatalf("ApplyVerdicts(again) = %d verdicts, %v, want %d", len(verdicts), err, len(batch))
	}
	for i, v := range verdicts {
		if v != (Verdict{Kind: VerdictSkipped}) {
			t.Errorf("ApplyVerdicts(again)[%d] = %+v, want skipped", i, v)
		}
	}
}

func TestVerdictKindString(t *testing.T) {
	for k, want := range map[VerdictKind]string{
		VerdictApplied: "applied", VerdictDuplicate: "duplicate", VerdictSkipped: "skipped",
		VerdictQuarantined: "quarantined", 0: "VerdictKind(0)", 9: "VerdictKind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("VerdictKind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

var errPoisoned = errors.New("xtest: poisoned")

// poisonedCipher fails to seal a value that holds poison.
type poisonedCipher struct {
	*testCipher
	poison []byte
}

func (c poisonedCipher) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if bytes.Contains(plaintext, c.poison) {
		return nil, errPoisoned
	}
	return c.testCipher.Encrypt(plaintext, ad)
}

// TestApplyVerdictsOfCommittedParts splits a batch over Badger's
// transaction limit and fails a later part: the verdicts returned are those
// of the parts that committed, a prefix of the batch, whose records the
// stored offset covers.
func TestApplyVerdictsOfCommittedParts(t *testing.T) {
	s := MustOpenStores(t, func(cfg *Config) {
		cfg.BadgerOptions = func(o badger.Options) badger.Options {
			return o.WithMemTableSize(1 << 20) // max batch ≈ 157 KB
		}
	})
	st := MustCreateStore(t, s, "acme")
	c := poisonedCipher{newTestCipher(t, "acme"), []byte("poison-pill")}

	batch := eventBatch("e", 1500, 700, 0, fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 256)))
	batch[len(batch)-1].Event.Data = json.RawMessage(`{"pad":"poison-pill"}`)
	res, verdicts, err := st.ApplyVerdicts(c, batch)
	if !errors.Is(err, errPoisoned) {
		t.Fatalf("ApplyVerdicts(poisoned batch) = %v, want %v", err, errPoisoned)
	}
	t.Logf("%d of %d records in %d commits before the failure", len(verdicts), len(batch), res.Commits)
	if res.Commits == 0 || len(verdicts) == 0 || len(verdicts) >= len(batch) || res.Applied != len(verdicts) {
		t.Fatalf("ApplyVerdicts(poisoned batch) = %+v, %d verdicts, want some parts committed, one verdict per applied record", res, len(verdicts))
	}
	for i, v := range verdicts {
		if v.Kind != VerdictApplied {
			t.Errorf("verdicts[%d] = %+v, want applied", i, v)
		}
	}
	if off, err := st.Offsets(); err != nil || off[testTopic][0] != int64(len(verdicts)-1) {
		t.Errorf("Offsets() = %v, %v, want partition 0 at %d (the last record with a verdict)", off, err, len(verdicts)-1)
	}
}
