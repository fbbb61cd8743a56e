package ingest_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// groupLag reads the lag of the group it names now, on the real broker.
type groupLag struct {
	admin *kafka.Admin
	group atomic.Value // string
}

func (g *groupLag) Lag(ctx context.Context) ([]kafka.PartitionLag, error) {
	return g.admin.GroupLag(ctx, g.group.Load().(string), func(topic string) bool {
		_, err := events.TenantFromTopic(topic)
		return err == nil
	})
}

// TestRoundsHealthReflectsLag: a tenant partition whose group lags behind
// its end with no progress for StuckAfter makes Health fail, naming the
// partition and how far behind it is (never a record); once the group's
// commits catch up, Health is nil again. The lag is the group's on the
// real broker; the clock of StuckAfter is the test's.
func TestRoundsHealthReflectsLag(t *testing.T) {
	k := MustStartKafka(t)
	k.mustCreateTopic(t, "tenant.slow.events", 1)
	f := &fakeIngester{}
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	// The reader first watches a group that never consumes: what a
	// vault whose group never settles looks like from the broker.
	lag := &groupLag{admin: k.admin}
	lag.group.Store("never-joins")
	r, _ := startRounds(t, k, k.newConsumer(t, "vault"), f, func(c *ingest.RoundsConfig) {
		c.Lag, c.LagInterval, c.StuckAfter, c.Now = lag, 20*time.Millisecond, time.Minute, now
		c.KeepIngress = true // the lag counts from the start: keep the records
	})
	mustPublishN(t, k, "tenant.slow.events", 0, 5)
	waitUntil(t, 20*time.Second, "the lag to be measured", func() bool {
		l := r.Lag()
		return l.Total == 5 && len(l.Lagging) == 1 && l.Lagging[0].Topic == "tenant.slow.events"
	})
	if err := r.Health(); err != nil {
		t.Fatalf("Health() lagging for less than StuckAfter = %v, want nil", err)
	}
	skew.Store(int64(2 * time.Minute))
	err := r.Health()
	if err == nil || !strings.Contains(err.Error(), "tenant.slow.events/0") || !strings.Contains(err.Error(), "5 records behind") {
		t.Fatalf("Health() lagging without progress for 2m = %v, want an error naming tenant.slow.events/0, 5 records behind", err)
	}
	if strings.Contains(err.Error(), "stream-") {
		t.Errorf("Health() = %v: holds a record key", err)
	}
	// The vault's own group applied and committed them: no lag, healthy.
	waitUntil(t, 20*time.Second, "the records applied", func() bool { return len(f.applied("tenant.slow.events")) == 5 })
	lag.group.Store("vault")
	waitUntil(t, 20*time.Second, "Health to recover", func() bool { return r.Health() == nil && r.Lag().Total == 0 })
}
