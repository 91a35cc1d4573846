package webclient

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
)

// WebTransportPath is the WebTransport session path: one session per media
// kind, one packet per QUIC DATAGRAM (docs/PROTOCOL.md, "Web client",
// WebTransport).
const WebTransportPath = "/v1/wt/media"

// Defaults of WebTransportConfig.
const (
	// DefaultMaxDatagram is the largest media packet taken from or sent to
	// a browser in one datagram. A WebTransport datagram carries at most
	// about 1,215 bytes on a 1,280-byte path (QUIC short header, DATAGRAM
	// frame, the quarter stream ID and the AEAD tag come off the packet):
	// 1,200 leaves margin, and the page's packets are at most 1,136 bytes.
	DefaultMaxDatagram = 1200
	// DefaultWTIdleTimeout closes a session that sent no datagram for this
	// long: three of the page's 15 s keepalive intervals.
	DefaultWTIdleTimeout = 45 * time.Second
	// DefaultSessionTimeout closes a QUIC connection that has not opened
	// its WebTransport session this long after its handshake (the page
	// opens it at once).
	DefaultSessionTimeout = 10 * time.Second
	// wtHandshakeTimeout bounds a QUIC handshake (quic.Config's
	// HandshakeIdleTimeout): a silent client holds a slot no longer.
	wtHandshakeTimeout = 5 * time.Second
	// wtQUICIdle is QUIC's own idle timeout (no packet at all); the server
	// sends a PING every wtKeepAlive so that a live page's connection never
	// reaches it, and the session's idle timer judges the application.
	wtQUICIdle  = 30 * time.Second
	wtKeepAlive = 10 * time.Second
	// wtMaxStreams bounds the streams a browser may open on a connection:
	// HTTP/3 needs one request stream per session (CONNECT) and three
	// unidirectional ones (control, QPACK encoder and decoder); nothing
	// else is read, so a few more are enough to be lenient.
	wtMaxStreams    = 4
	wtMaxUniStreams = 8
)

// WebTransportConfig configures a WebTransport server.
type WebTransportConfig struct {
	Media MediaServer // required: where sessions go (router.Router)
	// TLS carries the certificates, those of the TLS listener on the same
	// port number. Required; it is cloned (ALPN h3, TLS 1.3: QUIC).
	TLS          *tls.Config
	MaxDatagram  int           // default DefaultMaxDatagram
	MaxPerSource int           // QUIC connections (one session each) from one IP; default DefaultMaxPerSource
	MaxTotal     int           // default DefaultMaxTotal
	IdleTimeout  time.Duration // default DefaultWTIdleTimeout
	// SessionTimeout: default DefaultSessionTimeout.
	SessionTimeout time.Duration
	// AllowedOrigins are extra origin hosts accepted besides the request's
	// own (same-origin), as Config.AllowedOrigins.
	AllowedOrigins []string
	Logger         *slog.Logger // default slog.Default()
}

// WebTransport refusal and drop reasons counted in Stats, besides
// CodeOrigin, CodePerSource, CodeTotal, CodeClosed, CutTooLarge and
// CutEmpty.
const (
	CodePath    = "path"      // a request for another path than WebTransportPath
	CodeNotWT   = "not_wt"    // not a WebTransport CONNECT, or its upgrade failed
	CutNoToken  = "no_token"  // the session's first datagram is not a Bind
	CutBadToken = "bad_token" // the router refused the Bind (unknown token)
	CutIdle     = "idle"      // no session, no Bind, or no datagram in time
	CutOutLarge = "out_large" // a packet to the browser above MaxDatagram or the path's datagram size: dropped
	CutSendFail = "send_fail" // a datagram to the browser could not be queued: the session ends
	CutInQueue  = "in_queue"  // a datagram from the browser found the queue to the router full: dropped
)

