package auth

import (
	"cmp"
	"sync"
	"time"
)

// Limiter defaults.
const (
	// FailuresMaxDefault is how many failed authentications one address
	// may make per window before its failures are answered 429.
	FailuresMaxDefault = 10
	// FailureWindowDefault is the window failures are counted in.
	FailureWindowDefault = time.Minute
	// limiterAddressesMax bounds the addresses tracked, so that a flood
	// from many addresses cannot grow the map without end; past it, new
	// addresses are not tracked until the window turns.
	limiterAddressesMax = 10000
)

// Limiter counts failed authentications per client address in a fixed
// window. It only ever slows failures: a valid token is checked before the
// limiter is asked and always passes, so an attacker sharing an address
// (a NAT, a proxy) with a real client cannot lock it out.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	start    time.Time
	failures map[string]int
}

// NewLimiter returns a Limiter allowing max failures per window per
// address (zero values: the defaults).
func NewLimiter(max int, window time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{max: cmp.Or(max, FailuresMaxDefault), window: cmp.Or(window, FailureWindowDefault), now: now, failures: map[string]int{}}
}

// Fail records a failure from addr and reports whether addr is over its
// limit, and if so how long until the window turns.
func (l *Limiter) Fail(addr string) (limited bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.start) >= l.window {
		l.start, l.failures = now, map[string]int{}
	}
	n, ok := l.failures[addr]
	if !ok && len(l.failures) >= limiterAddressesMax {
		return false, 0
	}
	n++
	l.failures[addr] = n
	if n > l.max {
		return true, l.window - now.Sub(l.start)
	}
	return false, 0
}
