package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// TestTunnelTLSEndToEnd tunnels a TLS connection with ALPN to a real TLS
// server: the bytes the tunnel server relays towards the destination (seen
// by a tap between them) never contain the marker both ends exchange
// inside TLS, which the echo did receive in the clear.
func TestTunnelTLSEndToEnd(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	tp := startTap(t, echo.addr, 0)
	srv := startServer(t, Config{Zones: []string{tp.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	d := &Dialer{Token: mint(t, testSecret, "alice", time.Hour)}
	tun, err := d.Pick(ctx, []Endpoint{srv.ep})
	require.NoError(t, err)
	require.Equal(t, "ht", tun.Server.Server)
	c, err := tun.Dial(ctx, tp.addr)
	require.NoError(t, err)
	tc := echo.clientTLS(t, c)
	marker := []byte("MARKER-inside-tls-7d1f3c")
	roundTrip(t, tc, marker)
	big := bytes.Repeat([]byte("0123456789abcdef"), 8192) // 128 KiB: several messages
	roundTrip(t, tc, big)
	require.NoError(t, tc.Close())

	echo.mu.Lock()
	require.True(t, bytes.Contains(echo.plain.Bytes(), marker), "the echo got the marker")
	require.Equal(t, []string{echoALPN}, echo.alpn)
	echo.mu.Unlock()
	seen := tp.bytes()
	require.Greater(t, len(seen), len(big), "the tap relayed the stream")
	require.False(t, bytes.Contains(seen, marker), "the tunnel relayed plaintext")
	waitFor(t, "stream end", func() bool { return srv.Stats().Streams == 0 })
	st := srv.Stats()
	require.Equal(t, uint64(1), st.Opened)
	require.Equal(t, uint64(1), st.Pings)
	require.Equal(t, uint64(1), st.Ended[EndClient]+st.Ended[EndUpstream])
	require.GreaterOrEqual(t, st.BytesUp, uint64(len(big)))
	require.GreaterOrEqual(t, st.BytesDown, uint64(len(big)))
}

// TestPick pings a dead tunnel (closed port), a slow one (10 s injected
// before its connections are forwarded) and a fast one: Pick returns the
// fast one without waiting for the slow one, whose ping it cancels.
func TestPick(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	fast := startServer(t, Config{Name: "fast", Zones: []string{echo.addr}})
	slowSrv := startServer(t, Config{Name: "slow", Zones: []string{echo.addr}})
	slow := startTap(t, slowSrv.addr, 10*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	eps := []Endpoint{
		{URL: "https://" + dead + PathTunnel, Fingerprint: fast.ep.Fingerprint},
		{URL: "https://" + slow.addr + PathTunnel, Fingerprint: slowSrv.ep.Fingerprint},
		fast.ep,
	}
	d := &Dialer{Token: mint(t, testSecret, "bob", time.Hour)}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		list := []Endpoint{eps[order[0]], eps[order[1]], eps[order[2]]}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		tun, err := d.Pick(ctx, list)
		cancel()
		require.NoError(t, err)
		require.Equal(t, "fast", tun.Server.Server)
		require.Equal(t, fast.ep, tun.Endpoint)
		require.Less(t, time.Since(start), 10*time.Second, "Pick waited for the slow tunnel")
	}
	require.Zero(t, slowSrv.Stats().Pings, "the slow pings were cancelled before reaching the server")

	// All dead or refusing: every error is reported.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = (&Dialer{Token: "forged"}).Pick(ctx, []Endpoint{eps[0], fast.ep})
	require.Error(t, err)
	require.ErrorIs(t, err, &Error{Code: CodeTokenInvalid})
	require.Contains(t, err.Error(), dead)
}

// TestAuth refuses missing, malformed, forged and expired tokens on the
// ping and on the upgrade with 401 and the JSON error code, each counted.
func TestAuth(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}})
	cases := []struct {
		name, token, code string
		why               Refusal
	}{
		{"missing", "", CodeTokenMissing, RefusedTokenMissing},
		{"malformed", "not a token", CodeTokenMissing, RefusedTokenMissing},
		{"garbage", "AAAA", CodeTokenInvalid, RefusedTokenInvalid},
		{"forged", mint(t, []byte("some-other-secret-0123456789"), "eve", time.Hour), CodeTokenInvalid, RefusedTokenInvalid},
		{"expired", mint(t, testSecret, "late", -time.Minute), CodeTokenExpired, RefusedTokenExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats().Refused[tc.why]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tun, err := (&Dialer{Token: tc.token}).Open(srv.ep)
			require.NoError(t, err)
			_, _, err = tun.Ping(ctx)
			e := refusal(t, err)
			require.Equal(t, http.StatusUnauthorized, e.Status)
			require.Equal(t, tc.code, e.Code)
			require.NotEmpty(t, e.Message)
			_, err = tun.Dial(ctx, echo.addr)
			e = refusal(t, err)
			require.Equal(t, http.StatusUnauthorized, e.Status)
			require.Equal(t, tc.code, e.Code)
			require.Equal(t, before+2, srv.Stats().Refused[tc.why])
		})
	}
	require.Zero(t, srv.Stats().Opened)
	require.Contains(t, srv.logs.String(), "token-expired")
}

