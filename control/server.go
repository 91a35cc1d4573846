package control

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

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/router"
)

// ErrServerClosed is returned by Serve, Start and ListenAndServe after Close.
var ErrServerClosed = errors.New("control: server closed")

// Server is the control-channel server: it accepts TLS connections, speaks
// the protocol of docs/control-protocol.md, and drives a Router through its
// public API. All methods are safe for concurrent use.
//
// Locking: mu guards the server-wide indexes below; each meeting's mu guards
// its roster and its participants' fields; each conn's qmu guards its send
// queue. They are taken only in that order (mu, then meeting.mu, then qmu).
type Server struct {
	cfg      Config
	rt       Router
	tls      *tls.Config
	verifier *token.Verifier
	log      *slog.Logger
	done     chan struct{}      // closed by Close
	ctx      context.Context    // canceled by Close; the parent of every meeting's context
	cancel   context.CancelFunc // cancels ctx
	wg       sync.WaitGroup
	closed   atomic.Bool
	stats    counters
	fails    authFails // recent failed joins per source address

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	addr      netip.AddrPort
	conns     map[*conn]struct{}
	perIP     map[netip.Addr]int
	meetings  map[string]*meeting
	parts     map[router.ParticipantID]*participant
	pingRound uint32
}

// New validates cfg, loads the certificate, and returns a Server driving rt
// that is not yet listening (see Start, ListenAndServe, Serve). It starts
// one goroutine (the pinger); Close ends it.
func New(cfg Config, rt Router) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if rt == nil {
		return nil, errors.New("control: nil Router")
	}
	var tc *tls.Config
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
	} else {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("control: load certificate: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12 // TLS 1.3 is preferred when the client offers it
	}
	if len(tc.NextProtos) == 0 {
		tc.NextProtos = []string{proto.ALPN}
	}
	v, err := token.NewVerifier(cfg.Secret, cfg.PreviousSecrets...)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, rt: rt, tls: tc, verifier: v, log: cfg.Logger,
		done:      make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[netip.Addr]int{},
		meetings:  map[string]*meeting{},
		parts:     map[router.ParticipantID]*participant{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.pinger()
	return s, nil
}

// Start listens on Config.Addr and serves in the background. It returns once
// the listener is bound, or the bind error (see Listen).
func (s *Server) Start() error {
	ln, err := Listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	if err := s.track(ln); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.serve(ln)
	}()
	return nil
}

// ListenAndServe listens on Config.Addr and serves until Close, then returns
// ErrServerClosed; or it returns the bind error (see Listen).
func (s *Server) ListenAndServe() error {
	ln, err := Listen(s.cfg.Addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Close, then returns ErrServerClosed.
// ln yields plain TCP connections (the server does the TLS) or *tls.Conn
// (e.g. edge.Listener(proto.ALPN)); see HandleConn. Serve takes ownership of
// ln and closes it.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.track(ln); err != nil {
		return err
	}
	return s.serve(ln)
}

// Listen binds a TCP listener on addr. A failure to bind says why and names
// the -control flag of cmd/mmr that picks another address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, bindError(addr, err)
	}
	return ln, nil
}

// Addr returns the address of the first listener, or the zero AddrPort
// before one is bound.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) track(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if !s.addr.IsValid() {
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			s.addr = ta.AddrPort()
		}
	}
	return nil
}

// serve is the accept loop.
func (s *Server) serve(ln net.Listener) error {
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("control: accept", "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-s.done:
					return ErrServerClosed
				}
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		backoff = 0
		s.HandleConn(nc)
	}
}

// HandleConn serves nc, a connection accepted by the caller: a plain TCP
// connection, which gets the server's TLS handshake, or a *tls.Conn from a
// port 443 shared with other services that routed proto.ALPN (or no ALPN)
// here, used as is. The connection limits apply. The Server owns nc from now
// on and closes it at the latest in Close. It returns at once.
func (s *Server) HandleConn(nc net.Conn) {
	var ip netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	}
	s.mu.Lock()
	if s.closed.Load() || len(s.conns) >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		s.mu.Unlock()
		// Refused before the TLS handshake, so a flood costs no crypto.
		s.stats.rejected.Add(1)
		nc.Close()
		return
	}
	c := newConn(s, nc, ip)
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	s.stats.accepted.Add(1)
	go c.serve()
}

// forget removes c from the connection indexes.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	if s.perIP[c.ip]--; s.perIP[c.ip] <= 0 {
		delete(s.perIP, c.ip)
	}
}

// Close stops accepting, closes every connection, ends the router meetings
// the server created, and waits for every goroutine it started. It is
// idempotent; later calls return nil at once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	close(s.done)
	s.cancel() // ends the meetings' re-key waits
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.raw.Close() // not the TLS Close: its close_notify can block on a stuck peer
	}
	meetings := make([]*meeting, 0, len(s.meetings))
	for _, m := range s.meetings {
		meetings = append(meetings, m)
	}
	s.mu.Unlock()

	// Readers exiting now see closed and start no grace timer (detach).
	for _, m := range meetings {
		s.mu.Lock()
		m.mu.Lock()
		for _, p := range m.parts {
			s.stopGrace(p)
		}
		m.mu.Unlock()
		s.mu.Unlock()
	}
	s.wg.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.meetings {
		m.mu.Lock()
		for _, p := range m.parts {
			p.gone = true
			delete(s.parts, p.id)
		}
		clear(m.parts)
		clear(m.others)
		m.mu.Unlock()
		if err := s.rt.EndMeeting(m.id); err != nil && !errors.Is(err, router.ErrNoMeeting) && !errors.Is(err, router.ErrClosed) {
			s.log.Warn("control: end meeting on close", "meeting", m.id, "err", err)
		}
		delete(s.meetings, m.id)
	}
	return nil
}
