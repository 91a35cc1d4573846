package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// floorSupported reports whether newFloor works on this OS.
const floorSupported = true

// Batch sizes of the floor loop.
const (
	// floorBatch datagrams per recvmmsg(2), the router's DefaultBatch.
	floorBatch = 64
	// floorMaxOut messages per sendmmsg(2): the kernel's UIO_MAXIOV, the
	// most one call accepts.
	floorMaxOut = 1024
)

// floorForwarder is the least possible fan-out loop: one blocking UDP socket
// (no netpoller) served by one goroutine locked to its OS thread, recvmmsg
// with MSG_WAITFORONE into preallocated buffers, then for every received
// packet one mmsghdr per subscriber pointing at the same buffer (no copy),
// sent with sendmmsg in chunks of up to floorMaxOut, resuming partial sends.
// No parsing, no lookup, no counters: the cost of the system calls alone.
// Close is idempotent and safe for concurrent use.
//
// held (implFloorHeld) makes both calls raw system calls, so the loop keeps
// its P while it sleeps in recvmmsg, as the router's readers do
// (ingress.Socket.SetHoldP): the least a Go loop woken by every packet can
// cost, with nothing else in the process.
type floorForwarder struct {
	held   bool
	fd     int
	addr   netip.AddrPort
	subs   []unix.RawSockaddrInet4
	closed atomic.Bool
	done   chan struct{}
	once   sync.Once
}

func newFloor(subs []netip.AddrPort, held bool) (forwarder, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("bench: floor socket: %w", err)
	}
	f := &floorForwarder{fd: fd, held: held, done: make(chan struct{})}
	if err := f.setup(subs); err != nil {
		return nil, errors.Join(err, unix.Close(fd))
	}
	go f.loop()
	return f, nil
}

func (f *floorForwarder) setup(subs []netip.AddrPort) error {
	for _, o := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
		if err := unix.SetsockoptInt(f.fd, unix.SOL_SOCKET, o, fwdSocketBuffer); err != nil {
			return fmt.Errorf("bench: floor socket buffer: %w", err)
		}
	}
	if f.held {
		// A receive timeout makes a signal end the raw recvmmsg with EINTR
		// instead of restarting it (signal(7)), as the router's sockets do.
		tv := unix.NsecToTimeval(int64(250 * time.Millisecond))
		if err := unix.SetsockoptTimeval(f.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("bench: floor SO_RCVTIMEO: %w", err)
		}
	}
	if err := unix.Bind(f.fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bench: floor bind: %w", err)
	}
	sa, err := unix.Getsockname(f.fd)
	if err != nil {
		return err
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return fmt.Errorf("bench: floor bound to %T", sa)
	}
	f.addr = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	f.subs = make([]unix.RawSockaddrInet4, len(subs))
	for i, s := range subs {
		if !s.Addr().Is4() {
			return fmt.Errorf("bench: floor subscriber %v is not IPv4", s)
		}
		p := s.Port()
		f.subs[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: s.Addr().As4()}
		// sin_port is in network byte order.
		*(*[2]byte)(unsafe.Pointer(&f.subs[i].Port)) = [2]byte{byte(p >> 8), byte(p)}
	}
	return nil
}

func (f *floorForwarder) loop() {
	defer close(f.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	bufs := make([]byte, floorBatch*fwdBufSize)
	in := make([]unix.Mmsghdr, floorBatch)
	inIov := make([]unix.Iovec, floorBatch)
	outIov := make([]unix.Iovec, floorBatch) // one per received packet, with its length
	out := make([]unix.Mmsghdr, floorMaxOut)
	for i := range in {
		inIov[i].Base = &bufs[i*fwdBufSize]
		inIov[i].SetLen(fwdBufSize)
		in[i].Hdr.Iov = &inIov[i]
		in[i].Hdr.SetIovlen(1)
	}
	for {
		var r uintptr
		var errno unix.Errno
		if f.held {
			r, _, errno = unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(f.fd),
				uintptr(unsafe.Pointer(&in[0])), floorBatch, unix.MSG_WAITFORONE, 0, 0)
		}
		if !f.held || errno == unix.EINTR || errno == unix.EAGAIN {
			// Held: a signal from the runtime (sysmon's preemption, a
			// stop-the-world) or the timeout ended the raw call; wait as an ordinary
			// system call, which the runtime can stop at once, as the
			// router's readers do.
			r, _, errno = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(f.fd),
				uintptr(unsafe.Pointer(&in[0])), floorBatch, unix.MSG_WAITFORONE, 0, 0)
		}
		if f.closed.Load() {
			return
		}
		if errno != 0 {
			continue // EINTR; nothing else happens to a bound UDP socket
		}
		k := 0
		for i := range int(r) {
			outIov[i].Base = inIov[i].Base
			outIov[i].SetLen(int(in[i].Len))
			for j := range f.subs {
				m := &out[k].Hdr
				m.Name = (*byte)(unsafe.Pointer(&f.subs[j]))
				m.Namelen = unix.SizeofSockaddrInet4
				m.Iov = &outIov[i]
				m.SetIovlen(1)
				if k++; k == floorMaxOut {
					f.send(out[:k])
					k = 0
				}
			}
		}
		if k > 0 {
			f.send(out[:k])
		}
	}
}

// send hands msgs to sendmmsg, resuming after a partial send and skipping a
// message the kernel refuses (a loss the parent counts).
func (f *floorForwarder) send(msgs []unix.Mmsghdr) {
	for len(msgs) > 0 {
		var r uintptr
		var errno unix.Errno
		if f.held {
			r, _, errno = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(f.fd),
				uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
		} else {
			r, _, errno = unix.Syscall6(unix.SYS_SENDMMSG, uintptr(f.fd),
				uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
		}
		switch {
		case errno == unix.EINTR:
		case errno != 0 || r == 0:
			msgs = msgs[1:]
		default:
			msgs = msgs[r:]
		}
	}
}

// Addr returns the address the forwarder listens on.
func (f *floorForwarder) Addr() netip.AddrPort { return f.addr }

// Close wakes the blocked recvmmsg with shutdown(2) (on Linux it sets the
// receive shutdown even on an unconnected UDP socket and wakes readers,
// though it returns ENOTCONN), waits for the loop to end and closes the
// socket.
func (f *floorForwarder) Close() error {
	var err error
	f.once.Do(func() {
		f.closed.Store(true)
		if serr := unix.Shutdown(f.fd, unix.SHUT_RDWR); serr != nil && serr != unix.ENOTCONN {
			err = serr
		}
		<-f.done
		err = errors.Join(err, unix.Close(f.fd))
	})
	return err
}
