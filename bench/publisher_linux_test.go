package bench

import (
	"errors"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pubOS holds the publisher's sendmmsg state, reused by every burst so
// that sending does not allocate.
type pubOS struct {
	raw     syscall.RawConn
	dst     unix.RawSockaddrInet4
	msgs    [pubBurst]unix.Mmsghdr
	iovs    [pubBurst]unix.Iovec
	pending []unix.Mmsghdr        // messages of the current burst not sent yet
	errno   syscall.Errno         // error of the current burst
	sendFn  func(fd uintptr) bool // o.send, bound once
}

func (o *pubOS) setDst(p *publisher, dst netip.AddrPort) error {
	if !dst.Addr().Is4() {
		return errors.New("bench: forwarder address is not IPv4")
	}
	raw, err := p.conn.SyscallConn()
	if err != nil {
		return err
	}
	o.raw = raw
	port := dst.Port()
	o.dst = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
	*(*[2]byte)(unsafe.Pointer(&o.dst.Port)) = [2]byte{byte(port >> 8), byte(port)} // network byte order
	for i := range o.msgs {
		o.iovs[i].Base = &p.bufs[i][0]
		o.iovs[i].SetLen(len(p.bufs[i]))
		h := &o.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&o.dst))
		h.Namelen = unix.SizeofSockaddrInet4
		h.Iov = &o.iovs[i]
		h.SetIovlen(1)
	}
	o.sendFn = o.send
	return nil
}

// send is the RawConn.Write callback: it sends the pending messages and
// returns false to wait for buffer space.
func (o *pubOS) send(fd uintptr) bool {
	for len(o.pending) > 0 {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&o.pending[0])), uintptr(len(o.pending)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false
		case e == unix.EINTR:
		case e != 0:
			o.errno = e
			return true
		default:
			o.pending = o.pending[r:]
		}
	}
	return true
}

// sendBurst sends the next k (at most pubBurst) packets with sendmmsg,
// waiting for buffer space if the socket is full.
func (p *publisher) sendBurst(k int) error {
	k = min(k, pubBurst)
	o := &p.os
	for i := range k {
		o.iovs[i].SetLen(p.next(i))
	}
	o.pending, o.errno = o.msgs[:k], 0
	if err := o.raw.Write(o.sendFn); err != nil {
		return err
	}
	if o.errno != 0 {
		return o.errno
	}
	return nil
}
