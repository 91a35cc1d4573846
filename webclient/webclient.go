// Package webclient is openmmr's web client: the browser page (plain ES
// modules, embedded, no build step) that joins a meeting with nothing
// installed, and its server side, two WebSocket endpoints on the shared
// TLS port 443 that bridge the browser into the existing servers:
//
//   - /v1/ws/control carries the control channel (docs/PROTOCOL.md,
//     "Control channel"), one JSON message per WebSocket text message,
//     into control.Server.HandleConn, exactly as a TLS client's frames;
//   - /v1/ws/media carries one media stream (one media kind), one RTP,
//     RTCP, Bind or Keepalive packet per WebSocket binary message, into
//     router.ServeStream as RFC 4571 frames, so the router's fan-out,
//     budgets and drop rules are the TCP/TLS stream code.
//
// A WebTransport server (type WebTransport, HTTP/3 on UDP at the TLS
// port's number) carries the same media links over QUIC datagrams, one
// packet per datagram, into router.ServeStream the same way; the page tries
// it first and falls back to the media WebSockets when UDP is blocked.
//
// Every limit (message size, message type, origin, WebSockets per source
// and in total) refuses or cuts off with a counted reason (Stats). The wire
// format is in docs/PROTOCOL.md, "Web client (WebSocket 443)".
//
// A Handler is safe for concurrent use.
package webclient

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

//go:embed static
var staticFS embed.FS

// WebSocket subprotocols (RFC 6455 §1.9). The page offers exactly one per
// endpoint; an upgrade without it is refused (CodeSubprotocol).
const (
	ControlProtocol = "openmmr-control.v1"
	MediaProtocol   = "openmmr-media.v1"
)

// Defaults of Config.
const (
	// DefaultMaxControlMessage is control's default max_frame.
	DefaultMaxControlMessage = 65536
	// MaxMediaMessage is the router's largest stream frame (RFC 4571
	// LENGTH 1..1500, docs/PROTOCOL.md "Media over TCP 8801 and TLS 443").
	MaxMediaMessage = 1500
	// DefaultMaxPerSource bounds WebSockets from one IP address (both
	// endpoints together): a browser in a meeting holds 1 control and up to
	// 3 media WebSockets; 32 leave room for a few tabs behind one NAT.
	DefaultMaxPerSource = 32
	// DefaultMaxTotal bounds WebSockets in all (each holds two goroutines
	// and about 8 KiB of buffers beside the server side's own).
	DefaultMaxTotal = 10000
	// DefaultWriteTimeout bounds one message to a browser; a browser that
	// takes longer is cut (the router drops media long before, on its own
	// budget).
	DefaultWriteTimeout = 10 * time.Second
)

// ControlServer is where control WebSockets go (control.Server).
type ControlServer interface {
	// HandleConn serves c and owns it; it may return at once.
	HandleConn(c net.Conn)
}

// MediaServer is where media WebSockets go (router.Router).
type MediaServer interface {
	// ServeStream serves c until it ends and closes it.
	ServeStream(c net.Conn) error
}

// Config configures a Handler.
type Config struct {
	Control ControlServer // required
	Media   MediaServer   // required
	// MaxControlMessage is the control message cap (default
	// DefaultMaxControlMessage; set it to control.Config.MaxFrame).
	MaxControlMessage int
	MaxPerSource      int           // default DefaultMaxPerSource
	MaxTotal          int           // default DefaultMaxTotal
	WriteTimeout      time.Duration // default DefaultWriteTimeout
	// AllowedOrigins are extra origin hosts (host[:port]) accepted besides
	// the request's own Host (same-origin). Empty: same origin only.
	AllowedOrigins []string
	// WebTransport tells the page that a WebTransport server (type
	// WebTransport) serves WebTransportPath on UDP at the page's own host
	// and port number: the page tries it for media before WebSockets.
	WebTransport bool
	// WebTransportTimeout is how long the page waits for a WebTransport
	// session before it uses WebSockets (a blocked UDP port costs that
	// much at each join). Default DefaultWebTransportTimeout.
	WebTransportTimeout time.Duration
	Logger              *slog.Logger // default slog.Default()
}

// DefaultWebTransportTimeout: a QUIC handshake takes one round trip; 2 s
// is many times a long one, and short enough that a page behind a network
// that drops UDP still joins quickly.
const DefaultWebTransportTimeout = 2 * time.Second

