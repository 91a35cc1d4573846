package session

import (
	"encoding/binary"
	"net/netip"

	"github.com/cespare/xxhash/v2"
)

// AddrKey is a remote transport address in a fixed-size, hashable form:
// the 16-byte IPv6 (or IPv4-mapped) address followed by the big-endian port.
// IPv4 addresses are always mapped so that a v4 source and its mapped form
// are one key.
type AddrKey [18]byte

// KeyOf returns the key of ap.
func KeyOf(ap netip.AddrPort) AddrKey {
	var k AddrKey
	a16 := ap.Addr().As16()
	copy(k[:16], a16[:])
	binary.BigEndian.PutUint16(k[16:], ap.Port())
	return k
}

// AddrPort converts k back.
func (k AddrKey) AddrPort() netip.AddrPort {
	a := netip.AddrFrom16([16]byte(k[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(k[16:]))
}

// hashKey spreads keys over the table shards with xxhash (XXH64), which is
// fast on 18 bytes and well distributed for sequential ports and addresses.
func hashKey(k AddrKey) uint64 { return xxhash.Sum64(k[:]) }
