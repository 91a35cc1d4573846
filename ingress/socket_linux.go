package ingress

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// wakeInterval bounds how long a Blocking reader may sleep in recvmmsg
// after Close if the shutdown(2) wake-up were ever missed: SO_RCVTIMEO makes
// the call return at this period when idle, at a cost of a few wake-ups a
// second per reader thread.
const wakeInterval = 250 * time.Millisecond

// Socket is one UDP socket of a listener group. Read is for its single
// reader goroutine; FD may be used concurrently to send; Close is idempotent
// and safe from any goroutine.
type Socket struct {
	fd     int
	mode   Mode
	holdP  bool            // sleep in recvmmsg (Blocking mode) and Pause without releasing the P (SetHoldP)
	file   *os.File        // Poll mode: registers fd with the netpoller
	raw    syscall.RawConn // Poll mode
	local  netip.AddrPort
	closed atomic.Bool
}

// SetHoldP makes a Blocking socket's Read sleep in recvmmsg(2) as a raw
// system call, keeping its goroutine's P (the Go scheduler's processor)
// instead of handing it back on entry and taking one again on return, and
// makes Pause keep the P too. Call it before the first Read.
//
// Why: a plain system call that blocks is seen by the runtime's sysmon
// thread, which takes the P away after 20 µs, and the reader's return then
// goes through the slow path (find an idle P, wake sysmon from its deep
// sleep, which in turn wakes a spare thread to run the P it retakes again).
// At light load every packet pays that: measured here with the bench's
// paced relay (2,000–10,000 packets/s, one reader, 200 B), a Go
// recvmmsg/sendmmsg loop cost 8–16 µs of process CPU per packet against
// 4–6 µs for the same loop in C; with the raw receive it cost 4.5–7.5 µs.
//
// The price: while it sleeps the reader holds one of GOMAXPROCS Ps, so only
// use it when the process has Ps to spare for everything else (the router
// checks that readers < GOMAXPROCS). The runtime still reaches the reader
// when it must (garbage collection, sysmon's 10 ms preemption): it
// interrupts the thread with a signal, which makes recvmmsg fail with EINTR
// because the socket has a receive timeout (SO_RCVTIMEO: such calls are
// never restarted, signal(7)), and Read then waits for the next datagram
// with an ordinary system call, during which the runtime takes the P as
// usual. (Yielding with runtime.Gosched instead proved too short a window:
// the collector's stack scan kept finding the reader running again and took
// tens of milliseconds per cycle.)
//
// In Poll mode a Read parks in the netpoller whatever SetHoldP says; the
// setting only makes Pause keep the P.
func (s *Socket) SetHoldP(hold bool) { s.holdP = hold }

// Listen opens n sockets bound to addr with SO_REUSEPORT (all on one port;
// port 0 picks an ephemeral port shared by the group). bufBytes sets
// SO_RCVBUF and SO_SNDBUF. IPv6 sockets are IPV6_V6ONLY so that one IPv4
// and one IPv6 group can share the port.
func Listen(addr netip.AddrPort, n int, mode Mode, bufBytes int) ([]*Socket, error) {
	var socks []*Socket
	fail := func(err error) ([]*Socket, error) {
		for _, s := range socks {
			s.Close()
		}
		return nil, err
	}
	for i := 0; i < n; i++ {
		s, err := listenOne(addr, mode, bufBytes)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, s)
		addr = s.local // later shards join the first one's port
	}
	if err := checkExclusive(socks); err != nil {
		return fail(err)
	}
	return socks, nil
}

func listenOne(addr netip.AddrPort, mode Mode, bufBytes int) (*Socket, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("ingress: socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return nil, fmt.Errorf("ingress: SO_REUSEPORT: %w", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, fmt.Errorf("ingress: IPV6_V6ONLY: %w", err)
		}
	}
	setBuffer(fd, bufBytes)
	// Kernel receive timestamps: after a stall the reader can tell how old
	// the datagrams waiting in the buffer are (Batch.Received).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("ingress: SO_TIMESTAMPNS: %w", err)
	}
	if addr.Addr().IsUnspecified() {
		// A wildcard socket cannot tell which of the host's addresses a
		// client used; ask for it on every datagram so replies can leave
		// from that address (egress.Src).
		var err error
		if family == unix.AF_INET {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		} else {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		}
		if err != nil {
			return nil, fmt.Errorf("ingress: enable packet info: %w", err)
		}
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("ingress: bind %v: %w", addr, err)
	}
	local, err := localAddr(fd)
	if err != nil {
		return nil, err
	}
	s := &Socket{fd: fd, mode: mode, local: local}
	switch mode {
	case Blocking:
		tv := unix.NsecToTimeval(wakeInterval.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, fmt.Errorf("ingress: SO_RCVTIMEO: %w", err)
		}
	case Poll:
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, err
		}
		s.file = os.NewFile(uintptr(fd), "udp "+local.String())
		if s.raw, err = s.file.SyscallConn(); err != nil {
			s.file.Close()
			ok = true // the file owns fd now
			return nil, err
		}
	default:
		return nil, fmt.Errorf("ingress: unknown mode %v", mode)
	}
	ok = true
	return s, nil
}

