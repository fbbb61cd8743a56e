package httpapi

import (
	"strconv"
	"testing"
	"time"
)

// The limiter refuses a source at its limit for the rest of its interval
// only, and tracks a bounded number of sources: the others are not
// limited, and the table does not grow.
func TestLimiter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(3, 10*time.Second, 4)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if limited, _ := l.limited("a"); limited {
			t.Fatalf("limited after %d failures, want not before 3", i)
		}
		l.fail("a")
	}
	if limited, wait := l.limited("a"); !limited || wait != 10*time.Second {
		t.Errorf("limited(a) after 3 failures = %v, %v, want true, 10s", limited, wait)
	}
	for i := range 100 {
		for range 3 {
			l.fail("s" + strconv.Itoa(i))
		}
	}
	if len(l.sources) > 4 {
		t.Errorf("the limiter tracks %d sources, want at most 4", len(l.sources))
	}
	if limited, _ := l.limited("s99"); limited {
		t.Errorf("an untracked source is limited")
	}
	now = now.Add(10 * time.Second)
	if limited, _ := l.limited("a"); limited {
		t.Errorf("limited(a) after the interval, want not")
	}
	l.fail("new") // the table is full of expired sources: swept
	if _, ok := l.sources["new"]; !ok || len(l.sources) > 4 {
		t.Errorf("after the interval, a new source is not tracked (%d tracked)", len(l.sources))
	}
}
