package web

import (
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is a token bucket per source address (rate tokens a second,
// burst deep), in memory: it protects this node's CPU and database from a
// flood and is per node on purpose (a load balancer spreads a source over
// nodes; the security limits, the lockouts, are in the database and shared).
// Safe for concurrent use. Memory is bounded: at maxSources buckets, full
// (idle) buckets are dropped, and if none is idle the table is reset, which
// only ever errs towards admitting.
type rateLimiter struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	b     map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxSources bounds the table: 100k sources at ~100 bytes each is 10 MB.
const maxSources = 100_000

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), b: map[netip.Addr]*bucket{}}
}

// allow takes a token for src at now; when none is left it returns false
// and how long until one is.
func (l *rateLimiter) allow(src netip.Addr, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[src]
	if b == nil {
		if len(l.b) >= maxSources {
			l.evict(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.b[src] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

func (l *rateLimiter) evict(now time.Time) {
	for a, b := range l.b {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.b, a)
		}
	}
	if len(l.b) >= maxSources {
		clear(l.b)
	}
}
