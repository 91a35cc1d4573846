package tunnel

import (
	"sync"

	"golang.org/x/time/rate"
)

// slots counts open streams per key (a token identity or a source IP) and
// holds the key's byte-rate bucket while it has streams. Safe for
// concurrent use; the mutex is taken when a stream opens or ends, never per
// relayed byte.
type slots struct {
	max   int        // streams per key
	rate  rate.Limit // bytes per second per key
	burst int        // bucket size in bytes

	mu   sync.Mutex
	keys map[string]*slot
}

// slot is one key's stream count and byte bucket. The bucket is shared by
// the key's streams (and is itself safe for concurrent use).
type slot struct {
	n   int
	lim *rate.Limiter
}

func newSlots(max, bytesPerSec int) *slots {
	return &slots{max: max, rate: rate.Limit(bytesPerSec), burst: bytesPerSec, keys: make(map[string]*slot)}
}

// acquire takes one of key's slots and returns its bucket, or nil when key
// already has max streams.
func (s *slots) acquire(key string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.keys[key]
	if sl == nil {
		sl = &slot{lim: rate.NewLimiter(s.rate, s.burst)}
		s.keys[key] = sl
	}
	if sl.n >= s.max {
		return nil
	}
	sl.n++
	return sl.lim
}

// release gives back one of key's slots; the key is forgotten with its last
// stream, so the map holds only keys with open streams.
func (s *slots) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.keys[key]; sl != nil {
		if sl.n--; sl.n <= 0 {
			delete(s.keys, key)
		}
	}
}