// WebTransport serves the web client's media over HTTP/3 WebTransport
// (UDP, the TLS port's number): each session is one media kind's stream,
// bridged like a media WebSocket into MediaServer.ServeStream as RFC 4571
// frames, one frame per datagram, so the router's fan-out, budgets and drop
// rules are the stream path's. Datagrams above MaxDatagram or empty are
// dropped and counted, the first one must be a Bind (repeats of it are
// answered with the same BindAck: datagrams may be lost), and sessions are
// limited per source address and in total. Safe for concurrent use.
type WebTransport struct {
	cfg  WebTransportConfig
	log  *slog.Logger
	wt   *webtransport.Server
	stop context.CancelFunc
	ctx  context.Context

	mu     sync.Mutex
	slots  slots
	conns  map[*quic.Conn]*wtConn
	closed bool
	wg     sync.WaitGroup

	stats  map[string]*atomic.Uint64
	open   atomic.Int64
	served atomic.Uint64
	in     atomic.Uint64
	out    atomic.Uint64
}

// wtConnKey keys a request's QUIC connection in its context.
type wtConnKey struct{}

// wtConn is one QUIC connection: at most one session (webtransport-go
// refuses a second without WebTransport flow control, which is not offered).
type wtConn struct {
	conn    *quic.Conn
	session atomic.Bool
}

// NewWebTransport validates cfg and returns a server; Serve starts it.
func NewWebTransport(cfg WebTransportConfig) (*WebTransport, error) {
	if cfg.Media == nil || cfg.TLS == nil {
		return nil, errors.New("webclient: WebTransport needs Media and TLS")
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = DefaultMaxDatagram
	}
	cfg.MaxDatagram = min(cfg.MaxDatagram, MaxMediaMessage)
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = DefaultMaxPerSource
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultWTIdleTimeout
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &WebTransport{cfg: cfg, log: cfg.Logger, slots: newSlots(cfg.MaxPerSource, cfg.MaxTotal), conns: map[*quic.Conn]*wtConn{}, stats: map[string]*atomic.Uint64{}}
	for _, c := range []string{CodeOrigin, CodePath, CodeNotWT, CodePerSource, CodeTotal, CodeClosed,
		CutTooLarge, CutEmpty, CutNoToken, CutBadToken, CutIdle, CutOutLarge, CutSendFail, CutInQueue} {
		w.stats[c] = new(atomic.Uint64)
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc(WebTransportPath, w.serveSession)
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.count(CodePath)
		http.Error(rw, "not found", http.StatusNotFound)
	})
	tc := cfg.TLS.Clone()
	tc.MinVersion = tls.VersionTLS13
	tc.NextProtos = []string{http3.NextProtoH3}
	w.wt = &webtransport.Server{
		H3: &http3.Server{TLSConfig: tc, Handler: mux,
			ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
				return context.WithValue(ctx, wtConnKey{}, c)
			}},
		// The origin is checked by serveSession with a counted refusal.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	webtransport.ConfigureHTTP3Server(w.wt.H3)
	return w, nil
}

// quicConfig is the QUIC configuration of the listener.
func (w *WebTransport) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:             wtHandshakeTimeout,
		MaxIdleTimeout:                   wtQUICIdle,
		KeepAlivePeriod:                  wtKeepAlive,
		MaxIncomingStreams:               wtMaxStreams,
		MaxIncomingUniStreams:            wtMaxUniStreams,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true, // webtransport-go requires it
	}
}

func (w *WebTransport) count(reason string) { w.stats[reason].Add(1) }

// Stats returns the counters: Open and Accepted count sessions, Refused
// the refusals and drops by reason.
func (w *WebTransport) Stats() Stats {
	st := Stats{Open: w.open.Load(), Accepted: w.served.Load(), Refused: map[string]uint64{}}
	for c, n := range w.stats {
		st.Refused[c] = n.Load()
	}
	return st
}

// Datagrams returns the media datagrams taken from and sent to browsers.
func (w *WebTransport) Datagrams() (in, out uint64) { return w.in.Load(), w.out.Load() }

