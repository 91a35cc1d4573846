package load

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// The UDP engine drives every participant's UDP sockets (one per kind, as
// a real client has) with a few goroutines: each reader owns an epoll
// instance over its share of the sockets and drains every ready socket
// with recvmmsg(2) batches, the technique of the router's ingress package;
// senders hand each frame to the kernel with one sendmmsg(2) through the
// router's own egress.Batch. Thousands of sockets therefore cost a few
// wake-ups per batch, not one goroutine wake-up per packet.
//
// Each socket is connected to its router address, asks for kernel receive
// timestamps (SO_TIMESTAMPNS: the delay measured excludes the load tool's
// own scheduling) and for its drop count (SO_RXQ_OVFL: datagrams the
// kernel dropped because this process did not read fast enough, the sign
// that the load tool itself is saturated).

const (
	// rxBatch datagrams per recvmmsg call: the router's default batch.
	rxBatch = 64
	// rxBufSize is larger than any datagram the router forwards.
	rxBufSize = 2048
	// sockBuf is each socket's SO_RCVBUF: 256 KiB holds ~200 video
	// packets, a quarter second of a keyframe burst to one viewer.
	sockBuf = 256 << 10
	// bindTries: Bind packets sent before giving up (12.7 s in all).
	bindTries = 7
	// epollEvents per epoll_wait.
	epollEvents = 256
)

var rxCmsgSpace = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) + unix.CmsgSpace(4)

type udpEngine struct {
	readers []*udpReader
	slots   []atomic.Pointer[endpoint]
	nslot   atomic.Int64
	sent    stats.Live // copies handed to the kernel, drops by reason
	wg      sync.WaitGroup
	once    sync.Once
}

type udpReader struct {
	e      *udpEngine
	epfd   int
	wakefd int
	agg    *agg
	msgs   []unix.Mmsghdr
	iovs   []unix.Iovec
	bufs   []byte
	ctl    []byte
	closed atomic.Bool
}

// newUDPEngine starts n reader goroutines for up to maxSockets sockets.
func newUDPEngine(n, maxSockets int, win *window) (*udpEngine, error) {
	e := &udpEngine{slots: make([]atomic.Pointer[endpoint], maxSockets)}
	for range n {
		r := &udpReader{e: e, agg: &agg{win: win}, epfd: -1, wakefd: -1}
		e.readers = append(e.readers, r)
		var err error
		if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			e.close()
			return nil, fmt.Errorf("load: epoll_create1: %w", err)
		}
		if r.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			e.close()
			return nil, fmt.Errorf("load: eventfd: %w", err)
		}
		if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, r.wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.wakefd), Pad: -1}); err != nil {
			e.close()
			return nil, err
		}
		r.msgs = make([]unix.Mmsghdr, rxBatch)
		r.iovs = make([]unix.Iovec, rxBatch)
		r.bufs = make([]byte, rxBatch*rxBufSize)
		r.ctl = make([]byte, rxBatch*rxCmsgSpace)
		for i := range r.msgs {
			r.iovs[i].Base = &r.bufs[i*rxBufSize]
			r.iovs[i].SetLen(rxBufSize)
			r.msgs[i].Hdr.Iov = &r.iovs[i]
			r.msgs[i].Hdr.Iovlen = 1
			r.msgs[i].Hdr.Control = &r.ctl[i*rxCmsgSpace]
		}
	}
	for _, r := range e.readers {
		e.wg.Add(1)
		go r.run()
	}
	return e, nil
}

func (e *udpEngine) aggs() []*agg {
	out := make([]*agg, len(e.readers))
	for i, r := range e.readers {
		out[i] = r.agg
	}
	return out
}

// open makes ep's socket: bound to local (any port), connected to server,
// registered with a reader.
func (e *udpEngine) open(ep *endpoint, local netip.Addr, server netip.AddrPort) error {
	slot := e.nslot.Add(1) - 1
	if int(slot) >= len(e.slots) {
		return errors.New("load: more sockets than planned")
	}
	fam := unix.AF_INET
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("load: socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	if local.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(local, 0), fam)); err != nil {
			return fmt.Errorf("load: bind %v: %w", local, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(server, fam)); err != nil {
		return fmt.Errorf("load: connect %v: %w", server, err)
	}
	ep.fd = fd
	ep.server = server
	ep.slot = int(slot)
	ep.batch = egress.NewBatchSize(fd, fam == unix.AF_INET6, dscp.Config{}, &e.sent, 16)
	ep.dst = egress.AddrOf(server)
	r := e.readers[int(slot)%len(e.readers)]
	ep.agg = r.agg
	e.slots[slot].Store(ep)
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: int32(slot)}); err != nil {
		e.slots[slot].Store(nil)
		return fmt.Errorf("load: epoll_ctl: %w", err)
	}
	ok = true
	return nil
}

