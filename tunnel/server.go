package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/openmmr/mmr/control/token"
)

// Server is a tunnel server. Create it with NewServer, run it with Serve,
// stop it with Shutdown (streams closed with CloseLeaving) or Close (cut).
// Safe for concurrent use; ServeHTTP may also be mounted on another
// http.Server (then MaxConns and ConnTimeout are that server's business).
type Server struct {
	cfg      Config
	verifier *token.Verifier
	allow    *allowList
	places   *placeCache // nil without Config.Placer
	clients  *slots      // keyed by meeting + "\x00" + identity
	addrs    *slots      // keyed by source IP
	logLim   *rate.Limiter
	c        counters
	srv      *http.Server

	ctx    context.Context // ends with Close: streams, sweeper and refresher
	cancel context.CancelFunc

	mu      sync.Mutex
	leaving bool // no new pings or streams
	closed  bool // no new goroutines
	streams map[*stream]struct{}
	wg      sync.WaitGroup // stream handlers, sweeper, refresher

	closeOnce sync.Once
}

// NewServer validates cfg, resolves the zone names once (failures are
// logged; the refresher retries them) and starts the idle sweeper and the
// zone refresher. Call Close (or Shutdown) to stop them.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v, err := token.NewVerifier(cfg.Secret, cfg.Previous...)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	res := cfg.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	s := &Server{
		cfg:      cfg,
		verifier: v,
		allow:    &allowList{zones: append([]string(nil), cfg.Zones...), resolver: res},
		clients:  newSlots(cfg.StreamsPerClient, cfg.BytesPerClient),
		addrs:    newSlots(cfg.StreamsPerAddr, cfg.BytesPerAddr),
		logLim:   rate.NewLimiter(rate.Limit(cfg.LogRate), 10),
		streams:  make(map[*stream]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Placer != nil {
		s.places = &placeCache{p: cfg.Placer, ctx: s.ctx, wg: &s.wg, c: &s.c, m: make(map[string]*placeEntry)}
	}
	if err := s.allow.refresh(s.ctx); err != nil {
		cfg.Log.Warn("tunnel: some zone addresses do not resolve", "err", err)
	}
	cfg.Log.Info("tunnel: allow-list", "addresses", len(*s.allow.set.Load()))
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.HandshakeTimeout, // also bounds the TLS handshake
		IdleTimeout:       cfg.HandshakeTimeout, // between kept-alive requests
		MaxHeaderBytes:    8 << 10,              // a token, a target and the WebSocket headers
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
		ConnState:         s.connState,
	}
	s.wg.Add(2)
	go s.sweep()
	go s.refresher()
	return s, nil
}

// Serve accepts TLS connections on ln with cert until Shutdown or Close,
// then returns http.ErrServerClosed. It offers only HTTP/1.1 in ALPN: a
// WebSocket upgrade needs it (RFC 8441 over h2 is not used, see the
// package doc).
func (s *Server) Serve(ln net.Listener, cert tls.Certificate) error {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	return s.srv.Serve(tls.NewListener(&limitListener{Listener: ln, s: s}, tc))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { return s.c.snapshot() }

// Shutdown stops the server gracefully: it refuses new pings and streams
// (503 "leaving"), stops accepting, closes every open stream with close
// code 1012 (CloseLeaving) so clients move to another tunnel at once, and
// waits for them to end or for ctx, after which it cuts what is left.
// It always ends like Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.leaving = true
	list := s.streamList()
	s.mu.Unlock()
	s.cfg.Log.Info("tunnel: leaving", "streams", len(list))
	for _, st := range list {
		go st.finish(EndLeaving, CloseLeaving, "server leaving", false)
	}
	err := s.srv.Shutdown(ctx) // listeners, idle connections, pings in flight
	done := make(chan struct{})
	go func() {
		for {
			s.mu.Lock()
			n := len(s.streams)
			s.mu.Unlock()
			if n == 0 || ctx.Err() != nil {
				close(done)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-done
	if ctx.Err() != nil && err == nil {
		err = ctx.Err()
	}
	_ = s.Close()
	return err
}

// Close cuts every stream and connection at once and waits for the
// server's goroutines to end. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.leaving, s.closed = true, true
		list := s.streamList()
		s.mu.Unlock()
		_ = s.srv.Close()
		s.cancel()
		for _, st := range list {
			st.finish(EndClosed, CloseLeaving, "server closed", true)
		}
		s.wg.Wait()
	})
	return nil
}

