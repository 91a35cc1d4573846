package bench

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// latency measures the delay a forwarder adds at light load: the publisher
// stamps each packet's send time (CLOCK_REALTIME, just before the send
// system call) by sequence number, and each subscriber socket reports the
// kernel's receive time of every copy (SO_TIMESTAMPNS: when the forwarder's
// send queued it on the receiving socket, before the parent's receiver
// wakes). The difference is the forwarder's wake-up, processing and send,
// plus two loopback traversals that every forwarder pays alike, so compare
// the figures of two forwarders measured together (BenchmarkRatio's light
// rows), not one figure with a bar.
//
// Safe for concurrent use: stamps are atomic, and each sink appends under
// the mutex (a few thousand copies per second).
type latency struct {
	sent   [1 << 16]atomic.Int64 // send time by RTP sequence number, Unix ns
	mu     sync.Mutex
	delays []int64 // ns, of the current round
}

// stamp records that the packet with sequence number seq leaves now.
func (l *latency) stamp(seq uint16) { l.sent[seq].Store(time.Now().UnixNano()) }

// received records a copy of seq that the kernel queued at rxNanos (Unix).
func (l *latency) received(seq uint16, rxNanos int64) {
	if tx := l.sent[seq].Load(); tx != 0 && rxNanos >= tx {
		l.mu.Lock()
		l.delays = append(l.delays, rxNanos-tx)
		l.mu.Unlock()
	}
}

// take returns the round's delays and starts a new round.
func (l *latency) take() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.delays
	l.delays = nil
	return d
}

// percentile returns the p-th percentile (0..100) of d in microseconds,
// sorting d; 0 for no samples.
func percentile(d []int64, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := min(len(d)-1, int(float64(len(d))*p/100))
	return float64(d[i]) / 1e3
}
