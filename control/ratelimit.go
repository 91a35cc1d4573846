package control

import "time"

// limiter is a token bucket over the messages one connection sends. It is
// owned by the connection's reader goroutine (no locking).
//
// A message that finds the bucket empty is refused with a non-fatal
// rate-limited error and still costs a token: the bucket goes into debt.
// A client that backs off pays the debt back at rate and recovers; one that
// keeps sending while refused reaches a debt of burst and is disconnected.
// Every request can cost the router a route rebuild over its meeting, so an
// unbounded request stream from one client would be paid for by all.
type limiter struct {
	rate   float64 // tokens per second
	burst  float64 // bucket size, and the most debt before disconnecting
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst int, now time.Time) limiter {
	return limiter{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// verdict of limiter.take.
type verdict uint8

const (
	allow  verdict = iota // handle the message
	refuse                // answer rate-limited, keep the connection
	cutOff                // the client ignored refusals: disconnect
)

// take charges one message arriving at now.
func (l *limiter) take(now time.Time) verdict {
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
	l.tokens--
	switch {
	case l.tokens >= 0:
		return allow
	case l.tokens > -l.burst:
		return refuse
	}
	return cutOff
}
