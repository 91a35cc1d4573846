//go:build !linux

package bench

import (
	"errors"
	"net/netip"
)

// errNoFloor says the floor forwarder needs Linux's recvmmsg/sendmmsg.
var errNoFloor = errors.New("bench: the floor forwarder needs Linux (recvmmsg/sendmmsg)")

// floorSupported reports whether newFloor works on this OS.
const floorSupported = false

func newFloor([]netip.AddrPort, bool) (forwarder, error) { return nil, errNoFloor }
