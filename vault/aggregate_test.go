package vault_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tally sums, per source, the occurrences and counts the records stand for.
func tally(recs []audit.Record) (occurrences, counts map[string]int) {
	occurrences, counts = map[string]int{}, map[string]int{}
	for _, r := range recs {
		src := r.Details[audit.DetailSource]
		occurrences[src] += audit.Occurrences(r)
		counts[src] += max(r.Count, 1)
	}
	return occurrences, counts
}

// 2000 wrong tokens from one source cost the audit log two records — the
// first failure at once, the rest in one aggregate at Close — whose
// counts add up to 2000; another source is aggregated apart.
func TestAuthenticateFromAggregates(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour })
	ctx := context.Background()
	n := tv.audit.Size()
	const flood = 2000
	for i := range flood {
		if _, err := tv.v.AuthenticateFrom(ctx, "192.0.2.7", fmt.Sprintf("tvt_wrong-%d", i), audit.ActionStreamList, "tenants/acme/streams"); codeOf(err) != events.EUNAUTHORIZED {
			t.Fatalf("AuthenticateFrom(wrong token) = %v, want unauthorized", err)
		}
	}
	for range 3 {
		if _, err := tv.v.AuthenticateFrom(ctx, "198.51.100.1", "", audit.ActionStreamList, "tenants/acme/streams"); codeOf(err) != events.EUNAUTHORIZED {
			t.Fatalf("AuthenticateFrom(no token) = %v, want unauthorized", err)
		}
	}
	before := tv.recordsSince(t, n)
	if len(before) != 2 || before[0].Details[audit.DetailSource] != "192.0.2.7" || before[0].Reason != "unknown credential" ||
		before[1].Details[audit.DetailSource] != "198.51.100.1" || before[1].Reason != "missing credential" {
		t.Fatalf("records before Close = %s, want the first failure of each source", dump(before))
	}
	if err := tv.v.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	recs := tv.recordsSince(t, n)
	if len(recs) != 4 {
		t.Fatalf("records after Close = %d, want 4 (a first and an aggregate per source): %s", len(recs), dump(recs))
	}
	occ, _ := tally(recs)
	if occ["192.0.2.7"] != flood || occ["198.51.100.1"] != 3 {
		t.Errorf("occurrences per source = %v, want %d and 3", occ, flood)
	}
	for _, r := range recs[2:] {
		first, err1 := time.Parse(time.RFC3339Nano, r.Details[audit.DetailFirst])
		last, err2 := time.Parse(time.RFC3339Nano, r.Details[audit.DetailLast])
		if r.Action != audit.ActionStreamList || r.Outcome != audit.OutcomeDenied || r.Principal != audit.PrincipalAnonymous || r.Flagged ||
			err1 != nil || err2 != nil || last.Before(first) || r.Count != audit.Occurrences(r) {
			t.Errorf("aggregate record = %s, want a denied stream.list of anonymous with first ≤ last and Count = aggregated", dump(r))
		}
	}
	if got := tv.v.Stats().Denied.Load(); got != flood+3 {
		t.Errorf("Stats().Denied = %d, want %d", got, flood+3)
	}
}

// With more sources than the vault tracks, the others share the overflow
// source: the records stay bounded, and the counts still add up.
func TestAggregateSourcesBounded(t *testing.T) {
	const tracked, sources, each = 4, 100, 20
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour; c.AggregateSources = tracked })
	ctx := context.Background()
	n := tv.audit.Size()
	for i := range sources * each {
		src := "2001:db8::" + strconv.FormatInt(int64(i%sources), 16)
		if _, err := tv.v.AuthenticateFrom(ctx, src, "tvt_wrong", audit.ActionAuth, ""); codeOf(err) != events.EUNAUTHORIZED {
			t.Fatalf("AuthenticateFrom = %v", err)
		}
	}
	if err := tv.v.Close(); err != nil {
		t.Fatal(err)
	}
	recs := tv.recordsSince(t, n)
	if max := 2 * (tracked + 1); len(recs) > max {
		t.Errorf("%d records, want at most %d", len(recs), max)
	}
	total := 0
	for _, r := range recs {
		total += audit.Occurrences(r)
	}
	occ, _ := tally(recs)
	if total != sources*each || occ[audit.SourceOverflow] != (sources-tracked)*each-1 {
		t.Errorf("occurrences = %d (per source %v), want %d, %d of them under %s (its first recorded under its own source)",
			total, occ, sources*each, (sources-tracked)*each-1, audit.SourceOverflow)
	}
}