// setBuffer raises the socket buffers, first with the *FORCE variants that
// ignore net.core.[rw]mem_max (allowed with CAP_NET_ADMIN), then with the
// plain ones, which the kernel clamps. Failure only leaves smaller buffers.
func setBuffer(fd, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n)
	}
}

func localAddr(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ingress: getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, errors.New("ingress: unexpected socket address family")
}

// LocalAddr returns the bound address.
func (s *Socket) LocalAddr() netip.AddrPort { return s.local }

// FD returns the socket's descriptor for sending. It stays valid until Close.
func (s *Socket) FD() int { return s.fd }

// Is6 reports whether this is an IPv6 socket.
func (s *Socket) Is6() bool { return s.local.Addr().Is6() && !s.local.Addr().Is4In6() }

// Wildcard reports whether the socket is bound to a wildcard address, so
// that Batch.Dest tells each datagram's local address.
func (s *Socket) Wildcard() bool { return s.local.Addr().IsUnspecified() }

// ErrClosed is returned by Read after Wake or Close.
var ErrClosed = errors.New("ingress: socket closed")

// Read fills b with up to len(b) datagrams, waiting for at least one. It
// returns ErrClosed once Wake or Close has been called. Not safe for
// concurrent use with itself.
func (s *Socket) Read(b *Batch) (int, error) {
	for {
		if s.closed.Load() {
			return 0, ErrClosed
		}
		b.reset()
		var n int
		var err unix.Errno
		if s.holdP && s.mode == Blocking {
			n, err = recvmmsgHeld(s.fd, b.msgs, unix.MSG_WAITFORONE)
			if err == unix.EINTR || err == unix.EAGAIN {
				// A signal (the runtime asking for this P: a collection,
				// sysmon's preemption) or the idle timeout. Wait for the
				// next datagram as an ordinary system call, which the
				// runtime can take the P from at once; the read after it
				// holds the P again.
				n, err = recvmmsg(s.fd, b.msgs, unix.MSG_WAITFORONE)
			}
		} else if s.mode == Blocking {
			n, err = recvmmsg(s.fd, b.msgs, unix.MSG_WAITFORONE)
		} else {
			if b.pollFn == nil {
				// Made once per Batch: a closure made per call would move
				// its captured results to the heap on every read.
				b.pollFn = func(fd uintptr) bool {
					if b.skipTry {
						b.skipTry = false
						return false
					}
					b.pollN, b.pollErr = recvmmsgHeld(int(fd), b.msgs, unix.MSG_DONTWAIT)
					return b.pollErr != unix.EAGAIN
				}
			}
			// The last read returned less than a full batch, so the socket
			// was empty then, and any datagram since has raised a readiness
			// event: wait for it instead of trying a read that would fail
			// (one recvmmsg(2) saved per wake-up at light load).
			b.skipTry = b.n > 0 && b.n < len(b.msgs)
			if rerr := s.raw.Read(b.pollFn); rerr != nil {
				if s.closed.Load() {
					return 0, ErrClosed
				}
				return 0, rerr
			}
			n, err = b.pollN, b.pollErr
		}
		switch {
		case err == 0 && n > 0:
			b.n = n
			return n, nil
		case err == 0, err == unix.EAGAIN, err == unix.EINTR:
			// timeout backstop, shutdown wake-up or signal: check closed
			continue
		default:
			return 0, fmt.Errorf("ingress: recvmmsg: %w", err)
		}
	}
}

// ReadNow fills b with the datagrams already queued on the socket, up to
// len(b), without waiting: 0 when there are none. It returns ErrClosed once
// Wake or Close has been called. Not safe for concurrent use with Read or
// itself. It never blocks, so it keeps the goroutine's P in either mode.
func (s *Socket) ReadNow(b *Batch) (int, error) {
	for {
		if s.closed.Load() {
			return 0, ErrClosed
		}
		b.reset()
		n, err := recvmmsgHeld(s.fd, b.msgs, unix.MSG_DONTWAIT)
		switch {
		case err == 0:
			b.n = n
			return n, nil
		case err == unix.EAGAIN:
			b.n = 0
			return 0, nil
		case err == unix.EINTR:
			continue
		default:
			return 0, fmt.Errorf("ingress: recvmmsg: %w", err)
		}
	}
}

