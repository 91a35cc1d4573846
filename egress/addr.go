// Package egress sends the router's packets: batches of sendmmsg(2)
// messages that point at caller-owned buffers (one buffer, many
// destinations, no copy), each marked with its media kind's DSCP through a
// per-message control message, with partial sends resumed and every failed
// or refused copy counted.
package egress

import "net/netip"

// Addr is a destination transport address together with its kernel
// sockaddr form, built once when a flow is bound so that the packet path
// only points at it. An Addr is immutable after AddrOf and safe for
// concurrent use.
type Addr struct {
	AP  netip.AddrPort
	raw sockaddr
}

// AddrOf returns the Addr of ap. IPv4-mapped IPv6 addresses are unmapped:
// the router keeps one IPv4 and one IPv6 socket family apart.
func AddrOf(ap netip.AddrPort) *Addr {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	a := &Addr{AP: ap}
	a.raw.set(ap)
	return a
}

// Is6 reports whether a is an IPv6 destination.
func (a *Addr) Is6() bool { return a.AP.Addr().Is6() }
