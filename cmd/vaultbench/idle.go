package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tenantvault/tenantvault/internal/server"
)

// Idle is what the idle phase (-tenants-idle) measures: how long creating
// each tenant took, and what the process costs once they are idle.
type Idle struct {
	Tenants                               int
	CreateP50Ms, CreateP99Ms, CreateMaxMs float64
	// IdleCPUSeconds is the process's CPU (user and system) over
	// IdleSeconds of idleness; IdleCPUPercent the same in percent of one
	// core.
	IdleSeconds, IdleCPUSeconds, IdleCPUPercent float64
	// RSSMiB is the process's resident set at the end of the idle window;
	// PeakRSSMiB its peak since the phase started.
	RSSMiB, PeakRSSMiB float64
}

// idleSettle is how long the idle phase waits, after the last tenant is
// created, before it measures (config.idleSettle overrides it).
const idleSettle = 2 * time.Second

// benchIdle starts a vault on its defaults in dir (with its embedded
// broker, even with -brokers), creates c.tenantsIdle tenants over the
// HTTP API one after the other, timing each create, waits idleSettle,
// then measures the process's CPU over c.idleSeconds of idleness and its
// RSS (now and peak). The whole process is measured: the vault, its
// broker and vaultbench, which does nothing meanwhile.
func benchIdle(ctx context.Context, c config, dir string) (*Idle, error) {
	resetPeakRSS()
	srv, stop, err := startServer(ctx, server.Config{DataDir: dir})
	if err != nil {
		return nil, err
	}
	defer stop()
	base := "http://" + srv.HTTPAddr()
	lat := make([]time.Duration, 0, c.tenantsIdle)
	for i := range c.tenantsIdle {
		var out struct{ Token string }
		t0 := time.Now()
		if err := call(ctx, "POST", base+"/v1/tenants", srv.AdminToken(), fmt.Sprintf(`{"id":"idle-%05d"}`, i), &out); err != nil {
			return nil, fmt.Errorf("create tenant %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
		if out.Token == "" {
			return nil, fmt.Errorf("create tenant %d: no token in the answer", i)
		}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res := &Idle{Tenants: c.tenantsIdle, CreateP50Ms: ms(percentile(lat, 0.50)), CreateP99Ms: ms(percentile(lat, 0.99)), CreateMaxMs: ms(lat[len(lat)-1])}

	settle := idleSettle
	if c.idleSettle > 0 {
		settle = c.idleSettle
	}
	window := time.Duration(c.idleSeconds * float64(time.Second))
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	stopProfile, err := startCPUProfile(c.idleProfile)
	if err != nil {
		return nil, err
	}
	cpu0, start := cpuSeconds(), time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		stopProfile()
		return nil, ctx.Err()
	}
	stopProfile()
	res.IdleSeconds = time.Since(start).Seconds()
	res.IdleCPUSeconds = cpuSeconds() - cpu0
	res.IdleCPUPercent = 100 * res.IdleCPUSeconds / res.IdleSeconds
	res.RSSMiB, res.PeakRSSMiB = rssMiB("VmRSS:"), rssMiB("VmHWM:")
	return res, nil
}