func (s *Server) streamList() []*stream {
	list := make([]*stream, 0, len(s.streams))
	for st := range s.streams {
		list = append(list, st)
	}
	return list
}

// sweep closes streams idle for IdleTimeout, checking every quarter of it
// (at most every second, so a stream lives at most 1.25 × IdleTimeout, or
// IdleTimeout + 1 s, without traffic; a pass over 8,000 streams is a few
// microseconds).
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(min(max(s.cfg.IdleTimeout/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			now := s.cfg.Now()
			s.mu.Lock()
			list := s.streamList()
			s.mu.Unlock()
			limit := now.Add(-s.cfg.IdleTimeout).UnixNano()
			for _, st := range list {
				if st.last.Load() < limit {
					go st.finish(EndIdle, CloseIdle, "idle", false)
				}
			}
		}
	}
}

// refresher resolves the zone names again every Refresh.
func (s *Server) refresher() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.allow.refresh(s.ctx); err != nil && s.ctx.Err() == nil {
				s.cfg.Log.Warn("tunnel: zone refresh", "err", err)
			}
		}
	}
}

// connState counts connections that closed before any request: a TLS
// handshake or request header that never came within HandshakeTimeout,
// a bad handshake, or a kept-alive connection that stayed idle.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	var cc *countedConn
	switch c := c.(type) {
	case *tls.Conn:
		cc, _ = c.NetConn().(*countedConn)
	case *countedConn:
		cc = c
	}
	if cc == nil {
		return
	}
	switch st {
	case http.StateActive, http.StateHijacked:
		cc.used.Store(true)
	case http.StateClosed:
		if !cc.used.Load() {
			s.c.connTimeout.Add(1)
		}
	}
}

// ServeHTTP routes PathPing and PathTunnel.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathPing:
		s.ping(w, r)
	case PathTunnel:
		s.tunnel(w, r)
	default:
		s.refuse(w, r, RefusedBadRequest, http.StatusNotFound, CodeNotFound, "no such path")
	}
}

// refuse counts a refusal, logs it (rate-limited) and answers with the JSON
// error body.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why Refusal, status int, code, msg string, attrs ...any) {
	s.c.refused[why].Add(1)
	if s.logLim.Allow() {
		s.cfg.Log.Warn("tunnel: refused", append([]any{"reason", why.String(), "from", r.RemoteAddr, "msg", msg}, attrs...)...)
	} else {
		s.c.logDropped.Add(1)
	}
	writeError(w, status, code, msg)
}

// authorize checks the bearer token; on failure it has answered 401.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (token.Claims, bool) {
	vals := r.Header.Values("Authorization")
	tok, ok := "", len(vals) == 1
	if ok {
		tok, ok = ParseBearer(vals[0])
	}
	if !ok {
		s.refuse(w, r, RefusedTokenMissing, http.StatusUnauthorized, CodeTokenMissing, "an Authorization: Bearer <join token> header is required")
		return token.Claims{}, false
	}
	c, err := s.verifier.Verify(tok, s.cfg.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		s.refuse(w, r, RefusedTokenExpired, http.StatusUnauthorized, CodeTokenExpired, "the join token has expired")
	case err != nil:
		s.refuse(w, r, RefusedTokenInvalid, http.StatusUnauthorized, CodeTokenInvalid, "the join token is malformed or forged")
	default:
		return c, true
	}
	return token.Claims{}, false
}

// isLeaving reports whether Shutdown or Close began.
func (s *Server) isLeaving() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaving
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		s.refuse(w, r, RefusedBadRequest, http.StatusMethodNotAllowed, CodeBadRequest, "ping is GET")
		return
	}
	if s.isLeaving() {
		s.refuse(w, r, RefusedLeaving, http.StatusServiceUnavailable, CodeLeaving, "the tunnel server is stopping")
		return
	}
	if _, ok := s.authorize(w, r); !ok {
		return
	}
	s.c.pings.Add(1)
	body, _ := json.Marshal(Pong{Time: time.Now().UTC(), Server: s.cfg.Name})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// sourceKey is the per-address limit key: the TCP peer's IP (a client's
// HTTP proxy when it uses one; forwarding headers are not trusted).
func sourceKey(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}

