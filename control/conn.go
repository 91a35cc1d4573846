package control

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/control/proto"
)

// Closing a connection the server gave up on (fatal error, leave): after the
// last frame, send close_notify and a TCP FIN, then read and discard what the
// client still sends until it closes too, for at most lingerTimeout and
// lingerMax bytes. Closing with unread input would make the kernel answer
// with a RST, which can destroy the error frame before the client reads it.
const (
	lingerTimeout = 2 * time.Second
	lingerMax     = 256 << 10
)

type connState uint8

const (
	stateNew    connState = iota // waiting for hello
	stateHello                   // waiting for join or resume
	stateJoined                  // in a meeting
)

// conn is one control connection. Its reader goroutine (serve) owns state,
// p and linger; the send queue is shared under qmu; the atomics are read by
// the pinger.
type conn struct {
	s     *Server
	raw   net.Conn
	nc    terminatedConn
	ip    netip.Addr // remote address, for the per-IP limit
	local netip.Addr // local address, to resolve unspecified endpoints

	joined   atomic.Bool
	pingID   atomic.Uint32
	pingSent atomic.Int64 // UnixNano of the last server ping
	rtt      atomic.Int64 // last measured round-trip time in ns
	started  time.Time    // serve began: the join latency's origin

	state  connState
	p      *participant
	linger bool
	limit  limiter

	qmu       sync.Mutex
	q         [][]byte      // frames waiting for the flusher; shared read-only
	flushDone chan struct{} // non-nil while a flusher runs; closed when it exits
	closeWhen bool          // close the socket once the queue is flushed
	dead      bool          // no more frames are accepted
}

// terminatedConn is a TLS connection: a *tls.Conn, or a wrapper around one
// that a shared port 443 front end hands over after peeking at its first
// bytes (to tell HTTP from this protocol when no ALPN was negotiated).
// NetConn returns the TCP connection under the TLS.
type terminatedConn interface {
	net.Conn
	Handshake() error
	CloseWrite() error
	NetConn() net.Conn
}

// newConn wraps nc: a plain connection gets the server's TLS; a *tls.Conn
// or another terminatedConn (terminated by a shared port 443 front end) is
// used as is.
func newConn(s *Server, nc net.Conn, ip netip.Addr) *conn {
	c := &conn{s: s, raw: nc, ip: ip}
	if tc, ok := nc.(terminatedConn); ok {
		c.nc, c.raw = tc, tc.NetConn()
	} else {
		c.nc = tls.Server(nc, s.tls)
	}
	if ta, ok := c.raw.LocalAddr().(*net.TCPAddr); ok {
		c.local = ta.AddrPort().Addr()
	}
	return c
}

