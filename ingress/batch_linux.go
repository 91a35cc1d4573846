package ingress

import (
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
	n     int

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
	}
	for i := range b.msgs {
		b.iovs[i].Base = &b.bufs[i*BufSize]
		b.iovs[i].SetLen(BufSize)
		h := &b.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
	}
	return b
}

func (b *Batch) reset() {
	for i := 0; i < b.n; i++ {
		b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		b.msgs[i].Hdr.Flags = 0
	}
	if b.n == 0 { // first use
		for i := range b.msgs {
			b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		}
	}
	b.n = 0
}

// Len returns the number of datagrams the last Read filled in.
func (b *Batch) Len() int { return b.n }

// Packet returns datagram i of the last Read (valid until the next Read) and
// whether the kernel truncated it.
func (b *Batch) Packet(i int) (pkt []byte, truncated bool) {
	n := int(b.msgs[i].Len)
	return b.bufs[i*BufSize : i*BufSize+n : (i+1)*BufSize], b.msgs[i].Hdr.Flags&unix.MSG_TRUNC != 0
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
