package router

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// Errors that end a media stream.
var (
	ErrStreamBind = errors.New("router: media stream did not start with a valid bind")
	// ErrStreamsFull: the router-wide MaxStreams cap is reached.
	ErrStreamsFull = errors.New("router: too many media streams")
	// ErrStreamLimit: MaxStreamsPerIP streams from the peer's address are live.
	ErrStreamLimit = errors.New("router: too many media streams from one address")
)

// keyframeReq asks the binder goroutine to send a PLI to ssrc's publisher.
type keyframeReq struct {
	meeting *session.Meeting
	ssrc    uint32
}

// ServeStream runs the media stream protocol (docs/PROTOCOL.md, "Media
// over TCP 8801 and TLS 443") on c until it ends: RFC 4571 framed packets,
// the first of which must be an authentic Bind (signed with a current
// participant's media token, fresh, not replayed) within BindTimeout;
// then RTP, RTCP and keepalives both ways, routed like UDP ones. It closes c and returns when the stream ends, when the flow is
// bound elsewhere, or when the Router closes. Safe for concurrent use; the
// TCP listener calls it, and so does the control channel's TLS listener
// for connections it identifies as media.
//
// Whatever the transport, at most MaxStreamsPerIP streams from one source
// address are live at once (further ones are closed: ErrStreamLimit,
// DropStreamLimit), and at most MaxStreams in all (ErrStreamsFull).
func (r *Router) ServeStream(c net.Conn) error {
	ip := addrPortOf(c.RemoteAddr()).Addr().Unmap()
	if !r.perIP.acquire(ip) {
		r.streamLive.Drop(stats.DropStreamLimit)
		c.Close()
		return ErrStreamLimit
	}
	defer r.perIP.release(ip)
	if err := r.trackStream(c); err != nil {
		c.Close()
		return err
	}
	defer r.untrackStream(c)
	defer c.Close()
	_, isTLS := c.(*tls.Conn)
	peer := addrPortOf(c.RemoteAddr())

	_ = c.SetReadDeadline(time.Now().Add(r.cfg.BindTimeout))
	d := wire.NewDeframer(c, MaxPacket)
	pkt, err := d.Next()
	var bind wire.Bind
	if err != nil || wire.Classify(pkt) != wire.ClassBind || bind.Unmarshal(pkt) != nil {
		if errors.Is(err, wire.ErrFrameSize) {
			r.streamLive.Drop(stats.DropStreamFrame)
		} else {
			r.streamLive.Drop(stats.DropStreamBind)
		}
		return ErrStreamBind
	}
	// The same checks as a UDP Bind's (handle, MAC, time, counter), so a
	// Bind copied off another stream or off UDP binds nothing. There is no
	// challenge: the TCP handshake proved the peer receives at its address.
	p, why, ok := r.authBind(&bind, time.Now())
	if !ok {
		r.streamLive.Drop(why)
		return ErrStreamBind
	}
	k := bind.Kind
	sink := newStreamSink(r, c, isTLS, p, k)
	if !r.reg.BindStream(p, k, peer, sink) {
		r.streamLive.Drop(stats.DropBadToken)
		return ErrStreamBind
	}
	defer r.reg.UnbindStream(p, k, sink)
	tuneStream(c, r.cfg.DSCP.For(k), r.cfg.StreamQueue)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		sink.writeLoop()
	}()
	defer func() {
		sink.close()
		<-writerDone
	}()
	ack := wire.BindAck{Kind: k, Status: wire.StatusOK, TxID: bind.TxID, Mapped: peer}
	var abuf [wire.BindAckSize]byte
	if n, err := ack.MarshalTo(abuf[:]); err == nil {
		sink.Enqueue(abuf[:n])
	}

	rd := newStreamReader(r, int(peer.Port()))
	defer rd.flush() // copies of the last frames (the buffer is unchanged since)
	f := p.Flow(k)
	for {
		if !d.HasFrame() {
			// Next will read, and may move the buffer the queued UDP copies
			// point into: send them first. Frames already buffered are
			// routed into the same sendmmsg batch.
			rd.flush()
			now := time.Now()
			rd.stamp(now.UnixNano())
			_ = c.SetReadDeadline(now.Add(r.cfg.IdleTimeout))
		}
		pkt, err := d.Next()
		if err != nil {
			if errors.Is(err, wire.ErrFrameSize) {
				r.streamLive.Drop(stats.DropStreamFrame)
				return err
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if rem := f.Remote(); rem == nil || rem.Sink != sink {
			return nil // moved to another transport, or the participant left
		}
		// No Seen stamp: a stream's idleness is its read deadline above;
		// Expire never looks at stream-bound flows.
		rd.live.In(len(pkt))
		rd.fromFlow(pkt, wire.Classify(pkt), f)
	}
}

// tuneStream marks a stream connection's socket (the TCP connection under
// TLS) with the kind's DSCP and caps its kernel send buffer at the queue
// budget: media late by a multi-megabyte kernel buffer is useless, and the
// router's own queue decides what to drop.
func tuneStream(c net.Conn, d uint8, sndbuf int) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if d != 0 {
		if sc, ok := c.(syscall.Conn); ok {
			_ = dscp.Set(sc, d)
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(sndbuf)
		_ = tc.SetNoDelay(true)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// trackStream registers a live stream so Close can end it: ErrClosed once
// the Router is closing, ErrStreamsFull (counted) at MaxStreams.
func (r *Router) trackStream(c net.Conn) error {
	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	if r.closed.Load() {
		return ErrClosed
	}
	if len(r.streams) >= r.cfg.MaxStreams {
		r.streamLive.Drop(stats.DropStreamsFull)
		return ErrStreamsFull
	}
	r.streams[c] = struct{}{}
	r.streamWG.Add(1)
	return nil
}

func (r *Router) untrackStream(c net.Conn) {
	r.streamMu.Lock()
	delete(r.streams, c)
	r.streamMu.Unlock()
	r.streamWG.Done()
}

// tcpAccepting reports whether every TCP media listener takes connections.
func (r *Router) tcpAccepting() bool {
	if r.tcpStopped.Load() {
		return false
	}
	last := r.lastTCPAcceptErr.Load()
	return last == 0 || time.Since(time.Unix(0, last)) > notAcceptingFor
}

// liveStreams returns the number of live media streams.
func (r *Router) liveStreams() int {
	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	return len(r.streams)
}

// closeStreams closes every live stream and waits for their handlers.
func (r *Router) closeStreams() {
	r.streamMu.Lock()
	for c := range r.streams {
		c.Close()
	}
	r.streamMu.Unlock()
	r.streamWG.Wait()
}

// Accept back-off after an error such as EMFILE, as net/http does: 5 ms,
// doubling to 1 s. A TCP listener whose Accept failed within
// notAcceptingFor is reported as not accepting (Stats.TCPAccepting).
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	notAcceptingFor  = 2 * time.Second
)

// serveTCP accepts media streams on ln, at most MaxStreamsPerIP at once
// from one source address. Accept errors other than the listener's close
// are retried after a back-off: running out of descriptors for a moment
// must not end the port.
func (r *Router) serveTCP(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if r.closed.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				r.tcpStopped.Store(true)
				r.log.Error("router: TCP listener closed, no longer accepting", "addr", ln.Addr(), "err", err)
				return
			}
			r.tcpAcceptErrors.Add(1)
			r.lastTCPAcceptErr.Store(time.Now().UnixNano())
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			r.log.Warn("router: TCP accept failed, retrying", "addr", ln.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-r.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		if backoff != 0 {
			backoff = 0
			r.lastTCPAcceptErr.Store(0)
		}
		go func() { _ = r.ServeStream(c) }()
	}
}

func listenTCP(a netip.AddrPort) (net.Listener, error) {
	network := "tcp4"
	if a.Addr().Is6() && !a.Addr().Is4In6() {
		network = "tcp6"
	}
	ln, err := net.Listen(network, a.String())
	if err != nil {
		return nil, fmt.Errorf("router: listen TCP %v: %w", a, err)
	}
	return ln, nil
}