// Pause sleeps for d on the calling thread, for a reader that lets
// datagrams gather before its next ReadNow. With SetHoldP it keeps the P,
// as a held Read does (a raw clock_nanosleep, which a signal from the
// runtime ends early, and that is all it does); otherwise it is an
// ordinary system call. It does not watch Wake: callers pause for well
// under a millisecond.
func (s *Socket) Pause(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	if s.holdP {
		unix.RawSyscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		return
	}
	unix.Syscall6(unix.SYS_CLOCK_NANOSLEEP, unix.CLOCK_MONOTONIC, 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
}

// Wake makes a Read in progress (and every later one) return ErrClosed,
// without closing the descriptor, so senders may still use FD until Close.
func (s *Socket) Wake() {
	if s.closed.Swap(true) {
		return
	}
	if s.mode == Blocking {
		// shutdown(2) on an unconnected UDP socket fails with ENOTCONN but
		// still wakes every thread blocked in a receive (inet_shutdown);
		// SO_RCVTIMEO is the backstop.
		_ = unix.Shutdown(s.fd, unix.SHUT_RD)
		return
	}
	_ = s.file.SetReadDeadline(time.Unix(1, 0))
}

// Close wakes any reader and releases the descriptor. Call it after the
// reader has returned. Idempotent.
func (s *Socket) Close() error {
	s.Wake()
	if s.fd < 0 {
		return nil
	}
	var err error
	if s.file != nil {
		err = s.file.Close()
	} else {
		err = unix.Close(s.fd)
	}
	s.fd = -1
	return err
}

// recvmmsgHeld is recvmmsg as a raw system call: the runtime is not told
// that the thread blocks (see SetHoldP).
func recvmmsgHeld(fd int, msgs []unix.Mmsghdr, flags int) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// recvmmsg returns the errno itself (0 for none) rather than an error:
// boxing it in an interface could allocate on the packet path.
func recvmmsg(fd int, msgs []unix.Mmsghdr, flags int) (int, unix.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// checkExclusive fails with EADDRINUSE when a UDP socket outside socks is
// bound to the group's port at an overlapping address (the same address, or
// a wildcard on either side). SO_REUSEPORT lets any socket of the same user
// join a group, and the kernel would then split the clients' flows between
// the two owners: a second router (or another program) on the port must be
// refused, not silently given part of the traffic. The check reads
// /proc/net/udp (or udp6) and compares socket inodes with the group's own.
// Where /proc is unavailable it passes: the bind itself is the only check.
func checkExclusive(socks []*Socket) error {
	if len(socks) == 0 {
		return nil
	}
	local := socks[0].local
	ours := make(map[uint64]bool, len(socks))
	for _, s := range socks {
		var st unix.Stat_t
		if err := unix.Fstat(s.fd, &st); err != nil {
			return nil
		}
		ours[st.Ino] = true
	}
	file := "/proc/net/udp"
	if socks[0].Is6() {
		file = "/proc/net/udp6"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	for _, e := range parseProcNetUDP(b) {
		if e.local.Port() != local.Port() || ours[e.inode] {
			continue
		}
		a, o := e.local.Addr(), local.Addr().Unmap()
		if a == o || a.IsUnspecified() || o.IsUnspecified() {
			return fmt.Errorf("ingress: UDP %v is already held by another socket (%v, uid %d, inode %d): another router or program uses the port, and with SO_REUSEPORT the kernel would split the clients' flows between us: %w",
				local, e.local, e.uid, e.inode, unix.EADDRINUSE)
		}
	}
	return nil
}

// procUDPEntry is one socket of /proc/net/udp{,6}.
type procUDPEntry struct {
	local netip.AddrPort
	uid   uint64
	inode uint64
}

// parseProcNetUDP parses the socket table of /proc/net/udp or udp6: after
// a header line, one socket per line, "sl local rem st tx:rx tr:when
// retrnsmt uid timeout inode ...", the local address in hex as the
// kernel's 32-bit words in host (little-endian) byte order, then ":port".
// Lines it cannot parse are skipped.
func parseProcNetUDP(b []byte) []procUDPEntry {
	var out []procUDPEntry
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err1 := strconv.ParseUint(hexPort, 16, 16)
		uid, err2 := strconv.ParseUint(f[7], 10, 64)
		inode, err3 := strconv.ParseUint(f[9], 10, 64)
		raw, err4 := hex.DecodeString(hexAddr)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		for w := 0; w < len(raw); w += 4 { // each 32-bit word is little-endian
			raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
		}
		a, _ := netip.AddrFromSlice(raw)
		out = append(out, procUDPEntry{local: netip.AddrPortFrom(a.Unmap(), uint16(port)), uid: uid, inode: inode})
	}
	return out
}

// skMeminfoDrops is SK_MEMINFO_DROPS, the index of the socket's drop
// counter in the SO_MEMINFO array (linux/sock_diag.h).
const (
	skMeminfoDrops = 8
	skMeminfoVars  = 9 // SK_MEMINFO_VARS: length of the array
)

// KernelDrops returns how many datagrams the kernel dropped for this
// socket because its receive buffer was full: the counter SO_RXQ_OVFL
// reports per datagram, read with one getsockopt(SO_MEMINFO) instead, so
// the packet path pays nothing. 0 if unavailable. Safe for concurrent use.
func (s *Socket) KernelDrops() uint64 {
	if s.closed.Load() {
		return 0
	}
	var info [skMeminfoVars]uint32
	n := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 || n < 4*(skMeminfoDrops+1) {
		return 0
	}
	return uint64(info[skMeminfoDrops])
}
