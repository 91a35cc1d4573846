package zone

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone/proto"
)

// ErrClosed is returned by methods of a closed Server.
var ErrClosed = errors.New("zone: server closed")

// Server is a zone controller. All methods are safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tlsConf  *tls.Config
	reg      *registry
	register lockedBucket // zone-wide registration attempts
	ln       net.Listener // nil with DisableListen
	st       liveStats

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{} // every tracked connection (raw or TLS as handed in)
	perIP    map[netip.Addr]int
	sessions map[uint64]net.Conn // registry session → its connection

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg, starts listening (unless DisableListen) and serving,
// and starts the registry sweeper. Close stops everything.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc := tlsutil.ServerConfig(cfg.Certificate)
	// TLS 1.3 only: its exporter (RFC 8446 §7.5) is what the zone-secret
	// proofs are bound to, and every peer is our own software.
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{proto.ALPN}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("component", "zc", "zc", cfg.ID), tlsConf: tc,
		reg:      newRegistry(cfg),
		register: lockedBucket{b: newBucket(cfg.RegisterRate)},
		conns:    make(map[net.Conn]struct{}), perIP: make(map[netip.Addr]int),
		sessions: make(map[uint64]net.Conn), done: make(chan struct{}),
	}
	if !cfg.DisableListen {
		ln, err := net.Listen("tcp", cfg.Listen.String())
		if err != nil {
			return nil, fmt.Errorf("zone: listen %s: %w", cfg.Listen, err)
		}
		s.ln = ln
		s.wg.Add(1)
		go s.acceptLoop()
	}
	s.wg.Add(1)
	go s.sweepLoop()
	if s.ln != nil {
		s.log.Info("zone controller listening", "addr", s.Addr(), "fingerprint", tlsutil.Fingerprint(cfg.Certificate))
	}
	return s, nil
}

// Addr returns the bound listener address (invalid with DisableListen).
func (s *Server) Addr() netip.AddrPort {
	if s.ln == nil {
		return netip.AddrPort{}
	}
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the listener, closes every connection and waits for every
// goroutine of the Server. Idempotent; always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.ln != nil {
			s.ln.Close()
		}
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			rawConn(c).Close() // not tls.Conn.Close: no close_notify write to wait on
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.log.Info("zone controller stopped")
	})
	return nil
}

// Lookup answers "which MMR for meeting" for an in-process caller, exactly
// as for a client's Lookup message: an existing meeting stays on its MMR, a
// new one is placed (ErrNoCapacity when no MMR has room). The result is the
// caller's.
func (s *Server) Lookup(meeting string) (proto.Placement, error) {
	if err := proto.CheckID("meeting", meeting); err != nil {
		return proto.Placement{}, err
	}
	select {
	case <-s.done:
		return proto.Placement{}, ErrClosed
	default:
	}
	s.st.lookups.Add(1)
	p, err := s.reg.lookup(meeting, time.Now())
	p.Endpoints = proto.Endpoints{UDP: slices.Clone(p.Endpoints.UDP), TCP: slices.Clone(p.Endpoints.TCP), TLS: slices.Clone(p.Endpoints.TLS)}
	return p, err
}

// MMRs returns the live registered MMRs sorted by ID.
func (s *Server) MMRs() []MMRStatus { return s.reg.snapshot(time.Now()) }

// HandleConn serves c, a connection accepted by the caller (a TLS listener
// shared with other services that routes proto.ALPN here, or a raw TCP
// connection, which gets the ZC's TLS handshake). The Server owns c from now
// on and closes it at the latest in Close. It returns at once.
func (s *Server) HandleConn(c net.Conn) {
	ip := remoteIP(c)
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		c.Close()
		return
	case len(s.conns) >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP:
		s.mu.Unlock()
		s.st.refused.Add(1)
		s.log.Debug("connection refused: limit", "remote", c.RemoteAddr())
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.perIP[ip]++
	s.wg.Add(1)
	s.mu.Unlock()
	s.st.accepted.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.untrack(c, ip)
		s.serveConn(c)
	}()
}

func (s *Server) untrack(c net.Conn, ip netip.Addr) {
	rawConn(c).Close()
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
}

// rawConn returns the transport under a TLS connection, or c itself.
func rawConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			// Resource exhaustion (EMFILE and the like): wait and retry,
			// as net/http does, rather than spin or stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		s.HandleConn(c)
	}
}

// sweepLoop removes expired MMRs and placements twice per report interval
// and closes the connections of expired MMRs (a hung peer whose socket is
// still open). Selection does not wait for it: it checks expiry itself.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReportInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			for _, e := range s.reg.sweep(now) {
				s.st.expired.Add(1)
				s.log.Warn("MMR out of selection: missed reports", "mmr", e.id)
				s.mu.Lock()
				c := s.sessions[e.session]
				s.mu.Unlock()
				if c != nil {
					c.Close()
				}
			}
		}
	}
}

// serveConn runs the TLS handshake, reads the first frame and hands the
// connection to the MMR or client loop according to its type.
func (s *Server) serveConn(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		tc = tls.Server(c, s.tlsConf)
	}
	tc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.st.handshakeFailures.Add(1)
		s.log.Debug("TLS handshake failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	// TLS 1.3 only (docs/zone-protocol.md §1): a listener shared with other
	// services (edge) may have negotiated TLS 1.2 before handing the
	// connection over; the MMR proofs need the TLS 1.3 exporter anyway.
	if v := tc.ConnectionState().Version; v < tls.VersionTLS13 {
		s.st.handshakeFailures.Add(1)
		s.log.Debug("TLS version below 1.3 refused", "remote", c.RemoteAddr(), "version", tls.VersionName(v))
		return
	}
	fr := proto.NewFrameReader(tc)
	typ, body, err := fr.Read(proto.MaxSmallFrame)
	if err != nil {
		s.badFrame(tc, err)
		return
	}
	switch typ {
	case proto.TypeHello:
		s.serveMMR(tc, fr, body)
	case proto.TypeLookup, proto.TypeProbe:
		s.serveClient(tc, fr, typ, body)
	default:
		s.st.badRequests.Add(1)
		s.refuse(tc, proto.ErrCodeBadRequest, "first message must be hello, lookup or probe, not "+typ.String())
	}
}

// badFrame counts a framing error (not a clean close) and, for one the peer
// can be told about, sends an Error before the connection closes.
func (s *Server) badFrame(tc *tls.Conn, err error) {
	switch {
	case errors.Is(err, proto.ErrFrameTooLarge), errors.Is(err, proto.ErrFrameEmpty):
		s.st.badRequests.Add(1)
		s.refuse(tc, proto.ErrCodeBadRequest, err.Error())
	case isClosed(err):
	default:
		s.st.badRequests.Add(1)
		s.log.Debug("read failed", "remote", tc.RemoteAddr(), "err", err)
	}
}

// refuse sends an Error, best effort (1 s), before the caller closes.
func (s *Server) refuse(tc *tls.Conn, code, msg string) {
	frame, err := proto.AppendMessage(nil, &proto.Error{Code: code, Message: truncate(msg, 1024)})
	if err != nil {
		return
	}
	tc.SetWriteDeadline(time.Now().Add(time.Second))
	tc.Write(frame)
	s.log.Debug("peer refused", "remote", tc.RemoteAddr(), "code", code, "msg", msg)
}

// send writes one frame with the write timeout.
func (s *Server) send(tc *tls.Conn, frame []byte) error {
	tc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := tc.Write(frame)
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// isClosed reports a clean end of the peer or our own Close.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
