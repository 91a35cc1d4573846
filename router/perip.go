package router

import (
	"net/netip"
	"sync"
)

// perIPLimit counts live connections per source address. Safe for
// concurrent use; used at accept time, never on the packet path.
type perIPLimit struct {
	mu  sync.Mutex
	max int
	n   map[netip.Addr]int
}

func (l *perIPLimit) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = make(map[netip.Addr]int)
	}
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *perIPLimit) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}