func sockaddr(ap netip.AddrPort, fam int) unix.Sockaddr {
	if fam == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// bind binds ep's socket as its kind's flow with token: Bind packets at 0,
// 100, 300, 700, 1500 ms... (docs/PROTOCOL.md's schedule, with two more
// tries: this bind moves a joined participant's flow, it is not a fallback
// decision, and a busy router may answer late), done at the first
// BindAck the reader sees.
func (e *udpEngine) bind(ctx context.Context, ep *endpoint, tok wire.Token) error {
	var req [wire.BindSize]byte
	wait := 100 * time.Millisecond
	ep.token.Store(&tok)
	send := func(txID uint32) error {
		// Nonce: 0 at first, then the router's challenge (return
		// routability); signed with the token, a new counter each time.
		b := wire.Bind{Kind: ep.kind, TxID: txID, Nonce: ep.challenge.Load()}
		now := time.Now()
		b.Sign(tok, ep.binds.Next(now), now)
		if _, err := b.MarshalTo(req[:]); err != nil {
			return err
		}
		if _, err := unix.Write(ep.fd, req[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
			return fmt.Errorf("load: bind send: %w", err)
		}
		return nil
	}
	for try := range bindTries {
		if err := send(uint32(try + 1)); err != nil {
			return err
		}
		t := time.NewTimer(wait)
	wait:
		select {
		case <-ep.bound:
			t.Stop()
			return nil
		case <-ep.verify: // challenged: answer at once, same try
			if err := send(uint32(try + 1)); err != nil {
				t.Stop()
				return err
			}
			goto wait
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
	return fmt.Errorf("load: no BindAck for %s from %v", ep.kind, ep.server)
}

// keepalive sends one keepalive on ep's socket.
func (e *udpEngine) keepalive(ep *endpoint) {
	var b [wire.KeepaliveSize]byte
	tok := ep.token.Load()
	if tok == nil {
		return
	}
	k := wire.Keepalive{Kind: ep.kind, TxID: 1, Nonce: wire.ConsentEcho(*tok, ep.kind, ep.consent.Load())} // echo the consent nonce
	if _, err := k.MarshalTo(b[:]); err == nil {
		_, _ = unix.Write(ep.fd, b[:])
	}
}

// send hands one frame's packets to the kernel in one sendmmsg, each
// stamped with the send time.
func (e *udpEngine) send(st *pubStream, pkts [][]byte, now int64) {
	ep := st.ep
	sec := ep.p.sec.Load()
	// Every packet is sealed (SRTP) into the stream's arena, which the
	// batch references until its Flush below.
	need := 0
	for _, p := range pkts {
		need += len(p) + protect.Overhead
	}
	if cap(st.arena) < need {
		st.arena = make([]byte, 0, need)
	}
	arena := st.arena[:0]
	for _, p := range pkts {
		stamp(p, now)
		if sec == nil {
			ep.txLive.Drop(stats.DropSendError)
			continue
		}
		out, err := sec.SealRTP(arena[len(arena):len(arena):cap(arena)], p)
		if err != nil { // no meeting key yet
			ep.txLive.Drop(stats.DropSendError)
			continue
		}
		arena = arena[:len(arena)+len(out)]
		ep.batch.Add(out, ep.dst, ep.kind, &ep.txLive)
	}
	ep.batch.Flush()
}

func (r *udpReader) run() {
	defer r.e.wg.Done()
	evs := make([]unix.EpollEvent, epollEvents)
	for {
		n, err := unix.EpollWait(r.epfd, evs, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if r.closed.Load() {
			return
		}
		r.agg.mu.Lock()
		for _, ev := range evs[:n] {
			if ev.Pad < 0 {
				continue
			}
			if ep := r.e.slots[ev.Pad].Load(); ep != nil {
				r.drain(ep)
			}
		}
		r.agg.mu.Unlock()
	}
}

// drain reads ep's socket until it is empty (level-triggered epoll: what
// is left is reported again). The caller holds r.agg.mu.
func (r *udpReader) drain(ep *endpoint) {
	for {
		for i := range r.msgs {
			r.msgs[i].Hdr.SetControllen(rxCmsgSpace)
			r.msgs[i].Hdr.Flags = 0
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(ep.fd), uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			return
		}
		wall := time.Now().UnixNano()
		for i := range int(n) {
			m := &r.msgs[i]
			pkt := r.bufs[i*rxBufSize : i*rxBufSize+int(m.Len)]
			now := wall
			if ts, ovfl, ok := parseRxCmsg(r.ctl[i*rxCmsgSpace : i*rxCmsgSpace+int(m.Hdr.Controllen)]); ok {
				if ts != 0 {
					now = ts
				}
				if ovfl > ep.ovfl.Load() {
					ep.ovfl.Store(ovfl)
				}
			}
			ep.onPacket(pkt, now)
		}
		if int(n) < len(r.msgs) {
			return
		}
	}
}

// parseRxCmsg reads SCM_TIMESTAMPNS and SO_RXQ_OVFL from one message's
// control data, in place.
func parseRxCmsg(ctl []byte) (ts int64, ovfl uint32, ok bool) {
	hdr := unix.CmsgLen(0)
	for len(ctl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < hdr || l > len(ctl) {
			return ts, ovfl, ok
		}
		data := ctl[hdr:l]
		if h.Level == unix.SOL_SOCKET {
			switch {
			case h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})):
				t := (*unix.Timespec)(unsafe.Pointer(&data[0]))
				ts, ok = t.Nano(), true
			case h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
				ovfl, ok = *(*uint32)(unsafe.Pointer(&data[0])), true
			}
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(ctl) {
			break
		}
		ctl = ctl[next:]
	}
	return ts, ovfl, ok
}

// close stops the readers and closes every socket. Idempotent.
func (e *udpEngine) close() {
	e.once.Do(func() {
		for _, r := range e.readers {
			r.closed.Store(true)
			if r.wakefd >= 0 {
				var one = [8]byte{1}
				_, _ = unix.Write(r.wakefd, one[:])
			}
		}
		e.wg.Wait()
		for _, r := range e.readers {
			if r.epfd >= 0 {
				unix.Close(r.epfd)
			}
			if r.wakefd >= 0 {
				unix.Close(r.wakefd)
			}
		}
		for i := range e.slots {
			if ep := e.slots[i].Load(); ep != nil && ep.fd >= 0 {
				unix.Close(ep.fd)
				ep.fd = -1
			}
		}
	})
}

// sentStats returns the copies sent and dropped (send_busy: the socket
// buffer was full) by every UDP sender.
func (e *udpEngine) sentStats() stats.Counters { return e.sent.Snapshot() }

// available reports whether the batched UDP engine works here.
const available = true
