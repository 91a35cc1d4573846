package ingress

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BufSize is the size of each receive buffer: larger than any accepted
// datagram (1500) so that an oversize one is seen as oversize (MSG_TRUNC or
// a length above the limit) rather than silently cut.
const BufSize = 2048

// Batch is the preallocated state of one recvmmsg(2) call: n buffers, n
// source-address slots and n message headers. Not safe for concurrent use.
type Batch struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  []byte
	ctl   []byte // per message: room for one IPV6_PKTINFO (or IP_PKTINFO)
	n     int

	skipTry bool
	pollFn  func(fd uintptr) bool // Poll mode read callback, made once
	pollN   int
	pollErr unix.Errno
}

// NewBatch returns a Batch of n messages.
func NewBatch(n int) *Batch {
	b := &Batch{
		msgs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		bufs:  make([]byte, n*BufSize),
		ctl:   make([]byte, n*ctlSpace),
	}
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i*BufSize]
		b.iovs[i].SetLen(BufSize)
		h := &b.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
		h.Control = &b.ctl[i*ctlSpace]
	}
	return b
}

// ctlSpace is the control room of one message: the kernel receive
// timestamp (SO_TIMESTAMPNS) of every datagram and, on a socket bound to a
// wildcard address, its destination address (IP_PKTINFO /
// IPV6_RECVPKTINFO).
var ctlSpace = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

func (b *Batch) reset() {
	for i := 0; i < b.n; i++ {
		h := &b.msgs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
		h.SetControllen(ctlSpace)
	}
	if b.n == 0 { // first use
		for i := range b.msgs {
			b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			b.msgs[i].Hdr.SetControllen(ctlSpace)
		}
	}
	b.n = 0
}

// Len returns the number of datagrams the last Read filled in.
func (b *Batch) Len() int { return b.n }

// Cap returns the most datagrams one Read can return (NewBatch's n).
func (b *Batch) Cap() int { return len(b.msgs) }

// Packet returns datagram i of the last Read (valid until the next Read) and
// whether the kernel truncated it.
func (b *Batch) Packet(i int) (pkt []byte, truncated bool) {
	n := int(b.msgs[i].Len)
	return b.bufs[i*BufSize : i*BufSize+n : (i+1)*BufSize], b.msgs[i].Hdr.Flags&unix.MSG_TRUNC != 0
}

// Dest returns the local address datagram i was sent to and the index of
// the interface it arrived on, when the socket reports them (it was bound
// to a wildcard address; see Socket.Wildcard), or ok false. It parses the
// control data in place, without allocating.
func (b *Batch) Dest(i int) (addr netip.Addr, ifIndex uint32, ok bool) {
	ctl := b.ctl[i*ctlSpace : i*ctlSpace+min(int(b.msgs[i].Hdr.Controllen), ctlSpace)]
	hdr := unix.CmsgLen(0)
	for len(ctl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < hdr || l > len(ctl) {
			return netip.Addr{}, 0, false
		}
		data := ctl[hdr:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// ipi_addr: the header's destination, the address the peer used.
			return netip.AddrFrom4(pi.Addr), uint32(pi.Ifindex), true
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			return netip.AddrFrom16(pi.Addr), pi.Ifindex, true
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(ctl) {
			break
		}
		ctl = ctl[next:]
	}
	return netip.Addr{}, 0, false
}

// Received returns when the kernel received datagram i (Unix nanoseconds,
// SO_TIMESTAMPNS), or 0 if the socket did not report it. It parses the
// control data in place, without allocating.
func (b *Batch) Received(i int) int64 {
	ctl := b.ctl[i*ctlSpace : i*ctlSpace+min(int(b.msgs[i].Hdr.Controllen), ctlSpace)]
	hdr := unix.CmsgLen(0)
	for len(ctl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < hdr || l > len(ctl) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l-hdr >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&ctl[hdr]))
			return ts.Nano()
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(ctl) {
			break
		}
		ctl = ctl[next:]
	}
	return 0
}

// Source writes datagram i's source address into key as 16 address bytes
// (IPv4 mapped into IPv6) and a big-endian port, the layout of
// session.AddrKey, and reports false for an unknown address family.
func (b *Batch) Source(i int, key *[18]byte) bool {
	sa := &b.names[i]
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*key = [18]byte{10: 0xff, 11: 0xff}
		copy(key[12:16], s4.Addr[:])
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		key[16], key[17] = p[0], p[1]
		return true
	case unix.AF_INET6:
		copy(key[:16], sa.Addr[:])
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		key[16], key[17] = p[0], p[1]
		return true
	}
	return false
}
