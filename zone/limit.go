package zone

import (
	"sync"
	"time"
)

// bucket is a token bucket: rate tokens per second, holding at most burst.
// Not safe for concurrent use (one per connection); see lockedBucket.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// newBucket returns a full bucket of rate per second with a burst of twice
// the rate (at least 1): a peer can catch up after a short stall.
func newBucket(rate float64) bucket {
	burst := max(1, 2*rate)
	return bucket{rate: rate, burst: burst, tokens: burst}
}

// allow takes one token if there is one.
func (b *bucket) allow(now time.Time) bool {
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// lockedBucket is a bucket shared by connections. Safe for concurrent use.
type lockedBucket struct {
	mu sync.Mutex
	b  bucket
}

func (l *lockedBucket) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.allow(now)
}
