// Package edge is the MMR's TLS front door on port 443: one listener shared
// by the control channel, media streams over TLS and an in-process zone
// controller. It completes each TLS handshake and routes the connection by
// its ALPN protocol (RFC 7301) to a handler function or to a virtual
// net.Listener, for servers that want to Accept.
//
// An Edge is safe for concurrent use. Routes are set before Serve.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Tuning defaults.
const (
	// DefaultHandshakeTimeout bounds a TLS handshake: a silent client holds
	// a goroutine and a descriptor no longer than this.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultMaxHandshakes caps handshakes in progress, so a flood of
	// half-open connections cannot take all memory.
	DefaultMaxHandshakes = 1024
	// DefaultMaxHandshakesPerSource caps the handshakes in progress from
	// one source (an IPv4 address, an IPv6 /64): 32 lets a NAT of many
	// clients join at once (a handshake takes milliseconds), while one
	// host flooding the port holds at most 1/32 of the slots and every
	// other source keeps joining.
	DefaultMaxHandshakesPerSource = 32
	// DefaultPressureTimeout is the handshake deadline once half the
	// slots are taken: a real client finishes in well under a second, so
	// silent or trickling connections (slowloris) are shed 5× faster.
	DefaultPressureTimeout = time.Second
)

// Config configures an Edge.
type Config struct {
	// TLS is the server configuration (certificates); Edge sets NextProtos
	// from its routes. Required.
	TLS *tls.Config
	// HandshakeTimeout: default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHandshakes: default DefaultMaxHandshakes.
	MaxHandshakes int
	// MaxHandshakesPerSource: default DefaultMaxHandshakesPerSource.
	MaxHandshakesPerSource int
	// PressureTimeout replaces HandshakeTimeout for handshakes that start
	// while at least MaxHandshakes/2 are in progress. Default
	// DefaultPressureTimeout (never above HandshakeTimeout).
	PressureTimeout time.Duration
	// Logger: default slog.Default().
	Logger *slog.Logger
}

// Edge routes TLS connections by ALPN.
type Edge struct {
	cfg    Config
	ln     net.Listener
	routes map[string]func(net.Conn)
	def    func(net.Conn)
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex // orders wg.Add in Serve before Close's wg.Wait
	once   sync.Once
	closed chan struct{}
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	vls    []*virtualListener
	srcMu  sync.Mutex
	bySrc  map[netip.Prefix]int // handshakes in progress per source

	accepted, refused, refusedSource, handshakeFailed, unrouted, acceptErrors atomic.Uint64
	serving                                                                   atomic.Bool  // Serve's loop is running
	lastAcceptErr                                                             atomic.Int64 // Unix nanoseconds of the last Accept error; 0: none
}

// Accept back-off after an error such as EMFILE (the process is out of
// descriptors) or ECONNABORTED: like net/http's Server.Serve, wait 5 ms,
// doubling to at most 1 s, and try again. The listener itself is fine; a
// connection closing elsewhere frees the descriptor the next Accept needs.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// notAcceptingFor: an Accept error within this long marks the edge as
	// not accepting (Accepting, Stats), so a health check or a load
	// report taken between two retries still sees the trouble.
	notAcceptingFor = 2 * time.Second
)

// Stats counts the edge's connections. Each field only grows.
type Stats struct {
	Accepted        uint64 // TCP connections accepted
	Refused         uint64 // closed at once: MaxHandshakes handshakes were in progress
	RefusedSource   uint64 // closed at once: MaxHandshakesPerSource from its source were in progress
	HandshakeFailed uint64 // TLS handshakes that failed or timed out (garbage, scanners, silent peers)
	Unrouted        uint64 // handshakes whose ALPN has no route (and no default)
	AcceptErrors    uint64 // Accept errors (EMFILE and the like), each retried after a back-off
	// Accepting is false before Serve, after Serve stopped, and while
	// Accept has been failing (within the last 2 s).
	Accepting bool
}

