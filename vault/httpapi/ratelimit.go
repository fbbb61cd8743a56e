package httpapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of the Options that rate-limit failed authentications.
const (
	DefaultAuthFailureLimit    = 100
	DefaultAuthFailureInterval = 10 * time.Second
	DefaultAuthFailureSources  = 1024
)

// limiter counts failed authentications per source (client IP) per
// interval: a source at limit failures is refused for the rest of its
// interval. It tracks at most max sources at once; past them, new sources
// are not limited (their failures still cost the audit log only the
// overflow aggregate, see vault.Config.AggregateSources), so that memory is
// bounded and a flood from many addresses cannot lock every new client out.
type limiter struct {
	limit    int // <= 0: no limit
	interval time.Duration
	max      int
	now      func() time.Time

	mu        sync.Mutex
	sources   map[string]*failures
	nextSweep time.Time
}

// failures are a source's failed authentications in its current interval.
type failures struct {
	start time.Time
	n     int
}

func newLimiter(limit int, interval time.Duration, max int) *limiter {
	return &limiter{limit: limit, interval: interval, max: max, now: time.Now, sources: make(map[string]*failures)}
}

// limited reports whether src is refused, and for how long still.
func (l *limiter) limited(src string) (bool, time.Duration) {
	if l.limit <= 0 {
		return false, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.sources[src]
	if !ok || now.Sub(f.start) >= l.interval || f.n < l.limit {
		return false, 0
	}
	return true, f.start.Add(l.interval).Sub(now)
}

// fail counts a failed authentication of src.
func (l *limiter) fail(src string) {
	if l.limit <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.sources[src]; ok {
		if now.Sub(f.start) >= l.interval {
			f.start, f.n = now, 0
		}
		f.n++
		return
	}
	if len(l.sources) >= l.max && !now.Before(l.nextSweep) {
		for s, f := range l.sources {
			if now.Sub(f.start) >= l.interval {
				delete(l.sources, s)
			}
		}
		l.nextSweep = now.Add(l.interval / 4) // a full table is swept at most so often
	}
	if len(l.sources) < l.max {
		l.sources[src] = &failures{start: now, n: 1}
	}
}

// clientIP is the source of r for rate limits and audit aggregation: the
// IP address of the peer (r.RemoteAddr). Forwarding headers are not
// trusted: behind a proxy, every client is the proxy's address.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
