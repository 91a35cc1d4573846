package tunnel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/openmmr/mmr/tlsutil"
)

// Endpoint is one entry of the lookup answer's "tunnels" list
// (CONTRACT-lookup): the tunnel URL and the SHA-256 fingerprint of its
// certificate to pin ("" means verify against the system roots, or
// Dialer.RootCAs).
type Endpoint struct {
	URL         string `json:"url"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Dialer is the client side: it pings tunnel servers and opens streams
// through them. Set the fields before first use; a Dialer is then safe for
// concurrent use.
type Dialer struct {
	// Token is the join token presented to the tunnel servers.
	Token string
	// Proxy, when not nil, is the HTTP proxy the client must use: every
	// connection to a tunnel server is an HTTP CONNECT through it (net/http's
	// proxy support, including user:password in the URL for Basic auth).
	Proxy *url.URL
	// RootCAs verifies tunnel servers without a fingerprint. Nil: the
	// system roots.
	RootCAs *x509.CertPool
	// HandshakeTimeout bounds the TCP connect, proxy CONNECT and TLS
	// handshake of one connection. Default 10 s.
	HandshakeTimeout time.Duration
	// LocalAddr, when valid, is the source address of every connection to
	// a tunnel server or proxy (a multi-homed client picking its
	// interface). The zero Addr lets the kernel choose.
	LocalAddr netip.Addr
}

// Tunnel is a tunnel server that answered a ping; Dial opens streams
// through it. Immutable; safe for concurrent use.
type Tunnel struct {
	Endpoint Endpoint
	RTT      time.Duration // of the ping that chose it
	Server   Pong          // the ping's answer

	d       *Dialer
	client  *http.Client
	tunnel  string // the WebSocket URL
	pingURL string
}

// PingURL returns the ping URL of a tunnel URL: the same URL with its last
// path segment replaced by "ping" (".../v1/tunnel" → ".../v1/ping").
func PingURL(tunnelURL string) (string, error) {
	u, err := url.Parse(tunnelURL)
	if err != nil {
		return "", fmt.Errorf("tunnel: url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("tunnel: url %q is not an https URL with a host", tunnelURL)
	}
	i := strings.LastIndexByte(u.Path, '/')
	u.Path = u.Path[:i+1] + "ping"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Open prepares a Tunnel for e without pinging it.
func (d *Dialer) Open(e Endpoint) (*Tunnel, error) {
	ping, err := PingURL(e.URL)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.Fingerprint != "" {
		if tc, err = tlsutil.PinnedClientConfig(e.Fingerprint); err != nil {
			return nil, err
		}
	} else {
		tc.RootCAs = d.RootCAs
	}
	tc.NextProtos = []string{"http/1.1"} // a WebSocket upgrade needs HTTP/1.1
	hs := d.HandshakeTimeout
	if hs == 0 {
		hs = 10 * time.Second
	}
	tr := &http.Transport{
		TLSClientConfig:        tc,
		DialContext:            d.netDialer(hs).DialContext,
		TLSHandshakeTimeout:    hs,
		DisableKeepAlives:      true, // one connection per ping or stream; nothing idles in a pool
		ForceAttemptHTTP2:      false,
		MaxResponseHeaderBytes: 8 << 10,
	}
	if d.Proxy != nil {
		tr.Proxy = http.ProxyURL(d.Proxy)
	}
	u, _ := url.Parse(e.URL)
	u.Scheme = "wss"
	return &Tunnel{Endpoint: e, d: d, client: &http.Client{Transport: tr}, tunnel: u.String(), pingURL: ping}, nil
}

func (d *Dialer) netDialer(timeout time.Duration) *net.Dialer {
	nd := &net.Dialer{Timeout: timeout}
	if d.LocalAddr.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: d.LocalAddr.AsSlice(), Zone: d.LocalAddr.Zone()}
	}
	return nd
}

// Ping makes one authenticated round trip and returns the server's answer
// and the round-trip time (including the connection set-up: TCP, proxy
// CONNECT, TLS, as the first stream will pay it).
func (t *Tunnel) Ping(ctx context.Context) (Pong, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.pingURL, nil)
	if err != nil {
		return Pong{}, 0, fmt.Errorf("tunnel: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+t.d.Token)
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		// A cancelled request leaves its dial running in the background
		// (net/http keeps it for a later request) until the dial timeout;
		// this cancels dials nobody waits for any more, so a Pick that
		// moved on leaves no connection attempt behind.
		t.client.CloseIdleConnections()
		return Pong{}, 0, fmt.Errorf("tunnel: ping %s: %w", t.Endpoint.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Pong{}, 0, DecodeError(resp.StatusCode, resp.Body)
	}
	p, err := DecodePong(resp.Body)
	return p, time.Since(start), err
}

// Pick pings every endpoint at once and returns the first to answer; the
// other pings are cancelled and waited for before it returns. With none
// answering it returns every error, joined. To move on after a tunnel
// fails, call Pick again with the rest of the list.
func (d *Dialer) Pick(ctx context.Context, endpoints []Endpoint) (*Tunnel, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("tunnel: no tunnel servers to pick from")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		t   *Tunnel
		err error
	}
	results := make(chan result, len(endpoints))
	var wg sync.WaitGroup
	for _, e := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := d.Open(e)
			if err == nil {
				t.Server, t.RTT, err = t.Ping(ctx)
			}
			results <- result{t, err}
		}()
	}
	var errs []error
	var best *Tunnel
	for range endpoints {
		r := <-results
		if r.err == nil {
			best = r.t
			break
		}
		errs = append(errs, r.err)
	}
	cancel()
	wg.Wait()
	if best != nil {
		return best, nil
	}
	return nil, fmt.Errorf("tunnel: no tunnel server answered: %w", errors.Join(errs...))
}

// Dial opens a stream through the tunnel to addr ("host:port" of a zone's
// ZC or MMR) and returns it as a net.Conn; the caller runs its own TLS
// inside, so the tunnel server relays ciphertext only. ctx bounds the
// set-up only. A refusal is an *Error (errors.Is with &Error{Code: ...});
// a stream the server closes because it is stopping returns an error
// matching ErrServerLeaving from Read or Write, one it closes for
// inactivity ErrIdle.
func (t *Tunnel) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if _, _, err := ParseTarget(addr); err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+t.d.Token)
	h.Set(HeaderTarget, addr)
	ws, resp, err := websocket.Dial(ctx, t.tunnel, &websocket.DialOptions{
		HTTPClient:      t.client,
		HTTPHeader:      h,
		Subprotocols:    []string{Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, DecodeError(resp.StatusCode, resp.Body)
		}
		return nil, fmt.Errorf("tunnel: dial %s via %s: %w", addr, t.Endpoint.URL, err)
	}
	if ws.Subprotocol() != Subprotocol {
		_ = ws.Close(websocket.StatusProtocolError, "subprotocol")
		return nil, fmt.Errorf("tunnel: server did not accept %s", Subprotocol)
	}
	sctx, cancel := context.WithCancel(context.Background())
	return &conn{Conn: websocket.NetConn(sctx, ws, websocket.MessageBinary), cancel: cancel}, nil
}

// conn is a tunnelled stream: websocket.NetConn with writes split into
// MaxMessage messages and close codes mapped to typed errors.
type conn struct {
	net.Conn
	cancel context.CancelFunc
}

// Read reads stream bytes; see Tunnel.Dial for the errors.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	return n, mapErr(err)
}

// Write writes p as one or more binary messages of at most MaxMessage.
func (c *conn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := c.Conn.Write(p[done:min(len(p), done+MaxMessage)])
		done += n
		if err != nil {
			return done, mapErr(err)
		}
	}
	return done, nil
}

// Close closes the stream (close code 1000). Idempotent.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.cancel()
	return err
}

// mapErr wraps the typed errors for the server's close codes.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	switch websocket.CloseStatus(err) {
	case CloseLeaving, websocket.StatusGoingAway:
		return fmt.Errorf("%w: %w", ErrServerLeaving, err)
	case CloseIdle:
		return fmt.Errorf("%w: %w", ErrIdle, err)
	}
	return err
}