// Stats returns the counters. Safe for concurrent use.
func (e *Edge) Stats() Stats {
	return Stats{Accepted: e.accepted.Load(), Refused: e.refused.Load(), RefusedSource: e.refusedSource.Load(),
		HandshakeFailed: e.handshakeFailed.Load(), Unrouted: e.unrouted.Load(),
		AcceptErrors: e.acceptErrors.Load(), Accepting: e.Accepting()}
}

// Accepting reports whether the edge takes new connections: Serve is
// running and Accept has not failed within the last 2 s. Safe for
// concurrent use.
func (e *Edge) Accepting() bool {
	if !e.serving.Load() {
		return false
	}
	last := e.lastAcceptErr.Load()
	return last == 0 || time.Since(time.Unix(0, last)) > notAcceptingFor
}

// New returns an Edge that will serve on ln (the caller binds it, e.g. with
// Listen, so that a bind error can name the flag that picks the address).
func New(ln net.Listener, cfg Config) (*Edge, error) {
	if cfg.TLS == nil {
		return nil, errors.New("edge: TLS configuration required")
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxHandshakes == 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.MaxHandshakesPerSource == 0 {
		cfg.MaxHandshakesPerSource = DefaultMaxHandshakesPerSource
	}
	if cfg.PressureTimeout == 0 {
		cfg.PressureTimeout = DefaultPressureTimeout
	}
	cfg.PressureTimeout = min(cfg.PressureTimeout, cfg.HandshakeTimeout)
	if cfg.HandshakeTimeout < 0 || cfg.PressureTimeout < 0 || cfg.MaxHandshakes < 1 || cfg.MaxHandshakesPerSource < 1 {
		return nil, errors.New("edge: HandshakeTimeout, PressureTimeout, MaxHandshakes and MaxHandshakesPerSource must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &Edge{cfg: cfg, ln: ln, routes: map[string]func(net.Conn){}, sem: make(chan struct{}, cfg.MaxHandshakes), closed: make(chan struct{}), bySrc: map[netip.Prefix]int{}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e, nil
}

// Listen binds a TCP address for an Edge; its error says how to pick
// another address with flag.
func Listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s (%w): port 443 needs root or CAP_NET_BIND_SERVICE and must be free; pick another address with %s, e.g. %s 127.0.0.1:8443", addr, err, flag, flag)
	}
	return ln, nil
}

// Handle routes connections that negotiated alpn to h, which owns the
// connection. alpn "" is the route for clients that negotiate none.
func (e *Edge) Handle(alpn string, h func(net.Conn)) {
	if alpn == "" {
		e.def = h
		return
	}
	e.routes[alpn] = h
}

// Listener returns a net.Listener whose Accept yields the connections that
// negotiated alpn ("" for none). Closing it stops that route; Edge.Close
// closes it too.
func (e *Edge) Listener(alpn string) net.Listener {
	vl := &virtualListener{addr: e.ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	e.vls = append(e.vls, vl)
	e.Handle(alpn, vl.deliver)
	return vl
}

// Addr returns the listening address.
func (e *Edge) Addr() net.Addr { return e.ln.Addr() }

// Serve accepts until Close. It returns nil after Close, and an error only
// when the listener is closed under it by someone else: every other Accept
// error (out of descriptors, aborted connections) is retried after a
// back-off, counted, and shown by Accepting.
func (e *Edge) Serve() error {
	tc := e.cfg.TLS.Clone()
	tc.NextProtos = nil
	for p := range e.routes {
		tc.NextProtos = append(tc.NextProtos, p)
	}
	e.serving.Store(true)
	defer e.serving.Store(false)
	var backoff time.Duration
	for {
		c, err := e.ln.Accept()
		if err != nil {
			select {
			case <-e.closed:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				e.cfg.Logger.Error("edge: listener closed, no longer accepting", "addr", e.ln.Addr(), "err", err)
				return err
			}
			e.acceptErrors.Add(1)
			e.lastAcceptErr.Store(time.Now().UnixNano())
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			e.cfg.Logger.Warn("edge: accept failed, retrying", "addr", e.ln.Addr(), "err", err, "retry_in", backoff)
			select {
			case <-e.closed:
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		if backoff != 0 {
			backoff = 0
			e.lastAcceptErr.Store(0)
		}
		e.accepted.Add(1)
		src := sourceOf(c.RemoteAddr())
		if !e.acquireSource(src) {
			e.refusedSource.Add(1)
			c.Close() // this source has its share of handshakes in progress
			continue
		}
		timeout := e.cfg.HandshakeTimeout
		if len(e.sem) >= cap(e.sem)/2 { // only Serve adds to sem: no race to this check
			timeout = e.cfg.PressureTimeout
		}
		select {
		case e.sem <- struct{}{}:
		default:
			e.releaseSource(src)
			e.refused.Add(1)
			c.Close() // too many handshakes in progress
			continue
		}
		// A WaitGroup must not grow while Close waits on it: register the
		// handshake only if Close has not started.
		e.mu.Lock()
		select {
		case <-e.closed:
			e.mu.Unlock()
			<-e.sem
			e.releaseSource(src)
			c.Close()
			return nil
		default:
		}
		e.wg.Add(1)
		e.mu.Unlock()
		go func() {
			tc, h := e.handshake(tls.Server(c, tc), timeout)
			<-e.sem
			e.releaseSource(src)
			e.wg.Done() // Close waits for handshakes, not for the routes' work
			if h != nil {
				h(tc)
			}
		}()
	}
}

// handshake completes the TLS handshake and picks the route; it returns
// a nil handler when the connection was closed instead.
func (e *Edge) handshake(tc *tls.Conn, timeout time.Duration) (*tls.Conn, func(net.Conn)) {
	ctx, cancel := context.WithTimeout(e.ctx, timeout) // Close aborts it too
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		e.handshakeFailed.Add(1)
		e.cfg.Logger.Debug("edge: handshake failed", "peer", tc.RemoteAddr(), "err", err)
		tc.Close()
		return nil, nil
	}
	h := e.def
	if r, ok := e.routes[tc.ConnectionState().NegotiatedProtocol]; ok {
		h = r
	}
	if h == nil {
		e.unrouted.Add(1)
		tc.Close()
	}
	return tc, h
}

// sourceOf returns the source a connection's handshake slot is counted
// against: its IPv4 address, or the /64 of its IPv6 address (one host or
// one site gets a whole /64, so per-address counting would not hold it).
func sourceOf(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr().Unmap()
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // invalid ip: the zero Prefix, one shared source
	return p
}

// acquireSource takes one of src's handshake slots, false if it has none left.
func (e *Edge) acquireSource(src netip.Prefix) bool {
	e.srcMu.Lock()
	defer e.srcMu.Unlock()
	if e.bySrc[src] >= e.cfg.MaxHandshakesPerSource {
		return false
	}
	e.bySrc[src]++
	return true
}

func (e *Edge) releaseSource(src netip.Prefix) {
	e.srcMu.Lock()
	defer e.srcMu.Unlock()
	if e.bySrc[src]--; e.bySrc[src] <= 0 {
		delete(e.bySrc, src)
	}
}

// Close stops accepting, ends handshakes in progress and closes the
// virtual listeners. Connections already handed to a route are the route's
// to close; Close does not wait for them. Idempotent.
func (e *Edge) Close() error {
	e.once.Do(func() {
		e.mu.Lock()
		close(e.closed)
		e.mu.Unlock()
		e.cancel()
		e.ln.Close()
		for _, vl := range e.vls {
			vl.Close()
		}
		e.wg.Wait()
	})
	return nil
}

// virtualListener hands routed connections to an Accept loop.
type virtualListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (v *virtualListener) deliver(c net.Conn) {
	select {
	case v.ch <- c:
	case <-v.done:
		c.Close()
	}
}

func (v *virtualListener) Accept() (net.Conn, error) {
	select {
	case c := <-v.ch:
		return c, nil
	case <-v.done:
		return nil, net.ErrClosed
	}
}

func (v *virtualListener) Close() error {
	v.once.Do(func() { close(v.done) })
	return nil
}

func (v *virtualListener) Addr() net.Addr { return v.addr }
