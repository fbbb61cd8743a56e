package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

// MustOpenLog opens a Log in a fresh temporary directory and closes it when
// the test ends. mods adjust the options.
func MustOpenLog(tb testing.TB, mods ...func(*Options)) *Log {
	tb.Helper()
	return mustOpenDir(tb, filepath.Join(tb.TempDir(), "audit"), mods...)
}

func mustOpenDir(tb testing.TB, dir string, mods ...func(*Options)) *Log {
	tb.Helper()
	opts := Options{Dir: dir}
	for _, m := range mods {
		m(&opts)
	}
	l, err := Open(opts)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", dir, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(tb testing.TB, l *Log, r Record) Record {
	tb.Helper()
	got, err := l.Append(context.Background(), r)
	if err != nil {
		tb.Fatalf("Append(%s) = %v", r.Action, err)
	}
	return got
}

func rec(tenant string, action Action) Record {
	return Record{Principal: Principal("tenant:" + tenant), Tenant: tenant, Action: action, Outcome: OutcomeOK}
}

// readLines returns the lines of every segment in dir, in order.
func readLines(tb testing.TB, dir string) [][]byte {
	tb.Helper()
	firsts, err := listSegments(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var lines [][]byte
	for _, f := range firsts {
		b, err := os.ReadFile(filepath.Join(dir, segmentName(f)))
		if err != nil {
			tb.Fatal(err)
		}
		for line := range bytes.Lines(b) {
			lines = append(lines, bytes.TrimSuffix(line, []byte("\n")))
		}
	}
	return lines
}

func indices(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Index
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestAppendFillsFields(t *testing.T) {
	l := MustOpenLog(t)
	before := time.Now().UTC()
	r0 := mustAppend(t, l, rec("acme", ActionStreamRead))
	r1 := mustAppend(t, l, rec("acme", ActionStreamRead))
	if r0.Index != 0 || r1.Index != 1 {
		t.Errorf("indices = %d, %d, want 0, 1", r0.Index, r1.Index)
	}
	if r0.Prev != "" {
		t.Errorf("record 0 Prev = %q, want empty", r0.Prev)
	}
	leaf, err := MarshalRecord(r0)
	if err != nil {
		t.Fatal(err)
	}
	if h := LeafHash(leaf); r1.Prev != fmt.Sprintf("%x", h) {
		t.Errorf("record 1 Prev = %q, want LeafHash(record 0) = %x", r1.Prev, h)
	}
	if r0.Time.Location() != time.UTC || r0.Time.Before(before.Add(-time.Second)) {
		t.Errorf("record 0 Time = %v, want a UTC time near %v", r0.Time, before)
	}
	if n, head := l.Head(); n != 2 || head != fmt.Sprintf("%x", LeafHash(mustMarshal(t, r1))) {
		t.Errorf("Head() = %d, %s, want 2 and the leaf hash of record 1", n, head)
	}

	// Caller-set time, index and prev.
	zone := time.FixedZone("x", 3600)
	at := time.Date(2024, 5, 1, 12, 0, 0, 500, zone)
	r := rec("acme", ActionAuth)
	r.Time, r.Index, r.Prev = at, 99, "bogus"
	got := mustAppend(t, l, r)
	if !got.Time.Equal(at) || got.Time.Location() != time.UTC || got.Index != 2 || got.Prev != fmt.Sprintf("%x", LeafHash(mustMarshal(t, r1))) {
		t.Errorf("Append(time %v, index 99, prev bogus) = %v, %d, %q; want the time in UTC, index 2 and the chain", at, got.Time, got.Index, got.Prev)
	}
}

func mustMarshal(tb testing.TB, r Record) []byte {
	tb.Helper()
	b, err := MarshalRecord(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAppendNormalizes(t *testing.T) {
	l := MustOpenLog(t)
	long := strings.Repeat("é", 2000) // 4000 bytes
	tests := []struct {
		name  string
		in    Record
		check func(Record) string
	}{
		{"valid tenant kept", Record{Tenant: "acme", Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Tenant", r.Tenant, "acme")
		}},
		{"path traversal tenant quoted", Record{Tenant: "../../etc", Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Tenant", r.Tenant, `"../../etc"`)
		}},
		{"control characters escaped", Record{Tenant: "a\x1b[31mb\n", Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Tenant", r.Tenant, `"a\x1b[31mb\n"`)
		}},
		{"long invalid tenant truncated", Record{Tenant: strings.Repeat("X", 500), Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Tenant", r.Tenant, `"`+strings.Repeat("X", MaxInvalidTenantRunes)+`"`)
		}},
		{"invalid UTF-8 replaced", Record{Principal: "ad\xffmin", Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Principal", string(r.Principal), "ad\uFFFDmin")
		}},
		{"long reason cut at a rune", Record{Reason: long, Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("Reason", r.Reason, strings.Repeat("é", MaxReasonLen/2))
		}},
		{"details bounded", Record{Details: manyDetails(100), Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("len(Details)", fmt.Sprint(len(r.Details)), fmt.Sprint(MaxDetails))
		}},
		{"key ids bounded", Record{KeyIDs: make([]uint32, 5000), Action: "a", Outcome: OutcomeOK}, func(r Record) string {
			return cmp("len(KeyIDs)", fmt.Sprint(len(r.KeyIDs)), fmt.Sprint(MaxKeyIDs))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustAppend(t, l, tt.in)
			if msg := tt.check(got); msg != "" {
				t.Error(msg)
			}
			// What Append returns is what is stored.
			listed, err := l.List(context.Background(), Filter{After: ptr(got.Index - 1), Limit: 1})
			if got.Index == 0 {
				listed, err = l.List(context.Background(), Filter{Limit: 1})
			}
			if err != nil || len(listed) != 1 || !bytes.Equal(mustMarshal(t, listed[0]), mustMarshal(t, got)) {
				t.Errorf("List after Append = %v, %v; want the returned record", listed, err)
			}
		})
	}

	// Caller-owned slices and maps are copied.
	r := Record{Action: "a", Outcome: OutcomeOK, KeyIDs: []uint32{1}, Details: map[string]string{"k": "v"}}
	got := mustAppend(t, l, r)
	r.KeyIDs[0], r.Details["k"] = 2, "changed"
	if got.KeyIDs[0] != 1 || got.Details["k"] != "v" {
		t.Errorf("Append kept references to the caller's slice or map")
	}
}

func cmp(field, got, want string) string {
	if got != want {
		return fmt.Sprintf("%s = %.100q, want %.100q", field, got, want)
	}
	return ""
}

func manyDetails(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

func TestAppendRejectsCallerBugs(t *testing.T) {
	l := MustOpenLog(t)
	tests := []struct {
		name string
		in   Record
	}{
		{"no action", Record{Outcome: OutcomeOK}},
		{"no outcome", Record{Action: "a"}},
		{"unknown outcome", Record{Action: "a", Outcome: "fine"}},
		{"time past 9999", Record{Action: "a", Outcome: OutcomeOK, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.Append(context.Background(), tt.in)
			if code := events.ErrorCode(err); code != events.EINVALID {
				t.Errorf("Append(%s) = %v (code %q), want code %q", tt.name, err, code, events.EINVALID)
			}
		})
	}
	if n := l.Size(); n != 0 {
		t.Errorf("Size() = %d after rejected appends, want 0", n)
	}
}

func TestList(t *testing.T) {
	l := MustOpenLog(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	specs := []struct {
		tenant  string
		action  Action
		flagged bool
	}{
		{"acme", ActionTenantCreate, false}, // 0
		{"acme", ActionIngestBatch, false},  // 1
		{"globex", ActionStreamRead, true},  // 2
		{"acme", ActionStreamRead, false},   // 3
		{"globex", ActionStreamRead, false}, // 4
		{"../x", ActionAuth, true},          // 5
		{"", ActionTenantList, false},       // 6
		{"acme", ActionStreamRead, true},    // 7
	}
	for i, s := range specs {
		r := rec(s.tenant, s.action)
		r.Flagged = s.flagged
		r.Time = t0.Add(time.Duration(i) * time.Hour)
		mustAppend(t, l, r)
	}
	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{0, 1, 2, 3, 4, 5, 6, 7}},
		{"tenant", Filter{Tenant: "acme"}, []uint64{0, 1, 3, 7}},
		{"unknown tenant", Filter{Tenant: "initech"}, nil},
		{"hostile tenant matched by its raw value", Filter{Tenant: "../x"}, []uint64{5}},
		{"hostile tenant matched by its stored form", Filter{Tenant: `"../x"`}, []uint64{5}},
		{"flagged", Filter{Flagged: true}, []uint64{2, 5, 7}},
		{"tenant and flagged", Filter{Tenant: "acme", Flagged: true}, []uint64{7}},
		{"action", Filter{Action: ActionStreamRead}, []uint64{2, 3, 4, 7}},
		{"unknown action", Filter{Action: "nope"}, nil},
		{"tenant and action", Filter{Tenant: "globex", Action: ActionStreamRead}, []uint64{2, 4}},
		{"since", Filter{Since: t0.Add(5 * time.Hour)}, []uint64{5, 6, 7}},
		{"until", Filter{Until: t0.Add(2 * time.Hour)}, []uint64{0, 1}},
		{"since and until", Filter{Since: t0.Add(time.Hour), Until: t0.Add(3 * time.Hour)}, []uint64{1, 2}},
		{"tenant since", Filter{Tenant: "acme", Since: t0.Add(2 * time.Hour)}, []uint64{3, 7}},
		{"after", Filter{After: ptr(uint64(4))}, []uint64{5, 6, 7}},
		{"after last", Filter{After: ptr(uint64(7))}, nil},
		{"tenant after", Filter{Tenant: "acme", After: ptr(uint64(1))}, []uint64{3, 7}},
		{"limit", Filter{Limit: 3}, []uint64{0, 1, 2}},
		{"tenant limit", Filter{Tenant: "acme", Limit: 2}, []uint64{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.List(context.Background(), tt.f)
			if err != nil {
				t.Fatalf("List(%+v) = %v", tt.f, err)
			}
			if !slices.Equal(indices(got), tt.want) {
				t.Errorf("List(%+v) = %v, want %v", tt.f, indices(got), tt.want)
			}
		})
	}

	if _, err := l.List(context.Background(), Filter{Since: t0.Add(time.Hour), Until: t0}); events.ErrorCode(err) != events.EINVALID {
		t.Errorf("List(until before since) = %v, want code %q", err, events.EINVALID)
	}
}

func TestListLimits(t *testing.T) {
	l := MustOpenLog(t, func(o *Options) { o.SegmentBytes = 4096 })
	for range 1200 {
		l.AppendAsync(rec("acme", ActionStreamRead))
	}
	mustAppend(t, l, rec("acme", ActionStreamRead)) // orders after the async ones
	tests := []struct {
		limit, want int
	}{{0, DefaultListLimit}, {-1, DefaultListLimit}, {5, 5}, {5000, MaxListLimit}}
	for _, tt := range tests {
		got, err := l.List(context.Background(), Filter{Limit: tt.limit})
		if err != nil || len(got) != tt.want {
			t.Errorf("List(Limit %d) = %d records, %v; want %d", tt.limit, len(got), err, tt.want)
		}
	}
	// Paging with the cursor walks every record once, across segments.
	var all []uint64
	f := Filter{Tenant: "acme", Limit: 333}
	for {
		page, err := l.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, indices(page)...)
		f.After = ptr(page[len(page)-1].Index)
	}
	if len(all) != 1201 || all[0] != 0 || all[len(all)-1] != 1200 || !slices.IsSorted(all) {
		t.Errorf("paging returned %d records, want 1201 in order", len(all))
	}
}

func TestAppendIsDurable(t *testing.T) {
	l := MustOpenLog(t)
	for i := range 3 {
		want := mustAppend(t, l, Record{Principal: PrincipalAdmin, Action: ActionTenantCreate, Tenant: "acme", Outcome: OutcomeOK, Count: i})
		// Read the file directly, as a crash right now would leave it.
		lines := readLines(t, l.dir)
		if len(lines) != i+1 {
			t.Fatalf("after Append %d the file has %d lines, want %d", i, len(lines), i+1)
		}
		if !bytes.Equal(lines[i], mustMarshal(t, want)) {
			t.Errorf("line %d = %s, want %s", i, lines[i], mustMarshal(t, want))
		}
	}
}

func TestConcurrentAppend(t *testing.T) {
	const writers, each = 16, 40
	l := MustOpenLog(t, func(o *Options) { o.MaxBatch = 16; o.SegmentBytes = 8 << 10 })
	var wg sync.WaitGroup
	got := make(chan uint64, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := rec(fmt.Sprintf("tenant-%d", w), ActionIngestBatch)
				r.Count = i
				if i%5 == 0 {
					l.AppendAsync(r)
					continue
				}
				out, err := l.Append(context.Background(), r)
				if err != nil {
					t.Errorf("Append = %v", err)
					return
				}
				got <- out.Index
			}
		})
	}
	wg.Wait()
	close(got)
	if err := l.Close(); err != nil { // flushes the async ones
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for i := range got {
		if seen[i] {
			t.Errorf("index %d returned twice", i)
		}
		seen[i] = true
	}
	l2 := mustOpenDir(t, l.dir)
	if n := l2.Size(); n != writers*each {
		t.Fatalf("Size() = %d, want %d", n, writers*each)
	}
	lines := readLines(t, l.dir)
	for i, line := range lines {
		r, err := ParseRecord(line)
		if err != nil || r.Index != uint64(i) {
			t.Fatalf("line %d: ParseRecord = index %d, %v; want index %d", i, r.Index, err, i)
		}
	}
	if err := l2.Verify(context.Background()); err != nil {
		t.Errorf("Verify() = %v", err)
	}
	// Each writer's records are in its own order.
	for w := range writers {
		recs, err := l2.List(context.Background(), Filter{Tenant: fmt.Sprintf("tenant-%d", w), Limit: MaxListLimit})
		if err != nil || len(recs) != each {
			t.Fatalf("List(tenant-%d) = %d records, %v; want %d", w, len(recs), err, each)
		}
		for i, r := range recs {
			if r.Count != i {
				t.Errorf("tenant-%d record %d has Count %d, want %d", w, i, r.Count, i)
				break
			}
		}
	}
}

func TestReopenContinues(t *testing.T) {
	l := MustOpenLog(t, func(o *Options) { o.SegmentBytes = 600 })
	for range 10 {
		mustAppend(t, l, rec("acme", ActionStreamRead))
	}
	n, head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if firsts, _ := listSegments(l.dir); len(firsts) < 2 {
		t.Fatalf("segments = %v, want several with SegmentBytes 600", firsts)
	}

	l2 := mustOpenDir(t, l.dir, func(o *Options) { o.SegmentBytes = 600 })
	if n2, head2 := l2.Head(); n2 != n || head2 != head {
		t.Fatalf("after reopen Head() = %d, %s; want %d, %s", n2, head2, n, head)
	}
	r := mustAppend(t, l2, rec("acme", ActionStreamRead))
	if r.Index != n || r.Prev != head {
		t.Errorf("first Append after reopen = index %d prev %s, want %d %s", r.Index, r.Prev, n, head)
	}
	if err := l2.Verify(context.Background()); err != nil {
		t.Errorf("Verify() = %v", err)
	}
	got, err := l2.List(context.Background(), Filter{Tenant: "acme", After: ptr(uint64(7))})
	if err != nil || !slices.Equal(indices(got), []uint64{8, 9, 10}) {
		t.Errorf("List after reopen = %v, %v; want 8 9 10", indices(got), err)
	}
}

func TestOpenCutsTornTail(t *testing.T) {
	tests := []struct {
		name string
		tail func(next []byte) []byte // bytes appended to the last segment
	}{
		{"half a line", func(next []byte) []byte { return next[:len(next)/2] }},
		{"whole line without its newline", func(next []byte) []byte { return next }},
		{"zero-filled block", func([]byte) []byte { return make([]byte, 4096) }},
		{"one byte", func([]byte) []byte { return []byte("{") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := MustOpenLog(t)
			var last Record
			for range 3 {
				last = mustAppend(t, l, rec("acme", ActionStreamRead))
			}
			l.Close()
			path := filepath.Join(l.dir, segmentName(0))
			clean, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			next := last
			next.Index, next.Prev = 3, fmt.Sprintf("%x", LeafHash(mustMarshal(t, last)))
			if err := os.WriteFile(path, append(slices.Clone(clean), tt.tail(mustMarshal(t, next))...), 0o600); err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			l2 := mustOpenDir(t, l.dir, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			if n := l2.Size(); n != 3 {
				t.Errorf("Size() after torn tail = %d, want 3", n)
			}
			if !strings.Contains(logs.String(), "torn") {
				t.Errorf("Open did not log the cut; log: %s", logs.String())
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, clean) {
				t.Errorf("segment after Open is %d bytes, want the %d bytes before the torn write", len(b), len(clean))
			}
			r := mustAppend(t, l2, rec("acme", ActionStreamRead))
			if r.Index != 3 || r.Prev != next.Prev {
				t.Errorf("Append after cut = index %d prev %s, want 3 %s", r.Index, r.Prev, next.Prev)
			}
			if err := l2.Verify(context.Background()); err != nil {
				t.Errorf("Verify() = %v", err)
			}
		})
	}
}

func TestTamperIsDetected(t *testing.T) {
	const n = 8
	tests := []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		at     uint64
		// onOpen: the damage is visible to a fresh Open (a rewritten last
		// record is visible only against the head a running Log holds, or
		// a checkpoint).
		onOpen bool
	}{
		{"byte in a middle record's value", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"principal":"tenant:acme"`), []byte(`"principal":"tenant:acmf"`), 1)
			return ls
		}, 4, true},
		{"byte breaking a middle record's JSON", func(ls [][]byte) [][]byte {
			ls[3][0] = '['
			return ls
		}, 3, true},
		{"non-canonical rewrite of a middle record", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`,"action"`), []byte(`, "action"`), 1)
			return ls
		}, 3, true},
		{"index rewritten", func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`{"index":2,`), []byte(`{"index":9,`), 1)
			return ls
		}, 2, true},
		{"line deleted", func(ls [][]byte) [][]byte { return slices.Delete(ls, 5, 6) }, 5, true},
		{"first line deleted", func(ls [][]byte) [][]byte { return ls[1:] }, 0, true},
		{"lines swapped", func(ls [][]byte) [][]byte { ls[2], ls[3] = ls[3], ls[2]; return ls }, 2, true},
		{"line duplicated", func(ls [][]byte) [][]byte { return slices.Insert(ls, 4, ls[3]) }, 4, true},
		{"last record rewritten", func(ls [][]byte) [][]byte {
			ls[n-1] = bytes.Replace(ls[n-1], []byte(`"outcome":"ok"`), []byte(`"outcome":"denied"`), 1)
			return ls
		}, n - 1, false},
		{"last record deleted", func(ls [][]byte) [][]byte { return ls[:n-1] }, n - 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := MustOpenLog(t)
			for range n {
				mustAppend(t, l, rec("acme", ActionStreamRead))
			}
			if err := l.Verify(context.Background()); err != nil {
				t.Fatalf("Verify() before tampering = %v", err)
			}
			lines := tt.tamper(readLines(t, l.dir))
			path := filepath.Join(l.dir, segmentName(0))
			if err := os.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
				t.Fatal(err)
			}

			checkInconsistent(t, "Verify()", l.Verify(context.Background()), tt.at)
			l.Close()
			_, err := Open(Options{Dir: l.dir})
			if tt.onOpen {
				checkInconsistent(t, "Open()", err, tt.at)
			} else if err != nil {
				t.Errorf("Open() = %v, want nil: without a checkpoint the end of a closed log can be rewritten unseen", err)
			}
		})
	}
}

func checkInconsistent(t *testing.T, call string, err error, at uint64) {
	t.Helper()
	var inc *InconsistentError
	if !errors.As(err, &inc) {
		t.Errorf("%s = %v, want *InconsistentError", call, err)
		return
	}
	if inc.At != at {
		t.Errorf("%s = %v, want *InconsistentError at %d", call, err, at)
	}
	if inc.Want == "" || inc.Got == "" {
		t.Errorf("%s = %#v, want the evidence in Want and Got", call, inc)
	}
}

func TestTamperedSegmentsAreDetected(t *testing.T) {
	tests := []struct {
		name string
		// tamper damages the log and returns the index that must be named.
		tamper func(t *testing.T, dir string, firsts []uint64) uint64
	}{
		{"middle segment deleted", func(t *testing.T, dir string, firsts []uint64) uint64 {
			mustDo(t, os.Remove(filepath.Join(dir, segmentName(firsts[1]))))
			return firsts[1]
		}},
		{"segment renamed", func(t *testing.T, dir string, firsts []uint64) uint64 {
			mustDo(t, os.Rename(filepath.Join(dir, segmentName(firsts[1])), filepath.Join(dir, segmentName(firsts[1]+1))))
			return firsts[1]
		}},
		{"closed segment's last newline cut", func(t *testing.T, dir string, firsts []uint64) uint64 {
			p := filepath.Join(dir, segmentName(firsts[0]))
			b, err := os.ReadFile(p)
			mustDo(t, err)
			mustDo(t, os.WriteFile(p, b[:len(b)-1], 0o600))
			return firsts[1] - 1 // the last record of the first segment
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := MustOpenLog(t, func(o *Options) { o.SegmentBytes = 500 })
			for range 12 {
				mustAppend(t, l, rec("acme", ActionStreamRead))
			}
			firsts, _ := listSegments(l.dir)
			if len(firsts) < 3 {
				t.Fatalf("segments = %v, want at least 3", firsts)
			}
			at := tt.tamper(t, l.dir, firsts)
			checkInconsistent(t, "Verify()", l.Verify(context.Background()), at)
			l.Close()
			_, err := Open(Options{Dir: l.dir})
			checkInconsistent(t, "Open()", err, at)
		})
	}
}

func TestOnFlagged(t *testing.T) {
	var mu sync.Mutex
	calls := map[uint64]int{}
	var unflagged []uint64
	l := MustOpenLog(t, func(o *Options) {
		o.MaxBatch = 8
		o.OnFlagged = func(r Record) {
			mu.Lock()
			defer mu.Unlock()
			calls[r.Index]++
			if !r.Flagged {
				unflagged = append(unflagged, r.Index)
			}
		}
	})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				r := rec("acme", ActionStreamRead)
				r.Flagged = (w+i)%3 == 0
				if r.Flagged {
					r.Reason = "key owner is not the reader's tenant"
				}
				if _, err := l.Append(context.Background(), r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpenDir(t, l.dir)
	flagged, err := l2.List(context.Background(), Filter{Flagged: true, Limit: MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(unflagged) > 0 {
		t.Errorf("OnFlagged called for unflagged records %v", unflagged)
	}
	if len(calls) != len(flagged) {
		t.Errorf("OnFlagged called for %d records, want %d", len(calls), len(flagged))
	}
	for _, r := range flagged {
		if calls[r.Index] != 1 {
			t.Errorf("OnFlagged called %d times for record %d, want once", calls[r.Index], r.Index)
		}
	}
}

func TestOnFlaggedMayAppend(t *testing.T) {
	alerted := make(chan Record, 1)
	var l *Log
	l = MustOpenLog(t, func(o *Options) {
		o.OnFlagged = func(r Record) {
			if r.Action == "alert.sent" {
				return
			}
			// An alert sink that audits its own delivery must not deadlock.
			a, err := l.Append(context.Background(), Record{Principal: "system", Action: "alert.sent", Outcome: OutcomeOK,
				Flagged: true, Details: map[string]string{"record": fmt.Sprint(r.Index)}})
			if err != nil {
				t.Error(err)
			}
			alerted <- a
		}
	})
	r := rec("acme", ActionStreamRead)
	r.Flagged = true
	mustAppend(t, l, r)
	select {
	case a := <-alerted:
		if a.Index != 1 {
			t.Errorf("alert record index = %d, want 1", a.Index)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFlagged calling Append deadlocked")
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOnFlaggedPanicIsRecovered(t *testing.T) {
	var logs syncBuffer
	l := MustOpenLog(t, func(o *Options) {
		o.OnFlagged = func(Record) { panic("sink down") }
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	r := rec("acme", ActionStreamRead)
	r.Flagged = true
	mustAppend(t, l, r)
	mustAppend(t, l, r)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), "OnFlagged panicked"); got != 2 {
		t.Errorf("logged %d recovered panics, want 2; log: %s", got, logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAppendContextCancelled(t *testing.T) {
	l := MustOpenLog(t)
	mustAppend(t, l, rec("acme", ActionStreamRead))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, rec("acme", ActionStreamRead)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append(cancelled ctx) = %v, want context.Canceled", err)
	}
	if n := l.Size(); n != 1 {
		t.Errorf("Size() = %d after a cancelled Append, want 1", n)
	}

	// Cancellation racing the writer: every Append either returns nil and
	// its record is in the log, or returns the ctx error and it is not.
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				id := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*50*time.Microsecond)
				r := rec("acme", ActionStreamRead)
				r.Resource = id
				_, err := l.Append(ctx, r)
				cancel()
				switch {
				case err == nil:
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				case !errors.Is(err, context.DeadlineExceeded):
					t.Errorf("Append = %v, want nil or context.DeadlineExceeded", err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpenDir(t, l.dir)
	if err := l2.Verify(context.Background()); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	stored := map[string]bool{}
	for _, line := range readLines(t, l.dir)[1:] {
		r, err := ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		stored[r.Resource] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("record %s was acknowledged but is not in the log", id)
		}
	}
	for id := range stored {
		if !acked[id] {
			t.Errorf("record %s is in the log but its Append returned a ctx error", id)
		}
	}
	t.Logf("%d of 320 appends acknowledged before their deadline", len(acked))
}

func TestClose(t *testing.T) {
	l := MustOpenLog(t)
	for range 100 {
		l.AppendAsync(rec("acme", ActionIngestBatch))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, err := l.Append(context.Background(), rec("acme", ActionAuth)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := l.List(context.Background(), Filter{}); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
	l2 := mustOpenDir(t, l.dir)
	if n := l2.Size(); n != 100 {
		t.Errorf("Size() after AppendAsync and Close = %d, want 100", n)
	}
}

func TestOpenIsExclusive(t *testing.T) {
	l := MustOpenLog(t)
	if l2, err := Open(Options{Dir: l.dir}); err == nil {
		l2.Close()
		t.Fatal("second Open of one directory succeeded, want an error")
	}
	l.Close()
	l3 := mustOpenDir(t, l.dir)
	l3.Close()
}

func TestOptionsValidate(t *testing.T) {
	o := Options{MaxBatch: -1, SegmentBytes: MaxSegmentBytes + 1, QueueSize: -1}
	err := o.Validate()
	for _, want := range []string{"Dir", "MaxBatch", "SegmentBytes", "QueueSize"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
}
