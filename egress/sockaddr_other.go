//go:build !linux

package egress

import "net/netip"

// sockaddr is unused off Linux: the portable sender works with netip.
type sockaddr struct{}

func (s *sockaddr) set(netip.AddrPort) {}

func pktinfoCmsg(Src) []byte { return nil }