// isUpgrade reports whether r asks for a WebSocket upgrade (RFC 6455 §4.1).
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// headerHasToken reports whether a comma-separated header lists tok
// (case-insensitive).
func headerHasToken(h http.Header, name, tok string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

func (s *Server) tunnel(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !isUpgrade(r) {
		s.refuse(w, r, RefusedBadRequest, http.StatusBadRequest, CodeBadRequest, "a WebSocket upgrade (GET, Upgrade: websocket) is required")
		return
	}
	// Track the handler so Close waits for it; refuse once stopping.
	s.mu.Lock()
	if s.leaving {
		s.mu.Unlock()
		s.refuse(w, r, RefusedLeaving, http.StatusServiceUnavailable, CodeLeaving, "the tunnel server is stopping")
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	claims, ok := s.authorize(w, r)
	if !ok {
		return
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", Subprotocol) {
		s.refuse(w, r, RefusedBadRequest, http.StatusBadRequest, CodeBadRequest, "Sec-WebSocket-Protocol must offer "+Subprotocol)
		return
	}
	target := r.Header.Get(HeaderTarget)
	host, port, err := ParseTarget(target)
	if err != nil {
		s.refuse(w, r, RefusedBadTarget, http.StatusBadRequest, CodeBadTarget, err.Error())
		return
	}
	resolved, err := s.allow.resolve(r.Context(), host, port)
	if err != nil {
		s.refuse(w, r, RefusedDialFailed, http.StatusBadGateway, CodeDialFailed, "cannot resolve "+host, "target", target)
		return
	}
	dests := filter(resolved, *s.allow.set.Load())
	if len(dests) == 0 && s.places != nil {
		// Not a configured address: is it an MMR endpoint of the token's
		// meeting's placement?
		if set, err := s.places.get(r.Context(), claims.Meeting); err == nil {
			dests = filter(resolved, set)
		} else if r.Context().Err() == nil {
			s.cfg.Log.Debug("tunnel: placement lookup failed", "meeting", claims.Meeting, "err", err)
		}
	}
	if len(dests) == 0 {
		s.refuse(w, r, RefusedNotAllowed, http.StatusForbidden, CodeTargetNotAllowed,
			target+" is not an address of the zones this tunnel serves", "target", target, "identity", claims.Identity, "meeting", claims.Meeting)
		return
	}
	if s.c.streams.Add(1) > int64(s.cfg.MaxStreams) {
		s.c.streams.Add(-1)
		s.refuse(w, r, RefusedStreamsFull, http.StatusServiceUnavailable, CodeServerFull, "the tunnel server is full")
		return
	}
	defer s.c.streams.Add(-1)
	ckey, akey := claims.Meeting+"\x00"+claims.Identity, sourceKey(r)
	clim := s.clients.acquire(ckey)
	if clim == nil {
		s.refuse(w, r, RefusedClientStreams, http.StatusTooManyRequests, CodeTooManyStreams,
			fmt.Sprintf("at most %d streams per participant", s.cfg.StreamsPerClient), "identity", claims.Identity)
		return
	}
	defer s.clients.release(ckey)
	alim := s.addrs.acquire(akey)
	if alim == nil {
		s.refuse(w, r, RefusedAddrStreams, http.StatusTooManyRequests, CodeTooManyStreams,
			fmt.Sprintf("at most %d streams per address", s.cfg.StreamsPerAddr))
		return
	}
	defer s.addrs.release(akey)

	dest, err := s.dial(r.Context(), dests)
	if err != nil {
		s.refuse(w, r, RefusedDialFailed, http.StatusBadGateway, CodeDialFailed, "the destination does not answer", "target", target, "err", err)
		return
	}
	// net/http leaves its header read deadline on the connection it hands
	// over; the stream keeps its own timeouts.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{Subprotocol},
		CompressionMode: websocket.CompressionDisabled, // TLS ciphertext does not compress
	})
	if err != nil { // Accept has answered
		_ = dest.Close()
		s.c.refused[RefusedBadRequest].Add(1)
		return
	}
	s.relay(ws, dest, clim, alim)
}