// wtMeta is the page's WebTransport announcement; its content is filled
// with WebTransportPath when Config.WebTransport is set.
const wtMeta = `<meta name="openmmr-webtransport" content="">`

// Refusal and cut-off reasons counted in Stats.
const (
	CodeOrigin      = "origin"      // Origin header names another site
	CodeSubprotocol = "subprotocol" // no or wrong Sec-WebSocket-Protocol
	CodeUpgrade     = "upgrade"     // not a valid WebSocket upgrade
	CodePerSource   = "per_source"  // MaxPerSource reached for the address
	CodeTotal       = "total"       // MaxTotal reached
	CodeClosed      = "closed"      // the Handler is closed
)

// Handler serves the page and the WebSocket endpoints.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	static http.Handler
	index  []byte

	mu     sync.Mutex
	slots  slots
	conns  map[*websocket.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	stats  map[string]*atomic.Uint64
	open   atomic.Int64
	served atomic.Uint64
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Control == nil || cfg.Media == nil {
		return nil, errors.New("webclient: Control and Media are required")
	}
	if cfg.MaxControlMessage <= 0 {
		cfg.MaxControlMessage = DefaultMaxControlMessage
	}
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = DefaultMaxPerSource
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(index, []byte(wtMeta)) {
		return nil, errors.New("webclient: index.html lacks the WebTransport meta tag")
	}
	if cfg.WebTransportTimeout <= 0 {
		cfg.WebTransportTimeout = DefaultWebTransportTimeout
	}
	if cfg.WebTransport {
		meta := fmt.Sprintf(`<meta name="openmmr-webtransport" content="%s" data-timeout-ms="%d">`, WebTransportPath, cfg.WebTransportTimeout.Milliseconds())
		index = bytes.Replace(index, []byte(wtMeta), []byte(meta), 1)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, slots: newSlots(cfg.MaxPerSource, cfg.MaxTotal), conns: map[*websocket.Conn]struct{}{},
		stats: map[string]*atomic.Uint64{}, index: index, static: http.StripPrefix("/static/", http.FileServerFS(sub))}
	for _, c := range []string{CodeOrigin, CodeSubprotocol, CodeUpgrade, CodePerSource, CodeTotal, CodeClosed, CutTooLarge, CutWrongType, CutEmpty} {
		h.stats[c] = new(atomic.Uint64)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	m := http.NewServeMux()
	for p, hf := range h.Routes() {
		m.Handle(p, hf)
	}
	h.mux = m
	return h, nil
}

// Routes returns the Handler's routes by http.ServeMux pattern, to mount
// on another mux (web.Config.Extra): "/" (the page, and 404 for other
// paths), "/j/{id}" (the page with the meeting ID filled in), "/static/"
// (the page's modules), "/v1/ws/control" and "/v1/ws/media".
func (h *Handler) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"/":              http.HandlerFunc(h.servePage),
		"/j/{id}":        http.HandlerFunc(h.servePage),
		"/static/":       http.HandlerFunc(h.serveStatic),
		"/v1/ws/control": http.HandlerFunc(h.serveControl),
		"/v1/ws/media":   http.HandlerFunc(h.serveMedia),
	}
}

// ServeHTTP serves every route of Routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Stats are the Handler's counters. Refused and Cut only grow.
type Stats struct {
	Open     int64             // WebSockets open now
	Accepted uint64            // WebSockets accepted
	Refused  map[string]uint64 // by reason: refusals before the upgrade and cut-offs after it
}

// Stats returns the counters.
func (h *Handler) Stats() Stats {
	st := Stats{Open: h.open.Load(), Accepted: h.served.Load(), Refused: map[string]uint64{}}
	for c, n := range h.stats {
		st.Refused[c] = n.Load()
	}
	return st
}

func (h *Handler) count(reason string) { h.stats[reason].Add(1) }

// Close closes every WebSocket and waits for their goroutines (the server
// sides close with them). Later upgrades are refused. Idempotent.
func (h *Handler) Close() error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		h.cancel()
		for c := range h.conns {
			c.CloseNow()
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

// CloseAll closes every open WebSocket at once, without a close message,
// as a network failure would (the clients reconnect and resume); new
// upgrades are still accepted. For operators draining a node and for tests.
func (h *Handler) CloseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.CloseNow()
	}
}

// pageHeaders: the page loads its own modules and connects to its own
// origin only (CSP 'self' covers same-origin wss: in CSP 3).
func pageHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/" && r.PathValue("id") == "" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(h.index)
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	pageHeaders(w)
	h.static.ServeHTTP(w, r)
}

func (h *Handler) serveControl(w http.ResponseWriter, r *http.Request) {
	h.serveWS(w, r, ControlProtocol, framing{hdr: 4, msgType: websocket.MessageText, maxIn: h.cfg.MaxControlMessage, maxOut: 16 << 20},
		func(c *pipeConn) { h.cfg.Control.HandleConn(controlConn{c}) })
}

func (h *Handler) serveMedia(w http.ResponseWriter, r *http.Request) {
	h.serveWS(w, r, MediaProtocol, framing{hdr: 2, msgType: websocket.MessageBinary, maxIn: MaxMediaMessage, maxOut: MaxMediaMessage},
		func(c *pipeConn) { _ = h.cfg.Media.ServeStream(c) })
}

// originOK: no Origin (not a browser) or one whose host is the request's
// Host or an allowed one. Browsers always send Origin on WebSocket
// upgrades, so a page of another site cannot ride the user's network
// position (cross-site WebSocket hijacking).
func (h *Handler) originOK(r *http.Request) bool { return originOK(r, h.cfg.AllowedOrigins) }

// originOK: no Origin, or one whose host is r's Host or one of allowed.
func originOK(r *http.Request, allowed []string) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(u.Host, a) {
			return true
		}
	}
	return false
}

func offers(r *http.Request, proto string) bool {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == proto {
				return true
			}
		}
	}
	return false
}

func tcpAddr(s string) *net.TCPAddr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// acquire takes a slot for ip; false (counted) when a cap is reached.
func (h *Handler) acquire(ip netip.Addr) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	code, ok := h.slots.take(ip, h.closed)
	if ok {
		h.wg.Add(1)
	}
	return code, ok
}

func (h *Handler) release(ip netip.Addr) {
	h.mu.Lock()
	h.slots.give(ip)
	h.mu.Unlock()
	h.wg.Done()
}

func (h *Handler) refuse(w http.ResponseWriter, code string, status int) {
	h.count(code)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	http.Error(w, "websocket refused: "+code, status)
}

// serveWS checks the upgrade, takes a slot, upgrades, and bridges the
// WebSocket to serve through a pipe until either side ends.
func (h *Handler) serveWS(w http.ResponseWriter, r *http.Request, proto string, f framing, serve func(*pipeConn)) {
	if !h.originOK(r) {
		h.refuse(w, CodeOrigin, http.StatusForbidden)
		return
	}
	if !offers(r, proto) {
		h.refuse(w, CodeSubprotocol, http.StatusBadRequest)
		return
	}
	remote := tcpAddr(r.RemoteAddr)
	ip := remote.AddrPort().Addr()
	if code, ok := h.acquire(ip); !ok {
		h.refuse(w, code, http.StatusServiceUnavailable)
		return
	}
	defer h.release(ip)
	// The HTTP server's read and write timeouts were set on the connection
	// for the request; a WebSocket lives on, its idleness judged by the
	// server side (control's handshake and idle timeouts, the router's bind
	// and idle timeouts).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{proto},
		InsecureSkipVerify: true, // the origin was checked above, with a counted refusal
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		h.count(CodeUpgrade) // Accept has answered the client
		return
	}
	ws.SetReadLimit(int64(f.maxIn) + 1) // fromBrowser tells a too-large message itself
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ws.CloseNow()
		return
	}
	h.conns[ws] = struct{}{}
	h.mu.Unlock()
	h.served.Add(1)
	h.open.Add(1)
	defer func() {
		h.open.Add(-1)
		h.mu.Lock()
		delete(h.conns, ws)
		h.mu.Unlock()
	}()

	local := &net.TCPAddr{}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = tcpAddr(la.String())
	}
	a, b := net.Pipe()
	pc := &pipeConn{Conn: b, local: local, remote: remote}
	served := make(chan struct{})
	go func() {
		defer close(served)
		serve(pc)
	}()
	f.writeTTL = h.cfg.WriteTimeout
	f.count = h.count
	f.pump(h.ctx, ws, a)
	<-served
	// HandleConn returns at once and its reader owns b; closing our end
	// (done in pump) ends it.
}
