package edge

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/tlsutil"
)

// floodEdge serves an edge whose default route writes "ok", on cfg.
func floodEdge(t *testing.T, cfg Config) (*Edge, *tls.Config) {
	t.Helper()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := Listen("127.0.0.1:0", "-tls")
	require.NoError(t, err)
	cfg.TLS = tlsutil.ServerConfig(cert)
	e, err := New(ln, cfg)
	require.NoError(t, err)
	e.Handle("", func(c net.Conn) {
		_, _ = c.Write([]byte("ok"))
		c.Close()
	})
	served := make(chan error, 1)
	go func() { served <- e.Serve() }()
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		require.NoError(t, <-served)
	})
	cli, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	return e, cli
}

// dialFrom opens a TCP connection to the edge from source address src.
func dialFrom(src string, e *Edge) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}
	return d.Dial("tcp", e.Addr().String())
}

// join completes a TLS handshake from src and reads the route's answer.
func join(src string, e *Edge, cli *tls.Config) error {
	c, err := dialFrom(src, e)
	if err != nil {
		return err
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	b, err := io.ReadAll(tc)
	if err == nil && string(b) != "ok" {
		return io.ErrUnexpectedEOF
	}
	return err
}

// TestOneSourceFloodCannotLockOthersOut: 1,100 silent connections from
// 127.0.0.1 (more than the edge's 1,024 handshake slots) must not stop
// 127.0.0.2 from joining, with the edge's defaults.
func TestOneSourceFloodCannotLockOthersOut(t *testing.T) {
	leaktest.Check(t)
	e, cli := floodEdge(t, Config{})
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range DefaultMaxHandshakes + 76 {
		c, err := dialFrom("127.0.0.1", e)
		require.NoError(t, err)
		flood = append(flood, c)
		// Half a ClientHello on some: a trickle holds a slot like silence.
		if len(flood)%2 == 0 {
			_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x02})
		}
	}
	require.Eventually(t, func() bool { return e.Stats().Accepted >= uint64(len(flood)) }, 10*time.Second, 5*time.Millisecond)
	for i := range 20 {
		require.NoError(t, join("127.0.0.2", e, cli), "join %d from another source during the flood", i)
	}
	st := e.Stats()
	require.GreaterOrEqual(t, st.RefusedSource, uint64(len(flood)-DefaultMaxHandshakesPerSource), "the flood beyond its share is refused")
	require.Zero(t, st.Refused, "the global cap was never reached")
}

// TestHandshakeDeadlineUnderPressure: once half the slots are taken, a
// silent connection is cut at PressureTimeout, not HandshakeTimeout.
func TestHandshakeDeadlineUnderPressure(t *testing.T) {
	leaktest.Check(t)
	e, cli := floodEdge(t, Config{MaxHandshakes: 16, MaxHandshakesPerSource: 4, HandshakeTimeout: time.Minute, PressureTimeout: 200 * time.Millisecond})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// 8 of 16 slots from four sources, under their share, at the long deadline.
	for i := range 8 {
		c, err := dialFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i/2)}).String(), e)
		require.NoError(t, err)
		held = append(held, c)
	}
	require.Eventually(t, func() bool { return e.Stats().Accepted == 8 }, 10*time.Second, 5*time.Millisecond)
	silent, err := dialFrom("127.0.0.9", e)
	require.NoError(t, err)
	defer silent.Close()
	start := time.Now()
	_ = silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(silent)
	require.NoError(t, err, "closed by the edge")
	require.Less(t, time.Since(start), 30*time.Second)
	require.NoError(t, join("127.0.0.10", e, cli), "a real client still joins under pressure")
	require.Equal(t, uint64(1), e.Stats().HandshakeFailed, "the held connections are still waiting (long deadline)")
}
