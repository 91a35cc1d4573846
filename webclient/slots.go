package webclient

import "net/netip"

// slots counts connections by source address and in total against the
// caps. Not safe for concurrent use: its owner calls it under its mutex.
type slots struct {
	perIP            map[netip.Addr]int
	total            int
	maxPer, maxTotal int
}

func newSlots(maxPer, maxTotal int) slots {
	return slots{perIP: map[netip.Addr]int{}, maxPer: maxPer, maxTotal: maxTotal}
}

// take takes a slot for ip, or returns the refusal reason (CodeClosed when
// closed).
func (s *slots) take(ip netip.Addr, closed bool) (string, bool) {
	switch {
	case closed:
		return CodeClosed, false
	case s.total >= s.maxTotal:
		return CodeTotal, false
	case s.perIP[ip] >= s.maxPer:
		return CodePerSource, false
	}
	s.total++
	s.perIP[ip]++
	return "", true
}

// give returns ip's slot.
func (s *slots) give(ip netip.Addr) {
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}
