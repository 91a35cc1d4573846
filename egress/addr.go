// Package egress sends the router's packets: batches of sendmmsg(2)
// messages that point at caller-owned buffers (one buffer, many
// destinations, no copy), each marked with its media kind's DSCP (video's
// as the socket's own TOS, other kinds' through a per-message control
// message), runs of equal-size datagrams for one destination sent as one
// UDP GSO super-packet (gso.go), with partial sends resumed and every
// failed or refused copy counted.
package egress

import (
	"net/netip"
	"sync/atomic"
)

// Addr is a destination transport address together with its kernel
// sockaddr form, built once when a flow is bound so that the packet path
// only points at it. An Addr is immutable after AddrOf but for its GSO
// flag (an atomic), and safe for concurrent use.
type Addr struct {
	AP      netip.AddrPort
	raw     sockaddr
	src     Src
	pktinfo []byte // IP_PKTINFO / IPV6_PKTINFO control message, nil without src
	// noGSO is set when a super-packet to this destination failed for a
	// reason of GSO (Batch.fallback): later runs go one datagram per
	// message. A rebind builds a new Addr, which tries GSO again.
	noGSO atomic.Bool
}

// Src is the local address copies to a destination leave from. A socket
// bound to a wildcard address (0.0.0.0, ::) lets the kernel pick each
// reply's source address by route, which on a host with several addresses
// may differ from the one the client sent to; the client's NAT or firewall
// then drops the reply. Setting Src (the address a client's bind arrived
// at) makes every copy carry it in an IP_PKTINFO (RFC 3542 IPV6_PKTINFO)
// control message. The zero Src leaves the choice to the kernel.
type Src struct {
	Addr netip.Addr
	// IfIndex is the interface a link-local address belongs to; 0 for any
	// other address (the route decides the interface).
	IfIndex uint32
}

// AddrOf returns the Addr of ap, sent from the kernel's choice of source.
// IPv4-mapped IPv6 addresses are unmapped: the router keeps one IPv4 and
// one IPv6 socket family apart.
func AddrOf(ap netip.AddrPort) *Addr { return AddrFrom(ap, Src{}) }

// AddrFrom returns the Addr of ap whose copies leave from src (see Src); a
// src that is invalid, unspecified or of the other family than ap is
// ignored.
func AddrFrom(ap netip.AddrPort, src Src) *Addr {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	a := &Addr{AP: ap}
	a.raw.set(ap)
	src.Addr = src.Addr.Unmap()
	if src.Addr.IsValid() && !src.Addr.IsUnspecified() && src.Addr.Is4() == ap.Addr().Is4() {
		if !src.Addr.IsLinkLocalUnicast() {
			src.IfIndex = 0
		}
		a.src = src
		a.pktinfo = pktinfoCmsg(src)
	}
	return a
}

// Src returns the source the Addr's copies leave from (zero: the kernel's
// choice).
func (a *Addr) Src() Src { return a.src }

// Is6 reports whether a is an IPv6 destination.
func (a *Addr) Is6() bool { return a.AP.Addr().Is6() }
