package connect

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Proxy sources, as reported in ProxyReport.Source.
const (
	ProxyNone   = "none"
	ProxyFlag   = "flag"   // Config.Proxy
	ProxyEnv    = "env"    // HTTPS_PROXY / NO_PROXY
	ProxyPAC    = "pac"    // Config.PAC
	ProxyLookup = "lookup" // the web tier saw the lookup arrive through a proxy
)

// proxyResolver decides, per destination, whether a TCP connection goes
// through an HTTP proxy (CONNECT) and which. It is built once per Connect
// (the environment is read then, never cached across calls) and is safe
// for concurrent use.
type proxyResolver struct {
	explicit *url.URL
	env      *httpproxy.Config
	envFunc  func(*url.URL) (*url.URL, error)
	pac      *pac
}

// newProxyResolver reads the environment with getenv (os.Getenv) and
// fetches the PAC file, if any, directly (bounded by ctx).
func newProxyResolver(ctx context.Context, cfg *Config) (*proxyResolver, error) {
	p := &proxyResolver{}
	if cfg.Proxy != "" {
		u, err := parseProxyURL(cfg.Proxy)
		if err != nil {
			return nil, fmt.Errorf("proxy %q: %w", cfg.Proxy, err)
		}
		p.explicit = u
	}
	if !cfg.NoEnvProxy {
		env := &httpproxy.Config{
			HTTPProxy:  firstEnv(cfg.Getenv, "HTTP_PROXY", "http_proxy"),
			HTTPSProxy: firstEnv(cfg.Getenv, "HTTPS_PROXY", "https_proxy"),
			NoProxy:    firstEnv(cfg.Getenv, "NO_PROXY", "no_proxy"),
		}
		if env.HTTPSProxy != "" {
			p.env, p.envFunc = env, env.ProxyFunc()
		}
	}
	if cfg.PAC != "" {
		script, err := fetchPAC(ctx, cfg.PAC)
		if err != nil {
			return nil, fmt.Errorf("PAC %s: %w", cfg.PAC, err)
		}
		if p.pac, err = newPAC(script, time.Now); err != nil {
			return nil, fmt.Errorf("PAC %s: %w", cfg.PAC, err)
		}
	}
	return p, nil
}

func firstEnv(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func parseProxyURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q not supported (an http:// proxy speaking CONNECT)", u.Scheme)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "3128")
	}
	return u, nil
}

// fetchPAC reads a PAC file from an http(s):// or file:// URL.
func fetchPAC(ctx context.Context, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return "", err
	}
	t := &http.Transport{Proxy: nil}
	defer t.CloseIdleConnections()
	if u.Scheme == "file" {
		t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPAC+1))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// configured reports whether any source may name a proxy.
func (p *proxyResolver) configured() bool {
	return p.explicit != nil || p.env != nil || p.pac != nil
}

// forAddr returns the proxy for a TLS connection to hostport (nil:
// direct) and which source decided: the explicit proxy, else the
// environment (HTTPS_PROXY unless NO_PROXY matches), else the PAC file.
func (p *proxyResolver) forAddr(hostport string) (*url.URL, string, error) {
	if p.explicit != nil {
		return p.explicit, ProxyFlag, nil
	}
	target := &url.URL{Scheme: "https", Host: hostport, Path: "/"}
	if p.env != nil {
		u, err := p.fromEnv(target)
		if err != nil {
			return nil, ProxyEnv, err
		}
		return u, ProxyEnv, nil // NO_PROXY says direct: the PAC file is not asked
	}
	if p.pac != nil {
		ans, err := p.pac.find(target)
		if err != nil {
			return nil, ProxyPAC, err
		}
		u, err := parsePACResult(ans)
		return u, ProxyPAC, err
	}
	return nil, ProxyNone, nil
}

// fromEnv is httpproxy's decision, except that loopback and localhost
// destinations are proxied too (httpproxy never proxies them; tests and
// a proxy on the same machine need it) unless NO_PROXY names them.
func (p *proxyResolver) fromEnv(target *url.URL) (*url.URL, error) {
	host := target.Hostname()
	ip, err := netip.ParseAddr(host)
	if host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return p.envFunc(target)
	}
	for _, e := range strings.Split(p.env.NoProxy, ",") {
		e = strings.TrimSpace(strings.ToLower(e))
		if e == "" {
			continue
		}
		if e == "*" {
			return nil, nil
		}
		if pfx, err := netip.ParsePrefix(e); err == nil && ip.IsValid() && pfx.Contains(ip) {
			return nil, nil
		}
		if h, port, err := net.SplitHostPort(e); err == nil {
			if h == host && port == target.Port() {
				return nil, nil
			}
			continue
		}
		if e == host {
			return nil, nil
		}
	}
	return parseProxyURL(p.env.HTTPSProxy)
}

// dialer opens TCP connections, through the proxy its resolver names for
// each destination (HTTP CONNECT, RFC 9110 §9.3.6) or directly.
type dialer struct {
	proxies *proxyResolver
	onProxy func(addr string, proxy *url.URL) // told of every proxied dial
	// tunnel, when set, carries every connection (the HTTP tunnel path):
	// the proxy decision was made for the tunnel server instead.
	tunnel func(ctx context.Context, addr string) (net.Conn, error)
	local  netip.Addr // Config.LocalAddr: the source of direct connections
}

func (d *dialer) netDialer() *net.Dialer {
	nd := &net.Dialer{}
	if d != nil && d.local.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: d.local.AsSlice(), Zone: d.local.Zone()}
	}
	return nd
}

// DialContext has net.Dialer's signature.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.tunnel != nil {
		return d.tunnel(ctx, addr)
	}
	var proxy *url.URL
	if d.proxies != nil {
		var err error
		if proxy, _, err = d.proxies.forAddr(addr); err != nil {
			return nil, err
		}
	}
	if proxy == nil {
		return d.netDialer().DialContext(ctx, network, addr)
	}
	if d.onProxy != nil {
		d.onProxy(addr, proxy)
	}
	return dialConnect(ctx, d.netDialer(), proxy, addr)
}

// connectTimeout bounds the CONNECT exchange when ctx has no deadline.
const connectTimeout = 10 * time.Second

// dialConnect opens a tunnel to addr through the HTTP proxy with CONNECT.
func dialConnect(ctx context.Context, nd *net.Dialer, proxy *url.URL, addr string) (net.Conn, error) {
	c, err := nd.DialContext(ctx, "tcp", proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	deadline := time.Now().Add(connectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)) + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, ctxOr(ctx, fmt.Errorf("proxy %s: CONNECT %s: %w", proxy.Host, addr, err))
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, ctxOr(ctx, fmt.Errorf("proxy %s: CONNECT %s: %w", proxy.Host, addr, err))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("proxy %s: CONNECT %s: %s", proxy.Host, addr, resp.Status)
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	_ = c.SetDeadline(time.Time{})
	if br.Buffered() > 0 { // the server spoke first (TLS does not; be safe)
		return &bufConn{Conn: c, r: br}, nil
	}
	return c, nil
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// bufConn is a connection whose first bytes were read ahead.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }
