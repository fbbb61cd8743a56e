package projections

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// failingCipher fails Encrypt once its budget of calls is spent.
type failingCipher struct {
	*testCipher
	left atomic.Int64
}

var errSealFailed = errors.New("xtest: seal failed")

func (c *failingCipher) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if c.left.Add(-1) < 0 {
		return nil, errSealFailed
	}
	return c.testCipher.Encrypt(plaintext, ad)
}

func TestStateCacheFollowsCommits(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")

	MustApply(t, st, c, []Record{rec(0, 0, newEvent("1", "s", `{"a":1,"n":{"x":1}}`))})
	if st.states.get("s") == nil {
		t.Fatalf("state of s not cached after a commit")
	}
	MustApply(t, st, c, []Record{rec(0, 1, newEvent("2", "s", `{"b":2,"n":{"y":2}}`))})

	// A batch that fails before its commit leaves the cache as it was.
	fc := &failingCipher{testCipher: c}
	fc.left.Store(1) // the log entry seals, the state does not
	if _, err := st.Apply(fc, []Record{rec(0, 2, newEvent("3", "s", `{"c":3}`))}); !errors.Is(err, errSealFailed) {
		t.Fatalf("Apply with a failing cipher = %v, want %v", err, errSealFailed)
	}
	if got := st.states.get("s"); got == nil || got.rec.Version != 2 {
		t.Fatalf("cached state after a failed batch = %+v, want version 2", got)
	}
	MustApply(t, st, c, []Record{rec(0, 2, newEvent("3", "s", `{"c":3,"a":null}`))})

	got, err := st.State(c, "s")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 3 {
		t.Errorf("State(s).Version = %d, want 3", got.Version)
	}
	assertJSON(t, "State(s).Data", got.Data, `{"n":{"x":1,"y":2},"b":2,"c":3}`)

	// What the cache holds is what a cold read of the store gives.
	cached := st.states.get("s")
	st.states = stateCache{}
	MustApply(t, st, c, []Record{rec(0, 3, newEvent("4", "s", `{}`))})
	cold := st.states.get("s")
	if cold == nil || string(cold.hash) != string(cached.hash) || string(cold.rec.Data) != string(cached.rec.Data) || cold.rec.Version != cached.rec.Version+1 {
		t.Errorf("state read back from Badger = %+v, cached was %+v", cold, cached)
	}
}

func TestStateCacheBound(t *testing.T) {
	s := MustOpenStores(t)
	st := MustCreateStore(t, s, "acme")
	c := newTestCipher(t, "acme")
	st.states.limit = 8 * (stateEntryOverhead + 64)

	const streams = 50
	for round := range 3 {
		batch := make([]Record, streams)
		for i := range batch {
			batch[i] = rec(0, int64(round*streams+i), newEvent(fmt.Sprintf("%d-%d", round, i), fmt.Sprintf("stream-%d", i), fmt.Sprintf(`{"r%d":%d}`, round, i)))
		}
		MustApply(t, st, c, batch)
		if st.states.bytes > st.states.limit || len(st.states.m) == 0 {
			t.Fatalf("round %d: cache holds %d bytes in %d entries, limit %d", round, st.states.bytes, len(st.states.m), st.states.limit)
		}
	}
	sum := 0
	for _, e := range st.states.m {
		sum += e.size()
	}
	if sum != st.states.bytes {
		t.Errorf("cache counts %d bytes, its entries hold %d", st.states.bytes, sum)
	}
	for i := range streams {
		got, err := st.State(c, fmt.Sprintf("stream-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, fmt.Sprintf("State(stream-%d).Data", i), got.Data, fmt.Sprintf(`{"r0":%d,"r1":%d,"r2":%d}`, i, i, i))
	}

	// A document too large for the cache is not kept.
	big := fmt.Sprintf(`{"pad":"%0*d"}`, st.states.limit, 0)
	MustApply(t, st, c, []Record{rec(0, 1000, newEvent("big", "stream-0", big))})
	if st.states.get("stream-0") != nil {
		t.Errorf("a %d-byte state was cached under a %d-byte limit", len(big), st.states.limit)
	}
}