// Serve serves WebTransport on pc (a UDP socket on the TLS port's number)
// until Close; it owns pc and closes it. It returns nil after Close.
func (w *WebTransport) Serve(pc net.PacketConn) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		pc.Close()
		return nil
	}
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()
	tr := &quic.Transport{Conn: pc}
	defer pc.Close()
	defer tr.Close()
	// Listen, not ListenEarly: connections are accepted after their
	// handshake, so a refusal can carry its reason (an application close
	// before the handshake is sent without one, RFC 9000 §10.2.3).
	ln, err := tr.Listen(w.wt.H3.TLSConfig, w.quicConfig())
	if err != nil {
		return err
	}
	defer ln.Close()
	for {
		c, err := ln.Accept(w.ctx)
		if err != nil {
			if w.ctx.Err() != nil {
				return nil
			}
			return err
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String()) // a *net.UDPAddr on a UDP socket
		ip := ap.Addr().Unmap()
		if code, ok := w.acquire(ip, c); !ok {
			w.count(code)
			_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), code)
			continue
		}
		go w.serveConn(c, ip)
	}
}

// acquire takes a slot for a connection from ip; false (with the reason)
// when a cap is reached or the server is closed.
func (w *WebTransport) acquire(ip netip.Addr, c *quic.Conn) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if code, ok := w.slots.take(ip, w.closed); !ok {
		return code, false
	}
	w.conns[c] = &wtConn{conn: c}
	w.wg.Add(1)
	return "", true
}

// serveConn serves one QUIC connection's HTTP/3 until it closes (its
// session's handler included); one without a session after SessionTimeout
// is closed (counted idle).
func (w *WebTransport) serveConn(c *quic.Conn, ip netip.Addr) {
	defer func() {
		w.mu.Lock()
		w.slots.give(ip)
		delete(w.conns, c)
		w.mu.Unlock()
		w.wg.Done()
	}()
	w.mu.Lock()
	wc := w.conns[c]
	w.mu.Unlock()
	t := time.AfterFunc(w.cfg.SessionTimeout, func() {
		if !wc.session.Load() {
			w.count(CutIdle)
			_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "no session")
		}
	})
	defer t.Stop()
	if err := w.wt.ServeQUICConn(c); err != nil && !errors.Is(err, http.ErrServerClosed) {
		w.log.Debug("webclient: WebTransport connection", "remote", c.RemoteAddr(), "err", err)
	}
	// ServeQUICConn returns when the connection's streams stop being
	// accepted, after the handlers it ran; make sure it is closed.
	_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
}

// serveSession checks a CONNECT to WebTransportPath, upgrades it and
// bridges the session until it ends; then the connection is closed.
func (w *WebTransport) serveSession(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		w.count(CodeNotWT)
		http.Error(rw, "a WebTransport session (extended CONNECT) is expected", http.StatusBadRequest)
		return
	}
	if !originOK(r, w.cfg.AllowedOrigins) {
		w.count(CodeOrigin)
		http.Error(rw, "webtransport refused: "+CodeOrigin, http.StatusForbidden)
		return
	}
	c, _ := r.Context().Value(wtConnKey{}).(*quic.Conn)
	w.mu.Lock()
	wc, closed := w.conns[c], w.closed
	if !closed && wc != nil {
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if closed || wc == nil {
		w.count(CodeClosed)
		http.Error(rw, "webtransport refused: "+CodeClosed, http.StatusServiceUnavailable)
		return
	}
	defer w.wg.Done()
	defer func() { _ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "") }()
	wc.session.Store(true)
	sess, err := w.wt.Upgrade(rw, r)
	if err != nil {
		w.count(CodeNotWT)
		w.log.Debug("webclient: WebTransport upgrade", "remote", r.RemoteAddr, "err", err)
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	w.served.Add(1)
	w.open.Add(1)
	defer w.open.Add(-1)
	w.bridge(sess, c)
}

// Close stops serving, closes every connection and waits for their
// goroutines (the router's side of each session ends with it). Idempotent.
func (w *WebTransport) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.stop()
		for c := range w.conns {
			_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "server closing")
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
	return w.wt.Close()
}

// CloseAll closes every connection at once, as a network failure would;
// new ones are still accepted. For operators and tests.
func (w *WebTransport) CloseAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.conns {
		_ = c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
}
