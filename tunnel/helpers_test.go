package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/tlsutil"
)

var testSecret = []byte("tunnel-test-secret-0123456789")

// mint returns a join token for identity valid for ttl (negative: expired).
func mint(t testing.TB, secret []byte, identity string, ttl time.Duration) string {
	t.Helper()
	tok, err := token.Mint(secret, token.Claims{Meeting: "1234567890", Identity: identity, Role: token.Participant, Expiry: time.Now().Add(ttl)})
	require.NoError(t, err)
	return tok
}

// testServer is a running tunnel server on loopback.
type testServer struct {
	*Server
	addr string
	ep   Endpoint
	logs *lockedBuffer
}

// startServer runs a Server on 127.0.0.1:0 with cfg (Secret and Log filled
// in when empty) and closes it when the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	return startServerAt(t, cfg, "127.0.0.1:0")
}

// startServerAt is startServer listening on addr.
func startServerAt(t testing.TB, cfg Config, addr string) *testServer {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = testSecret
	}
	logs := &lockedBuffer{}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := NewServer(cfg)
	require.NoError(t, err)
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln, cert) }()
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	addr = ln.Addr().String()
	return &testServer{Server: s, addr: addr, logs: logs,
		ep: Endpoint{URL: "https://" + addr + PathTunnel, Fingerprint: tlsutil.Fingerprint(cert)}}
}

// echoALPN is the protocol the test's TLS endpoints speak inside the tunnel.
const echoALPN = "openmmr-test/1"

// tlsEcho is a TLS server with ALPN that echoes what it receives and keeps
// the plaintext for the test to check.
type tlsEcho struct {
	addr string
	fp   string
	cfg  *tls.Config

	mu    sync.Mutex
	plain bytes.Buffer
	alpn  []string
}

// startEcho runs a TLS echo on 127.0.0.1:0 until the test ends. handler,
// when not nil, replaces the echo for each connection.
func startEcho(t testing.TB, handler func(c *tls.Conn)) *tlsEcho {
	t.Helper()
	return startEchoAt(t, "127.0.0.1:0", handler)
}

// startEchoAt is startEcho listening on addr.
func startEchoAt(t testing.TB, addr string, handler func(c *tls.Conn)) *tlsEcho {
	t.Helper()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	e := &tlsEcho{fp: tlsutil.Fingerprint(cert)}
	e.cfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{echoALPN}, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	e.addr = ln.Addr().String()
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					_ = c.Close()
				}()
				tc := tls.Server(c, e.cfg)
				if tc.Handshake() != nil {
					return
				}
				e.mu.Lock()
				e.alpn = append(e.alpn, tc.ConnectionState().NegotiatedProtocol)
				e.mu.Unlock()
				if handler != nil {
					handler(tc)
					return
				}
				buf := make([]byte, 32<<10)
				for {
					n, err := tc.Read(buf)
					if n > 0 {
						e.mu.Lock()
						if e.plain.Len() < 1<<20 {
							e.plain.Write(buf[:n])
						}
						e.mu.Unlock()
						if _, err := tc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return e
}

// clientTLS wraps a tunnelled stream in TLS to the echo, pinned, with ALPN.
func (e *tlsEcho) clientTLS(t testing.TB, c net.Conn) *tls.Conn {
	t.Helper()
	cfg, err := tlsutil.PinnedClientConfig(e.fp)
	require.NoError(t, err)
	cfg.NextProtos = []string{echoALPN}
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, tc.HandshakeContext(ctx))
	require.Equal(t, echoALPN, tc.ConnectionState().NegotiatedProtocol)
	return tc
}

// roundTrip writes msg and reads it back within 20 s.
func roundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err := c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	require.NoError(t, c.SetDeadline(time.Time{}))
}

// tap is a TCP forwarder that records every byte it relays, both ways.
type tap struct {
	addr string
	mu   sync.Mutex
	seen bytes.Buffer
}

func (p *tap) record(b []byte) {
	p.mu.Lock()
	p.seen.Write(b)
	p.mu.Unlock()
}

func (p *tap) bytes() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.seen.Bytes())
}

// startTap forwards 127.0.0.1:0 to target until the test ends; delay, when
// positive, holds each new connection that long before forwarding (a slow
// path).
func startTap(t testing.TB, target string, delay time.Duration) *tap {
	t.Helper()
	return startTapAt(t, "127.0.0.1:0", target, delay)
}

// startTapAt is startTap listening on addr.
func startTapAt(t testing.TB, addr, target string, delay time.Duration) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	p := &tap{addr: ln.Addr().String()}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-stop:
			_ = c.Close()
			return false
		default:
		}
		conns[c] = struct{}{}
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !track(c) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if delay > 0 {
					select {
					case <-time.After(delay): // the injected latency
					case <-stop:
						return
					}
				}
				u, err := net.Dial("tcp", target)
				if err != nil || !track(u) {
					return
				}
				defer u.Close()
				pipe := func(dst, src net.Conn) {
					buf := make([]byte, 32<<10)
					for {
						n, err := src.Read(buf)
						if n > 0 {
							p.record(buf[:n])
							if _, err := dst.Write(buf[:n]); err != nil {
								break
							}
						}
						if err != nil {
							break
						}
					}
					_ = dst.Close()
					_ = src.Close()
				}
				wg.Add(1)
				go func() { defer wg.Done(); pipe(u, c) }()
				pipe(c, u)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		close(stop)
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return p
}

// waitFor polls cond every 10 ms until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// refusal returns the *Error err carries, failing the test otherwise.
func refusal(t testing.TB, err error) *Error {
	t.Helper()
	var e *Error
	require.True(t, errors.As(err, &e), "want *tunnel.Error, got %v", err)
	return e
}
