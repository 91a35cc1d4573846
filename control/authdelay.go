package control

import (
	"net/netip"
	"sync"
	"time"
)

// Slowing down failed joins from one address (issue 14): a client that
// keeps presenting bad tokens is guessing, or broken; either way its
// refusals come later and later, so that one address cannot try tokens (or
// resume credentials) at the rate of its connections. Only refusals wait:
// a good join from the same address (a NAT shared with the guesser) is
// served at once.
const (
	// authFreeFailures from one address within authFailWindow are answered
	// at once: typos, an expired link, a client retrying a stale token.
	authFreeFailures = 3
	// authFailDelay is the wait of the first refusal past the free ones;
	// each further one doubles it, up to authMaxDelay.
	authFailDelay = 100 * time.Millisecond
	authMaxDelay  = 2 * time.Second
	// authFailWindow: an address's count starts over after this long
	// without a failure.
	authFailWindow = time.Minute
	// authTracked caps the addresses remembered; beyond it the table is
	// cleared (an attacker with that many addresses gains a fresh start,
	// but the table stays bounded).
	authTracked = 1 << 16
)

// authFails counts recent authentication failures per source address.
// Safe for concurrent use.
type authFails struct {
	mu sync.Mutex
	m  map[netip.Addr]authRec
}

type authRec struct {
	n    int
	last time.Time
}

// fail records a failure from ip at now and returns how long its refusal
// must wait.
func (a *authFails) fail(ip netip.Addr, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) >= authTracked {
		a.m = make(map[netip.Addr]authRec)
	}
	r := a.m[ip]
	if now.Sub(r.last) > authFailWindow {
		r.n = 0
	}
	r.n++
	r.last = now
	a.m[ip] = r
	if r.n <= authFreeFailures {
		return 0
	}
	d := authFailDelay << min(r.n-authFreeFailures-1, 20)
	return min(d, authMaxDelay)
}
