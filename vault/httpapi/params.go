package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

// Page sizes of the listing endpoints' limit parameter.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// params reads a request's query parameters, each the same way: absent
// (or empty) gives its default, a bad value fails with one error, an
// EINVALID naming the parameter and what it must be. The first bad
// parameter is kept (Err) and the later reads are ignored, so a handler
// reads every parameter and then checks Err once.
//
// Handlers of a tenant's data read them after the session is open: the
// credential and the tenant boundary are checked, and a crossing flagged,
// whatever the parameters.
type params struct {
	q   url.Values
	err error
}

func queryParams(r *http.Request) *params { return &params{q: r.URL.Query()} }

// Err is the first bad parameter's error, or nil.
func (p *params) Err() error { return p.err }

// String is parameter name as given, "" when absent.
func (p *params) String(name string) string { return p.q.Get(name) }

// Bool is whether parameter name is "true".
func (p *params) Bool(name string) bool { return p.q.Get(name) == "true" }

// Limit is the page size, parameter limit: defaultLimit when absent, from
// 1 to maxLimit.
func (p *params) Limit() int {
	s := p.q.Get("limit")
	if s == "" {
		return defaultLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		p.fail("limit", "an integer from 1 to "+strconv.Itoa(maxLimit))
		return 0
	}
	return n
}

// OptUint is parameter name as a non-negative integer, and whether it was
// given.
func (p *params) OptUint(name string) (uint64, bool) {
	s := p.q.Get(name)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		p.fail(name, "a non-negative integer")
		return 0, false
	}
	return n, true
}

// Uint is parameter name as a non-negative integer, def when absent.
func (p *params) Uint(name string, def uint64) uint64 {
	if n, ok := p.OptUint(name); ok {
		return n
	}
	return def
}

// RequiredUint is parameter name as a non-negative integer, which must be
// given.
func (p *params) RequiredUint(name string) uint64 {
	n, ok := p.OptUint(name)
	if !ok && p.q.Get(name) == "" {
		p.fail(name, "a non-negative integer")
	}
	return n
}

// Time is parameter name as an RFC 3339 time, the zero time when absent.
func (p *params) Time(name string) time.Time {
	s := p.q.Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		p.fail(name, "an RFC 3339 time")
		return time.Time{}
	}
	return t
}

// fail keeps the first bad parameter: name, and what it must be.
func (p *params) fail(name, want string) {
	if p.err == nil {
		p.err = events.Reasonf(events.EINVALID, events.ReasonParamInvalid, "query parameter %s must be %s", name, want)
	}
}