// A window closes when its interval is over: the next occurrence after it
// writes the window's aggregate and is recorded at once as the first of a
// new one.
func TestAggregateWindowCloses(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour; c.Now = clock.now })
	ctx := context.Background()
	n := tv.audit.Size()
	fail := func() {
		t.Helper()
		if _, err := tv.v.AuthenticateFrom(ctx, "192.0.2.1", "tvt_wrong", audit.ActionAuth, ""); codeOf(err) != events.EUNAUTHORIZED {
			t.Fatalf("AuthenticateFrom = %v", err)
		}
	}
	for range 5 {
		fail()
		clock.advance(time.Minute)
	}
	if got := len(tv.recordsSince(t, n)); got != 1 {
		t.Fatalf("%d records within the window, want 1", got)
	}
	clock.advance(time.Hour)
	fail()
	recs := tv.recordsSince(t, n)
	if len(recs) != 3 {
		t.Fatalf("records = %s, want the first, the aggregate of 4, a new first", dump(recs))
	}
	agg := recs[1]
	if audit.Occurrences(agg) != 4 || agg.Details[audit.DetailFirst] != "2030-01-02T03:05:05Z" || agg.Details[audit.DetailLast] != "2030-01-02T03:08:05Z" ||
		audit.Occurrences(recs[2]) != 1 || recs[2].Details[audit.DetailAggregated] != "" {
		t.Errorf("records = %s, want an aggregate of 4 from 03:05:05 to 03:08:05, then a plain first", dump(recs))
	}
}

// Records on topics of unknown tenants are aggregated per topic: 2000
// records in 2000 batches on two topics cost four records, whose counts
// add up; a shredded tenant's records are flagged and never aggregated,
// however many come.
func TestIngestSkipAggregates(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour })
	ctx := context.Background()
	tv.mustCreateTenant(t, "gone")
	if _, err := tv.v.Shred(ctx, tv.admin(t), "gone", "gone"); err != nil {
		t.Fatal(err)
	}
	n := tv.audit.Size()
	const flood = 2000
	topics := []string{"tenant.ghost-a.events", "tenant.ghost-b.events"}
	const shredded = 50
	for i := range flood {
		topic := topics[i%2]
		if err := tv.v.Ingest(ctx, topic, []vault.Message{{Topic: topic, Offset: int64(i), Value: event(t, "e", "s", `{}`)}}); err != nil {
			t.Fatalf("Ingest(%s) = %v", topic, err)
		}
		if i%(flood/shredded) == 0 {
			topic := events.TopicFor("gone")
			if err := tv.v.Ingest(ctx, topic, []vault.Message{{Topic: topic, Offset: int64(i), Value: event(t, "e", "s", `{}`)}}); err != nil {
				t.Fatalf("Ingest(%s) = %v", topic, err)
			}
		}
	}
	if err := tv.v.Close(); err != nil {
		t.Fatal(err)
	}
	var flagged int
	var skips []audit.Record
	for _, r := range tv.recordsSince(t, n) {
		switch {
		case r.Flagged:
			flagged++
			if _, code, _ := audit.Classify(r); code != audit.ViolationShredded || r.Tenant != "gone" || audit.Occurrences(r) != 1 {
				t.Errorf("flagged record %s, want a shredded_tenant crossing of gone, not aggregated", dump(r))
			}
		case r.Action == audit.ActionIngestSkip:
			skips = append(skips, r)
		}
	}
	if flagged != shredded {
		t.Errorf("%d flagged records, want %d: one per batch on the shredded tenant's topic", flagged, shredded)
	}
	occ, counts := tally(skips)
	if len(skips) != 4 || len(counts) != 2 {
		t.Fatalf("ingest.skip records = %s, want a first and an aggregate per topic", dump(skips))
	}
	for src, c := range counts {
		if c != flood/2 || occ[src] != flood/2 {
			t.Errorf("source %s: %d records in %d batches, want %d in %d", src, c, occ[src], flood/2, flood/2)
		}
	}
	if got := tv.v.Stats().UnknownTenantMsgs.Load(); got != flood+shredded {
		t.Errorf("Stats().UnknownTenantMsgs = %d, want %d", got, flood+shredded)
	}
}

