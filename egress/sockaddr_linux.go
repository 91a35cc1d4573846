package egress

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr is a struct sockaddr_in or sockaddr_in6 in kernel layout.
type sockaddr struct {
	buf unix.RawSockaddrInet6 // large enough for both families
	len uint32
}

func (s *sockaddr) set(ap netip.AddrPort) {
	port := ap.Port()
	if ap.Addr().Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&s.buf))
		sa.Family = unix.AF_INET
		putPort(&sa.Port, port)
		sa.Addr = ap.Addr().As4()
		s.len = unix.SizeofSockaddrInet4
		return
	}
	s.buf.Family = unix.AF_INET6
	putPort(&s.buf.Port, port)
	s.buf.Addr = ap.Addr().As16()
	s.len = unix.SizeofSockaddrInet6
}

// ptr returns the sockaddr for msg_name.
func (s *sockaddr) ptr() *byte { return (*byte)(unsafe.Pointer(&s.buf)) }

// putPort stores port in network byte order into a sockaddr port field,
// whatever the host's byte order.
func putPort(field *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(field))
	b[0], b[1] = byte(port>>8), byte(port)
}