// fakeResolver maps names to addresses; the second answer for "rebind"
// differs from the first.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// TestNotOpenRelay: destinations outside the zones - another live port on
// the same host, a name resolving to a non-zone address, an unresolvable
// name - are refused (403 or 502), counted and logged, with the log rate
// limited; a zone name resolving to the zone address is served.
func TestNotOpenRelay(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	other := startEcho(t, nil) // live, not a zone address
	_, zport, _ := net.SplitHostPort(echo.addr)
	_, oport, _ := net.SplitHostPort(other.addr)
	res := fakeResolver{
		"zone.test":   {netip.MustParseAddr("127.0.0.1")},
		"evil.test":   {netip.MustParseAddr("127.0.0.1")}, // resolves to a zone IP, port not allowed below
		"inside.test": {netip.MustParseAddr("10.1.2.3")},
	}
	srv := startServer(t, Config{Zones: []string{"zone.test:" + zport}, Resolver: res, LogRate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "mallory", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)

	for _, tc := range []struct {
		target string
		status int
		code   string
		why    Refusal
	}{
		{other.addr, http.StatusForbidden, CodeTargetNotAllowed, RefusedNotAllowed},
		{"evil.test:" + oport, http.StatusForbidden, CodeTargetNotAllowed, RefusedNotAllowed},
		{"inside.test:" + zport, http.StatusForbidden, CodeTargetNotAllowed, RefusedNotAllowed},
		{"127.0.0.2:" + zport, http.StatusForbidden, CodeTargetNotAllowed, RefusedNotAllowed},
		{"nowhere.test:443", http.StatusBadGateway, CodeDialFailed, RefusedDialFailed},
	} {
		t.Run(tc.target, func(t *testing.T) {
			before := srv.Stats().Refused[tc.why]
			_, err := tun.Dial(ctx, tc.target)
			e := refusal(t, err)
			require.Equal(t, tc.status, e.Status)
			require.Equal(t, tc.code, e.Code)
			require.Equal(t, before+1, srv.Stats().Refused[tc.why])
		})
	}
	require.Contains(t, srv.logs.String(), "target-not-allowed")
	require.Contains(t, srv.logs.String(), other.addr)

	// A bad target header never reaches the resolver.
	hdr := http.Header{"Authorization": {"Bearer " + tun.d.Token}}
	resp := rawUpgrade(t, srv, hdr, "no-port")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.ErrorIs(t, DecodeError(resp.StatusCode, resp.Body), &Error{Code: CodeBadTarget})
	require.NoError(t, resp.Body.Close())

	// Flood: the log is rate limited, the refusals all counted.
	for range 30 {
		_, err := tun.Dial(ctx, other.addr)
		require.ErrorIs(t, err, &Error{Code: CodeTargetNotAllowed})
	}
	st := srv.Stats()
	require.Equal(t, uint64(34), st.Refused[RefusedNotAllowed])
	require.Greater(t, st.LogDropped, uint64(0))
	require.Less(t, strings.Count(srv.logs.String(), "target-not-allowed"), 30)

	// The zone by name works.
	c, err := tun.Dial(ctx, "zone.test:"+zport)
	require.NoError(t, err)
	tc := echo.clientTLS(t, c)
	roundTrip(t, tc, []byte("hello zone"))
	require.NoError(t, tc.Close())
}

// rawUpgrade sends a hand-made upgrade request with hdr and target.
func rawUpgrade(t *testing.T, srv *testServer, hdr http.Header, target string) *http.Response {
	t.Helper()
	tun, err := (&Dialer{}).Open(srv.ep)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodGet, srv.ep.URL, nil)
	require.NoError(t, err)
	req.Header = hdr.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", Subprotocol)
	req.Header.Set(HeaderTarget, target)
	resp, err := tun.client.Do(req)
	require.NoError(t, err)
	return resp
}