// RefuseFrom is a denial aggregated with the source's others, answered
// rate_limited.
func TestRefuseFrom(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour })
	ctx := context.Background()
	n := tv.audit.Size()
	for range 10 {
		if err := tv.v.RefuseFrom(ctx, "192.0.2.9", audit.ActionAuth, ""); codeOf(err) != events.ERATELIMITED {
			t.Fatalf("RefuseFrom = %v, want rate_limited", err)
		}
	}
	if err := tv.v.Close(); err != nil {
		t.Fatal(err)
	}
	recs := tv.recordsSince(t, n)
	if occ, _ := tally(recs); len(recs) != 2 || occ["192.0.2.9"] != 10 || recs[0].Outcome != audit.OutcomeDenied || recs[0].Reason != "rate limited" {
		t.Errorf("records = %s, want a first and an aggregate of 10 denials, rate limited", dump(recs))
	}
}

// A refused request keeps the tenant its path probed: a tenant of the
// vault by its id, any other name by its keyed hash (never the name). A
// flood on one tenant and on made-up ones is still two windows, whose
// aggregates name the vault's tenant, and no made-up one.
func TestAuthenticateForProbedTenant(t *testing.T) {
	tv := MustOpenVault(t, func(c *vault.Config) { c.AggregateInterval = time.Hour })
	tv.mustCreateTenant(t, "acme")
	ctx := context.Background()
	const marker = "zz-MARKER-probe"
	n := tv.audit.Size()
	for i := range 50 {
		for _, tenant := range []string{"acme", fmt.Sprintf("%s-%d", marker, i)} {
			if _, err := tv.v.AuthenticateFor(ctx, "192.0.2.7", "tvt_wrong", audit.ActionStreamList, "streams", tenant); codeOf(err) != events.EUNAUTHORIZED {
				t.Fatalf("AuthenticateFor(wrong token, %s) = %v, want unauthorized", tenant, err)
			}
		}
	}
	first := tv.recordsSince(t, n)
	if len(first) != 2 {
		t.Fatalf("records before Close = %s, want the first failure on acme and on a made-up tenant", dump(first))
	}
	if first[0].Tenant != "acme" {
		t.Errorf("record of a probe of acme: tenant %q, want acme", first[0].Tenant)
	}
	if !strings.Contains(first[1].Tenant, vault.KeyedHashPrefix) {
		t.Errorf("record of a probe of a made-up tenant: tenant %q, want its keyed hash", first[1].Tenant)
	}
	if err := tv.v.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	recs := tv.recordsSince(t, n)
	if len(recs) != 4 {
		t.Fatalf("records after Close = %d, want 4 (a first and an aggregate per tenant kind): %s", len(recs), dump(recs))
	}
	byTenant := map[string]int{}
	for _, r := range recs {
		if strings.Contains(dump(r), marker) {
			t.Errorf("record %s holds the probed name", dump(r))
		}
		if r.Details[audit.DetailAggregated] != "" {
			byTenant[r.Tenant] += audit.Occurrences(r)
		}
	}
	if byTenant["acme"] != 49 || byTenant[""] != 49 {
		t.Errorf("aggregated occurrences by tenant = %v, want 49 of acme and 49 unnamed", byTenant)
	}
}