// serve is the connection's reader goroutine.
func (c *conn) serve() {
	defer c.s.wg.Done()
	defer c.finish()
	cfg := &c.s.cfg
	c.started = time.Now()
	if err := c.raw.SetDeadline(c.started.Add(cfg.HandshakeTimeout)); err != nil {
		return
	}
	if err := c.nc.Handshake(); err != nil { // a no-op if already done
		c.s.stats.handshakeFailed.Add(1)
		c.s.log.Debug("control: TLS handshake", "remote", c.raw.RemoteAddr(), "err", err)
		return
	}
	fr := proto.NewFrameReader(c.nc, cfg.MaxFrame)
	c.limit = newLimiter(cfg.RequestRate, cfg.RequestBurst, time.Now())
	for {
		if c.state == stateJoined {
			// Before join the handshake deadline keeps running.
			if err := c.raw.SetReadDeadline(time.Now().Add(cfg.IdleTimeout)); err != nil {
				return
			}
		}
		payload, err := fr.Next()
		if c.isDead() {
			return // ended by a fatal error (replaced, meeting-ended): execute nothing more
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		id, msg, err := proto.Decode(payload)
		if err != nil {
			var de *proto.DecodeError
			if typ := proto.TypeOf(payload); proto.ServerToClient(typ) {
				c.fatal(id, proto.CodeUnexpected, fmt.Sprintf("%.64s is sent by servers only", typ))
			} else if errors.As(err, &de) {
				c.fatal(id, de.Code, de.Err.Error())
			} else {
				c.fatal(id, proto.CodeBadFrame, err.Error())
			}
			return
		}
		verdict := allow
		if _, wrap := msg.(*proto.E2EEKey); !wrap || c.state != stateJoined {
			// A joined client's e2ee-key requests have a budget of their
			// own (protection.go): a re-key is one per member.
			verdict = c.limit.take(time.Now())
		}
		switch verdict {
		case refuse:
			c.s.stats.rateLimited.Add(1)
			c.sendError(id, proto.CodeRateLimited, "over the request rate limit: not executed", false)
			continue
		case cutOff:
			c.s.stats.rateLimited.Add(1)
			c.s.stats.rateCutOff.Add(1)
			c.fatal(id, proto.CodeRateLimited, "kept sending while rate limited")
			return
		}
		if !c.handle(id, msg) {
			return
		}
	}
}

// readFailed answers a read error: bad frames and timeouts get an error
// message, a peer that went away gets nothing.
func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, proto.ErrFrameTooLarge):
		c.fatal(0, proto.CodeFrameTooLarge, "frame larger than welcome.max_frame")
	case errors.Is(err, proto.ErrEmptyFrame):
		c.fatal(0, proto.CodeBadFrame, "empty frame")
	case errors.As(err, &ne) && ne.Timeout():
		c.s.stats.timeouts.Add(1)
		msg := "idle timeout"
		if c.state != stateJoined {
			msg = "not joined within the handshake timeout"
		}
		c.sendError(0, proto.CodeTimeout, msg, true)
		c.linger = true
	}
}

// fatal sends a fatal protocol error; the caller then returns from serve.
func (c *conn) fatal(id uint32, code, msg string) {
	c.s.stats.protocolErrors.Add(1)
	c.sendError(id, code, msg, true)
	c.linger = true
}

// sendError queues an error message.
func (c *conn) sendError(id uint32, code, msg string, fatal bool) {
	if len(msg) > 512 {
		msg = msg[:512]
	}
	c.sendMsg(id, &proto.Error{Code: code, Message: toValidUTF8(msg), Fatal: fatal})
}

// sendMsg encodes and queues m.
func (c *conn) sendMsg(id uint32, m proto.Message) {
	frame, err := proto.Encode(id, m)
	if err != nil {
		c.s.log.Error("control: encode", "type", m.Type(), "err", err)
		return
	}
	c.send(frame)
}

// send queues frame (shared, never modified) for the flusher, starting one
// if none runs. A client whose queue is full is disconnected: it is too slow
// to follow its meeting, and must not hold up the sender. Safe for
// concurrent use.
func (c *conn) send(frame []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.sendLocked(frame)
}

// sendLocked is send with c.qmu held; it reports whether frame was queued.
func (c *conn) sendLocked(frame []byte) bool {
	if c.dead {
		return false
	}
	if len(c.q) >= c.s.cfg.SendQueue {
		c.s.stats.slowConsumers.Add(1)
		c.killLocked()
		return false
	}
	c.q = append(c.q, frame)
	if c.flushDone == nil {
		done := make(chan struct{})
		c.flushDone = done
		c.s.wg.Add(1) // the caller is itself a tracked goroutine, so Close has not returned
		go c.flush(done)
	}
	return true
}

// closeAfter queues frame, then closes the connection once it is written.
// The frame and closeWhen are set under one lock: were closeWhen set
// after, the flusher could write the frame and find the queue empty first,
// and the connection would end with a bare close instead of close_notify.
func (c *conn) closeAfter(frame []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.sendLocked(frame) {
		c.closeWhen = true
	} else if !c.dead {
		c.killLocked()
	}
}