// dial connects to the first answering destination.
func (s *Server) dial(ctx context.Context, dests []netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	var errs []error
	for _, ap := range dests {
		c, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// stream is one relayed WebSocket and its destination connection.
type stream struct {
	ws     *websocket.Conn
	nc     net.Conn // ws as a byte stream
	dest   net.Conn
	cancel context.CancelFunc
	last   atomic.Int64 // UnixNano of the last relayed byte
	// writing is the UnixNano start of the write to the client in
	// progress, 0 when none: a failure while a write has been blocked for
	// the write timeout is a slow consumer, whichever side notices first
	// (the library closes the whole connection on a write timeout, so the
	// reader often fails before the writer returns).
	writing atomic.Int64

	once   sync.Once
	reason End
}

// finish ends the stream once with reason: the destination is closed and
// the WebSocket gets close code (with the close handshake, bounded by the
// library's 5 s, unless now).
func (st *stream) finish(reason End, code websocket.StatusCode, msg string, now bool) {
	st.once.Do(func() {
		st.reason = reason
		_ = st.dest.Close()
		if now {
			_ = st.ws.CloseNow()
		} else {
			_ = st.ws.Close(code, msg)
		}
		st.cancel()
	})
}

// Relay buffer sizes, per stream and direction: 16 KiB holds one full TLS
// record (the unit both ends write) in one read, and keeps an idle stream
// to ~32 KiB of relay buffers (the heap per stream, both TLS layers
// included, is measured in TestIdleStreams).
const (
	upBuf   = 16 << 10
	downBuf = 16 << 10
)

// relay copies both ways until either side ends, then records why.
func (s *Server) relay(ws *websocket.Conn, dest net.Conn, clim, alim *rate.Limiter) {
	ctx, cancel := context.WithCancel(s.ctx)
	st := &stream{ws: ws, dest: dest, cancel: cancel, nc: websocket.NetConn(ctx, ws, websocket.MessageBinary)}
	st.last.Store(s.cfg.Now().UnixNano())
	s.mu.Lock()
	if s.leaving {
		s.mu.Unlock()
		st.finish(EndLeaving, CloseLeaving, "server leaving", s.closed)
		s.c.ended[EndLeaving].Add(1)
		return
	}
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	s.c.opened.Add(1)

	wait := func(n int) error {
		if err := clim.WaitN(ctx, n); err != nil {
			return err
		}
		return alim.WaitN(ctx, n)
	}
	upDone := make(chan struct{})
	go func() { // client → destination
		defer close(upDone)
		buf := make([]byte, upBuf)
		for {
			n, err := st.nc.Read(buf)
			if n > 0 {
				st.last.Store(s.cfg.Now().UnixNano())
				s.c.bytesUp.Add(uint64(n))
				if wait(n) != nil {
					return
				}
				_ = dest.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
				if _, werr := dest.Write(buf[:n]); werr != nil {
					st.finish(EndUpstream, CloseUpstream, "destination write failed", false)
					return
				}
			}
			if err != nil {
				s.clientGone(st)
				return
			}
		}
	}()
	buf := make([]byte, downBuf)
	for { // destination → client
		n, err := dest.Read(buf)
		if n > 0 {
			st.last.Store(s.cfg.Now().UnixNano())
			if wait(n) != nil {
				break
			}
			start := time.Now()
			st.writing.Store(start.UnixNano())
			_ = st.nc.SetWriteDeadline(start.Add(s.cfg.WriteTimeout))
			_, werr := st.nc.Write(buf[:n])
			if werr != nil {
				s.clientGone(st)
				break
			}
			st.writing.Store(0)
			s.c.bytesDown.Add(uint64(n))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				st.finish(EndUpstream, CloseNormal, "destination closed", false)
			} else {
				st.finish(EndUpstream, CloseUpstream, "destination failed", false)
			}
			break
		}
	}
	<-upDone
	st.finish(EndClosed, CloseLeaving, "", true) // no-op unless the limiter wait ended it
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
	s.c.ended[st.reason].Add(1)
}

// clientGone ends st after its WebSocket failed: a slow consumer when a
// write has been blocked for the write timeout, else the client's end.
func (s *Server) clientGone(st *stream) {
	if w := st.writing.Load(); w != 0 && time.Since(time.Unix(0, w)) >= s.cfg.WriteTimeout {
		st.finish(EndSlow, CloseSlow, "client does not read", true)
		return
	}
	st.finish(EndClient, CloseNormal, "", false)
}

// limitListener closes connections beyond MaxConns at once and counts the
// open ones.
type limitListener struct {
	net.Listener
	s *Server
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.c.conns.Add(1) > int64(l.s.cfg.MaxConns) {
			l.s.c.conns.Add(-1)
			l.s.c.refused[RefusedServerFull].Add(1)
			_ = c.Close()
			continue
		}
		l.s.c.accepted.Add(1)
		return &countedConn{Conn: c, s: l.s}, nil
	}
}

// countedConn gives back its MaxConns slot on the first Close.
type countedConn struct {
	net.Conn
	s      *Server
	used   atomic.Bool // a request (or upgrade) started on it
	closed atomic.Bool
}

// Close closes the connection and releases its slot once.
func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.s.c.conns.Add(-1)
	}
	return c.Conn.Close()
}
