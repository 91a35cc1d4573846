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

// pktinfoCmsg returns the IP_PKTINFO (struct in_pktinfo, ipi_spec_dst set)
// or IPV6_PKTINFO (struct in6_pktinfo, RFC 3542 section 6.1) control message
// that makes a datagram leave from src.
func pktinfoCmsg(src Src) []byte {
	if src.Addr.Is4() {
		buf := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[0]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&buf[unix.CmsgLen(0)]))
		pi.Ifindex = int32(src.IfIndex)
		pi.Spec_dst = src.Addr.As4()
		return buf
	}
	buf := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[0]))
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&buf[unix.CmsgLen(0)]))
	pi.Addr = src.Addr.As16()
	pi.Ifindex = src.IfIndex
	return buf
}