// isDead reports whether the connection was ended (kill, or a fatal
// closeAfter frame written).
func (c *conn) isDead() bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.dead
}

// kill drops the queue and closes the socket at once; the reader then fails
// and cleans up. Safe for concurrent use.
func (c *conn) kill() {
	c.qmu.Lock()
	c.killLocked()
	c.qmu.Unlock()
}

func (c *conn) killLocked() {
	c.dead = true
	c.q = nil
	c.raw.Close() // the raw socket: a TLS close_notify could block on a stuck peer
}

// flush is the writer goroutine; it exits as soon as the queue is empty, so
// an idle connection has none.
func (c *conn) flush(done chan struct{}) {
	defer c.s.wg.Done()
	defer close(done)
	var buf []byte
	for {
		c.qmu.Lock()
		batch := c.q
		c.q = nil
		if len(batch) == 0 {
			c.flushDone = nil
			if c.closeWhen {
				// A fatal error (replaced, meeting-ended) was the last
				// frame: end as the state machine says, with a TLS
				// close_notify (bounded by the write deadline) and a TCP
				// FIN rather than a bare close, which could reset the
				// connection before the client read the frame. The reader
				// then sees the client's close, or its deadline, and
				// finish closes the socket.
				c.dead = true
				c.q = nil
				c.qmu.Unlock()
				now := time.Now()
				if c.raw.SetWriteDeadline(now.Add(lingerTimeout)) == nil && c.nc.CloseWrite() == nil {
					if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
						_ = cw.CloseWrite()
					}
				}
				_ = c.raw.SetReadDeadline(now.Add(lingerTimeout))
				return
			}
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		out := batch[0]
		if len(batch) > 1 { // coalesce into one write and few TLS records
			buf = buf[:0]
			for _, f := range batch {
				buf = append(buf, f...)
			}
			out = buf
		}
		if err := c.raw.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout)); err == nil {
			_, err = c.nc.Write(out)
			if err == nil {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.s.stats.slowConsumers.Add(1)
			}
		}
		c.qmu.Lock()
		c.flushDone = nil
		c.killLocked()
		c.qmu.Unlock()
		return
	}
}

// finish runs when the reader exits: the participant (if any) enters its
// grace period, queued frames are written, and the socket is closed.
func (c *conn) finish() {
	c.joined.Store(false)
	if c.p != nil {
		c.s.detach(c, c.p)
		c.p = nil
	}
	c.qmu.Lock()
	c.dead = true
	done := c.flushDone
	c.qmu.Unlock()
	if done != nil {
		select { // bounded by the flusher's write deadline
		case <-done:
		case <-c.s.done:
		}
	}
	if c.linger && !c.s.closed.Load() {
		c.lingerClose()
	}
	c.raw.Close()
	c.s.forget(c)
}

func (c *conn) lingerClose() {
	now := time.Now()
	if c.raw.SetDeadline(now.Add(lingerTimeout)) != nil {
		return
	}
	if c.nc.CloseWrite() != nil { // TLS close_notify (RFC 8446 §6.1)
		return
	}
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // TCP FIN
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c.raw, lingerMax))
}

// rttMicros returns the last measured RTT in microseconds.
func (c *conn) rttMicros() int64 { return c.rtt.Load() / int64(time.Microsecond) }

// pong records the RTT when id answers the last server ping.
func (c *conn) pong(id uint32) {
	if id != 0 && id == c.pingID.Load() {
		if sent := c.pingSent.Load(); sent != 0 {
			rtt := max(time.Now().UnixNano()-sent, 1)
			c.rtt.Store(rtt)
			if o := c.s.cfg.Observe; o != nil {
				o.ControlRTT(time.Duration(rtt))
			}
		}
	}
}

// ping sends a server ping with the given id (encoded frame shared by all).
func (c *conn) ping(id uint32, frame []byte) {
	c.pingID.Store(id)
	c.pingSent.Store(time.Now().UnixNano())
	c.send(frame)
}
