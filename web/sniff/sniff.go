// Package sniff tells HTTP from openmmr's control protocol on a TLS
// connection that negotiated no ALPN protocol, so that one port 443 route
// ("" in edge.Edge) serves both: browsers and HTTP clients that send no
// ALPN, and control clients that do not either.
//
// The rule looks at the first byte the client sends. A control channel
// frame starts with its payload length, 4 bytes big-endian
// (control/proto/frame.go), at most 64 KiB by default and 16 MiB at the
// very most, so its first byte is 0x00 (0x00 or 0x01 for a 16 MiB frame).
// An HTTP/1.x request starts with a method token (RFC 9110 §9: GET, POST,
// ...), whose first character is an upper-case letter. HTTP/2 with prior
// knowledge starts with "PRI *" (RFC 9113 §3.4): also a letter.
package sniff

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Timeout bounds the wait for the first byte: a client that sends nothing
// holds a goroutine no longer than this.
const Timeout = 10 * time.Second

// peekSize is the read buffer of a sniffed connection: one byte is peeked,
// and a bufio.Reader needs at least 16; later reads larger than what is
// buffered go straight to the connection.
const peekSize = 16

// Conn is a TLS connection whose first bytes were peeked. It is a
// *tls.Conn for every method except Read, which replays the peeked bytes
// first. Like a *tls.Conn, one goroutine may Read while another Writes.
type Conn struct {
	*tls.Conn
	r *bufio.Reader
}

// Read reads the peeked bytes, then the connection.
func (c *Conn) Read(b []byte) (int, error) { return c.r.Read(b) }

// IsHTTP reports whether first, the first byte of a connection, starts an
// HTTP request rather than a control channel frame.
func IsHTTP(first byte) bool { return first >= 'A' && first <= 'Z' }

// Stats counts what Route saw.
type Stats struct {
	HTTP, Other, Failed uint64 // Failed: nothing arrived in Timeout, or an error
}

// Router routes sniffed connections. Safe for concurrent use.
type Router struct {
	http, other   func(net.Conn)
	nHTTP, nOther atomic.Uint64
	nFailed       atomic.Uint64
}

// New returns a Router sending HTTP connections to http and the others to
// other; both own the connection they get.
func New(http, other func(net.Conn)) *Router { return &Router{http: http, other: other} }

// Route peeks at the first byte of c (a *tls.Conn whose handshake is done;
// others go to other unchanged) and hands a *Conn to the right handler. It
// blocks until the first byte arrives or Timeout: call it from the
// connection's own goroutine (edge route handlers are).
func (r *Router) Route(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		r.nOther.Add(1)
		r.other(c)
		return
	}
	sc := &Conn{Conn: tc, r: bufio.NewReaderSize(tc, peekSize)}
	_ = tc.SetReadDeadline(time.Now().Add(Timeout))
	b, err := sc.r.Peek(1)
	_ = tc.SetReadDeadline(time.Time{})
	if err != nil {
		r.nFailed.Add(1)
		tc.Close()
		return
	}
	if IsHTTP(b[0]) {
		r.nHTTP.Add(1)
		r.http(sc)
		return
	}
	r.nOther.Add(1)
	r.other(sc)
}

// Stats returns the counters.
func (r *Router) Stats() Stats {
	return Stats{HTTP: r.nHTTP.Load(), Other: r.nOther.Load(), Failed: r.nFailed.Load()}
}

// Listener is a net.Listener fed by Deliver (e.g. the HTTP side of a
// Router, for an http.Server). Safe for concurrent use.
type Listener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewListener returns a Listener reporting addr.
func NewListener(addr net.Addr) *Listener {
	return &Listener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver hands c to Accept, or closes it if the listener is closed.
func (l *Listener) Deliver(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept waits for a delivered connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Deliver. Idempotent.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address given to NewListener.
func (l *Listener) Addr() net.Addr { return l.addr }
