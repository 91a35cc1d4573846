package router

import "time"

// DefaultCoalesce is Config.Coalesce's default: a reader whose packets come
// at least twice per 500 µs (4,000 packets/s and up on its socket) lets
// them gather for 500 µs between reads. On the bench's 2-core VM a wake-up
// of the reader costs about as much CPU as the receive and send of the
// packet that causes it; coalescing cut the CPU per packet by a quarter at
// 5,000 packets/s and by 45 % at 20,000 (1 -> 1, paired against the C floor:
// 0.98 and 0.63 of its cost, against 1.31 and 1.14 without coalescing;
// bench/README.md, "Light load"). Each coalesced packet waits 250 µs on
// average and at most about 600 µs (timer slack and the wake-up), inside
// the 1 ms the router may add at light load. Below the threshold every
// packet is forwarded as soon as it arrives.
const DefaultCoalesce = 500 * time.Microsecond

// MaxCoalesce bounds Config.Coalesce: the pause adds to the delay of every
// packet it holds, and the router should add under a millisecond at any
// load.
const MaxCoalesce = time.Millisecond

// coalescer decides how a reader waits for its next datagrams: blocked in
// the read until one arrives (every packet wakes the reader), or, while
// they arrive faster than two per window, a pause of window followed by a
// read of whatever has gathered (one wake-up for all of them). Owned by
// the reader's goroutine.
type coalescer struct {
	window int64 // ns; 0: off
	last   int64 // when the previous read returned, Unix ns
	gap    int64 // moving average of the time between packets, from blocking reads, ns
	paused bool  // the current batch was read after a pause
}

// coalesceAvg is the weight of a new gap in coalescer.gap: 1/4, so that a
// steady rate is recognised after a few packets and one early packet
// (a burst of a frame's packets) does not start pausing on its own.
const coalesceAvg = 4

// next returns whether the reader should pause for window and then read
// what has arrived, after a batch of n datagrams (full: the batch was
// full, so more are surely waiting) read at now (Unix ns; a step of the
// wall clock only skews a few decisions). c.paused says whether that batch
// was read after a pause.
func (c *coalescer) next(n int, full bool, now int64) bool {
	if c.window == 0 {
		return false
	}
	if full {
		// A busy socket: read again at once (a blocking read returns
		// straight away).
		c.paused = false
		c.last = now
		return false
	}
	if c.paused {
		// Still at least two per window: keep pausing. Fewer: back to
		// blocking reads, which forward a lone packet at once.
		c.paused = n >= 2
		c.last = now
		return c.paused
	}
	if c.last != 0 && n > 0 {
		gap := (now - c.last) / int64(n) // per packet: a late wake-up reads several
		if c.gap == 0 {
			c.gap = gap
		} else {
			c.gap += (gap - c.gap) / coalesceAvg
		}
	}
	c.last = now
	c.paused = c.gap > 0 && c.gap*2 <= c.window
	return c.paused
}
