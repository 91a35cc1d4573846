package webclient

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/openmmr/mmr/wire"
)

// wtSession is one WebTransport session bridged to the router's stream
// path: fromBrowser (the handler's goroutine) turns datagrams into RFC 4571
// frames on the pipe, toBrowser turns the router's frames into datagrams.
type wtSession struct {
	w     *WebTransport
	sess  *webtransport.Session
	conn  *quic.Conn
	bound atomic.Bool            // a Bind was passed to the router
	ack   atomic.Pointer[[]byte] // the router's BindAck, resent for a repeated Bind
	last  atomic.Int64           // Unix ns of the last datagram from the browser
	ended atomic.Bool            // the reason the session ends is counted
}

// bridge serves sess until it or the router's side ends.
func (w *WebTransport) bridge(sess *webtransport.Session, c *quic.Conn) {
	a, b := net.Pipe()
	pc := &pipeConn{Conn: b, local: c.LocalAddr(), remote: c.RemoteAddr()}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = w.cfg.Media.ServeStream(pc)
	}()
	s := &wtSession{w: w, sess: sess, conn: c}
	s.last.Store(time.Now().UnixNano())
	idle := s.startIdle(w.cfg.IdleTimeout)
	down := make(chan struct{})
	go func() {
		defer close(down)
		s.toBrowser(a)
	}()
	in := make(chan []byte, wtInQueue)
	go s.receive(in)
	routerGone := s.fromBrowser(a, in)
	idle.stop()
	if routerGone { // toBrowser sees the router's end and counts its reason first
		t := time.NewTimer(wtEndGrace)
		select {
		case <-down:
		case <-t.C: // it is blocked sending to a browser that does not read
		}
		t.Stop()
	}
	a.Close() // ends the router's side and toBrowser, if still up
	<-down
	s.end("")      // ends receive, if the session is still up
	for range in { // until receive has returned
	}
	<-served
}

// wtEndGrace bounds the wait for toBrowser to tell why the router's side
// ended before the session is closed anyway.
const wtEndGrace = time.Second

// wtInQueue is how many datagrams from the browser wait for the router
// beyond the 32 that quic-go's HTTP/3 layer holds per session (more are
// dropped there, uncounted): a video keyframe is 20 to 40 packets that
// arrive within a millisecond or two, while each waits for the router to
// take the one before.
const wtInQueue = 256

// receive moves the session's datagrams into in (closed when the session
// ends), dropping one, counted, when in is full.
func (s *wtSession) receive(in chan<- []byte) {
	defer close(in)
	ctx := s.sess.Context()
	for {
		d, err := s.sess.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		s.last.Store(time.Now().UnixNano())
		select {
		case in <- d:
		default:
			s.w.count(CutInQueue)
		}
	}
}

// end closes the connection (its one session) once, counting reason
// (unless empty).
func (s *wtSession) end(reason string) {
	if s.ended.Swap(true) {
		return
	}
	if reason != "" {
		s.w.count(reason)
	}
	_ = s.conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), reason)
}

// idleTimer ends a session that sent nothing for d: it fires after d and
// re-arms itself for the rest of d while datagrams come (one timer per
// session, not one reset per datagram).
type idleTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (s *wtSession) startIdle(d time.Duration) *idleTimer {
	it := &idleTimer{}
	it.mu.Lock()
	defer it.mu.Unlock()
	it.t = time.AfterFunc(d, func() {
		it.mu.Lock()
		defer it.mu.Unlock()
		if it.stopped {
			return
		}
		since := time.Duration(time.Now().UnixNano() - s.last.Load())
		if since >= d {
			s.end(CutIdle)
			return
		}
		it.t.Reset(d - since)
	})
	return it
}

func (it *idleTimer) stop() {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.stopped = true
	it.t.Stop()
}

// wtVerdict is what becomes of one datagram from the browser.
type wtVerdict uint8

const (
	wtForward wtVerdict = iota // to the router, as one RFC 4571 frame
	wtDrop                     // dropped, its reason counted
	wtRebind                   // a repeat of the session's Bind: answered with the BindAck
	wtEnd                      // the session ends, its reason counted
)

// wtGate judges a session's datagrams in arrival order: empty and
// oversized ones are dropped, the first one must be a Bind, and repeats of
// that Bind (the page resends it until a BindAck comes: datagrams may be
// lost) are answered rather than passed on (the router refuses a second
// Bind on a stream). Not safe for concurrent use.
type wtGate struct {
	max  int    // MaxDatagram
	bind []byte // the session's Bind, once seen
}

// judge returns what to do with d and, for a drop or an end, the reason.
// d is not retained.
func (g *wtGate) judge(d []byte) (wtVerdict, string) {
	switch {
	case len(d) == 0:
		return wtDrop, CutEmpty
	case len(d) > g.max:
		return wtDrop, CutTooLarge
	}
	isBind := wire.Classify(d) == wire.ClassBind
	if g.bind == nil {
		if !isBind {
			return wtEnd, CutNoToken
		}
		g.bind = bytes.Clone(d)
		return wtForward, ""
	}
	if isBind && bytes.Equal(d, g.bind) {
		return wtRebind, ""
	}
	return wtForward, ""
}

// fromBrowser takes the datagrams from in until the session ends and acts
// on each as wtGate judges it. It reports whether it stopped because the
// router's side had ended.
func (s *wtSession) fromBrowser(a net.Conn, in <-chan []byte) (routerGone bool) {
	g := wtGate{max: s.w.cfg.MaxDatagram}
	buf := make([]byte, wire.FrameHeaderSize+g.max)
	for d := range in {
		v, reason := g.judge(d)
		switch v {
		case wtDrop:
			s.w.count(reason)
			continue
		case wtEnd:
			s.end(reason)
			return false
		case wtRebind:
			if ack := s.ack.Load(); ack != nil && s.sess.SendDatagram(*ack) == nil {
				s.w.out.Add(1)
			}
			continue
		}
		s.bound.Store(true)
		binary.BigEndian.PutUint16(buf, uint16(len(d)))
		n := copy(buf[wire.FrameHeaderSize:], d)
		if _, err := a.Write(buf[:wire.FrameHeaderSize+n]); err != nil {
			return true
		}
		s.w.in.Add(1)
	}
	return false
}

// toBrowser sends each of the router's frames as one datagram until the
// router's side ends (then the session is closed: a stream that ended
// before its BindAck was refused, counted bad_token, or timed out waiting
// for a Bind, counted idle).
func (s *wtSession) toBrowser(a net.Conn) {
	r := bufio.NewReaderSize(a, 16<<10)
	var hdr [wire.FrameHeaderSize]byte
	buf := make([]byte, MaxMediaMessage)
	max := s.w.cfg.MaxDatagram
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) { // the router closed its end
				switch {
				case s.ack.Load() != nil:
					s.end("")
				case s.bound.Load():
					s.end(CutBadToken)
				default:
					s.end(CutIdle)
				}
			}
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if n > len(buf) {
			s.end("")
			return
		}
		pkt := buf[:n]
		if _, err := io.ReadFull(r, pkt); err != nil {
			return
		}
		if s.ack.Load() == nil && wire.Classify(pkt) == wire.ClassBindAck {
			ack := bytes.Clone(pkt)
			s.ack.Store(&ack)
		}
		if n > max {
			s.w.count(CutOutLarge)
			continue
		}
		if err := s.sess.SendDatagram(pkt); err != nil {
			if _, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
				s.w.count(CutOutLarge)
				continue
			}
			s.end(CutSendFail)
			return
		}
		s.w.out.Add(1)
	}
}