// TestStreamLimits: the per-client stream cap refuses with 429 while
// another identity from the same address is still served, and the slot
// comes back when a stream closes.
func TestStreamLimits(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}, StreamsPerClient: 2, StreamsPerAddr: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := (&Dialer{Token: mint(t, testSecret, "a", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	b, err := (&Dialer{Token: mint(t, testSecret, "b", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	var open []net.Conn
	for range 2 {
		c, err := a.Dial(ctx, echo.addr)
		require.NoError(t, err)
		open = append(open, c)
	}
	_, err = a.Dial(ctx, echo.addr)
	e := refusal(t, err)
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Equal(t, CodeTooManyStreams, e.Code)
	require.Equal(t, uint64(1), srv.Stats().Refused[RefusedClientStreams])

	c, err := b.Dial(ctx, echo.addr) // third from this address
	require.NoError(t, err)
	open = append(open, c)
	_, err = b.Dial(ctx, echo.addr)
	require.ErrorIs(t, err, &Error{Code: CodeTooManyStreams})
	require.Equal(t, uint64(1), srv.Stats().Refused[RefusedAddrStreams])

	require.NoError(t, open[0].Close())
	waitFor(t, "slot released", func() bool { return srv.Stats().Streams == 2 })
	c, err = a.Dial(ctx, echo.addr)
	require.NoError(t, err)
	open = append(open, c)
	for _, c := range open[1:] {
		require.NoError(t, c.Close())
	}
}

// TestIdleStream: a stream that moves nothing is closed with code 4000 and
// the client's Read reports ErrIdle; the end is counted.
func TestIdleStream(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}, IdleTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "idle", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	c, err := tun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, ErrIdle)
	waitFor(t, "idle end counted", func() bool { return srv.Stats().Ended[EndIdle] == 1 })
}

// TestShutdownLeaving: Shutdown closes open streams with 1012, which the
// client sees as ErrServerLeaving at once; new pings and streams are
// refused.
func TestShutdownLeaving(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "carol", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	var conns []net.Conn
	for range 3 {
		c, err := tun.Dial(ctx, echo.addr)
		require.NoError(t, err)
		defer c.Close()
		conns = append(conns, echo.clientTLS(t, c))
	}
	roundTrip(t, conns[0], []byte("before"))
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, ErrServerLeaving)
	}
	require.Less(t, time.Since(start), 15*time.Second, "clients learnt at once, not by the 60 s idle timeout")
	require.NoError(t, <-done)
	require.Equal(t, uint64(3), srv.Stats().Ended[EndLeaving])
	_, _, err = tun.Ping(ctx)
	require.Error(t, err) // listener closed
	require.Equal(t, uint64(0), srv.Stats().Ended[EndIdle])
}

// TestLeavingRefusal: while leaving, a request on an open keep-alive path
// would get 503 "leaving", which also matches ErrServerLeaving.
func TestLeavingRefusal(t *testing.T) {
	err := DecodeError(http.StatusServiceUnavailable, strings.NewReader(`{"error":{"code":"leaving","message":"bye"}}`))
	require.ErrorIs(t, err, ErrServerLeaving)
	require.ErrorIs(t, err, &Error{Code: CodeLeaving})
	err = DecodeError(http.StatusBadGateway, strings.NewReader("<html>proxy error</html>"))
	require.Equal(t, "http-502", refusal(t, err).Code)
	require.NotErrorIs(t, err, ErrServerLeaving)
}

// TestSlowReader: a client that never reads its stream while the
// destination floods it is cut by the write timeout (counted
// slow-consumer); another client's stream keeps flowing during and after.
func TestSlowReader(t *testing.T) {
	leaktest.Check(t)
	chunk := bytes.Repeat([]byte{0x5a}, 16<<10)
	flood := startEcho(t, func(c *tls.Conn) {
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{flood.addr, echo.addr}, WriteTimeout: 500 * time.Millisecond,
		BytesPerClient: 256 << 20, BytesPerAddr: 256 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	slowTun, err := (&Dialer{Token: mint(t, testSecret, "slow", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	okTun, err := (&Dialer{Token: mint(t, testSecret, "ok", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)

	good, err := okTun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	defer good.Close()
	gtc := echo.clientTLS(t, good)
	sc, err := slowTun.Dial(ctx, flood.addr)
	require.NoError(t, err)
	defer sc.Close()
	_ = flood.clientTLS(t, sc) // handshake, then never read again
	msg := []byte("media packet")
	for srv.Stats().Ended[EndSlow] == 0 {
		roundTrip(t, gtc, msg) // flows while the slow one fills up
		select {
		case <-ctx.Done():
			t.Fatalf("slow reader never cut off: %+v", srv.Stats())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for range 20 {
		roundTrip(t, gtc, msg)
	}
	require.Equal(t, int64(1), srv.Stats().Streams)
}

// TestIdleConnections: 1,000 connections that open and send nothing,
// against MaxConns 600: the excess is closed at accept (server-full), the
// rest cut by the handshake timeout (counted); a tunnelled stream opened
// before keeps flowing; heap and descriptors come back.
func TestIdleConnections(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}, MaxConns: 600, HandshakeTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "legit", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	c, err := tun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	defer c.Close()
	tc := echo.clientTLS(t, c)
	roundTrip(t, tc, []byte("first"))

	heap0 := heapInUse()
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			_ = c.Close()
		}
	}()
	for range 1000 {
		c, err := net.Dial("tcp", srv.addr)
		require.NoError(t, err)
		idle = append(idle, c)
	}
	waitFor(t, "excess refused", func() bool { return srv.Stats().Refused[RefusedServerFull] >= 1000-599 })
	grown := heapInUse() - heap0
	t.Logf("heap growth with 1000 idle connections: %d KiB", grown>>10)
	require.Less(t, grown, uint64(64<<20), "memory per idle connection is bounded")
	roundTrip(t, tc, []byte("during")) // the legitimate stream still flows
	// Closed first, counted just after (net/http's ConnState hook).
	waitFor(t, "idle ones cut", func() bool { st := srv.Stats(); return st.Conns == 1 && st.ConnTimeout == 599 })
	require.Equal(t, uint64(1000-599), srv.Stats().Refused[RefusedServerFull])
	for _, c := range idle { // the server closed them all
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, err := c.Read(make([]byte, 1))
		require.Error(t, err) // EOF or reset, never a deadline
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection %v left open", c.LocalAddr())
	}
	roundTrip(t, tc, []byte("after"))
	require.NoError(t, tc.Close())
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestByteRateLimit: an identity's streams share a token bucket of
// BytesPerClient bytes per second (both directions), so echoing 192 KiB at
// 128 KiB/s (384 KiB relayed, 128 KiB of burst) takes at least 2 s. Only
// a lower bound is asserted: load can only make it slower.
func TestByteRateLimit(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	const rate = 128 << 10
	srv := startServer(t, Config{Zones: []string{echo.addr}, BytesPerClient: rate})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "greedy", time.Hour)}).Open(srv.ep)
	require.NoError(t, err)
	c, err := tun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	tc := echo.clientTLS(t, c)
	start := time.Now()
	roundTrip(t, tc, bytes.Repeat([]byte{7}, 192<<10))
	elapsed := time.Since(start)
	t.Logf("192 KiB echoed in %v at %d B/s", elapsed, rate)
	require.GreaterOrEqual(t, elapsed, 1900*time.Millisecond)
	require.NoError(t, tc.Close())
}

// TestIdleStreams: 120 upgraded streams from 12 identities that then send
// nothing, against MaxStreams 100: 20 are refused (streams-full), the rest
// are cut by the idle timeout once the server's clock passes it; the heap
// per open stream is bounded and descriptors come back (leaktest).
func TestIdleStreams(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	var skew atomic.Int64 // the test moves the server's clock past the idle timeout
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	srv := startServer(t, Config{Zones: []string{echo.addr}, MaxStreams: 100, IdleTimeout: time.Minute, Now: now})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	heap0 := heapInUse()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	refused := 0
	for id := range 12 {
		tun, err := (&Dialer{Token: mint(t, testSecret, "idler-"+string(rune('a'+id)), time.Hour)}).Open(srv.ep)
		require.NoError(t, err)
		for range 10 {
			c, err := tun.Dial(ctx, echo.addr)
			if err != nil {
				require.ErrorIs(t, err, &Error{Code: CodeServerFull})
				refused++
				continue
			}
			conns = append(conns, c)
		}
	}
	require.Equal(t, int64(100), srv.Stats().Streams)
	t.Logf("heap per idle stream (both ends and the echo in this process): %d KiB", (heapInUse()-heap0)/100>>10)
	require.Equal(t, 20, refused)
	require.Equal(t, uint64(20), srv.Stats().Refused[RefusedStreamsFull])
	require.Zero(t, srv.Stats().Ended[EndIdle])
	skew.Store(int64(2 * time.Minute))
	waitFor(t, "idle streams cut", func() bool { return srv.Stats().Ended[EndIdle] == 100 })
	require.Zero(t, srv.Stats().Streams)
	for _, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, ErrIdle)
	}
}

// TestRootCAs: an endpoint without a fingerprint is verified against
// Dialer.RootCAs (here the server's self-signed certificate, valid for
// 127.0.0.1); without the root the TLS handshake fails.
func TestRootCAs(t *testing.T) {
	leaktest.Check(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep := Endpoint{URL: srv.ep.URL}
	tok := mint(t, testSecret, "ca", time.Hour)
	_, err := (&Dialer{Token: tok}).Pick(ctx, []Endpoint{ep})
	var uerr x509.UnknownAuthorityError
	require.ErrorAs(t, err, &uerr)

	conn, err := tls.Dial("tcp", srv.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	require.NoError(t, err)
	leaf := conn.ConnectionState().PeerCertificates[0]
	require.NoError(t, conn.Close())
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	tun, err := (&Dialer{Token: tok, RootCAs: roots}).Pick(ctx, []Endpoint{ep})
	require.NoError(t, err)
	c, err := tun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	tc := echo.clientTLS(t, c)
	roundTrip(t, tc, []byte("verified by CA"))
	require.NoError(t, tc.Close())
}
