package edge

import (
	"crypto/tls"
	"github.com/openmmr/mmr/internal/leaktest"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/tlsutil"
)

func TestRoutesByALPN(t *testing.T) {
	leaktest.Check(t)
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := Listen("127.0.0.1:0", "-tls")
	require.NoError(t, err)
	e, err := New(ln, Config{TLS: tlsutil.ServerConfig(cert), HandshakeTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	got := make(chan string, 4)
	echoName := func(name string) func(net.Conn) {
		return func(c net.Conn) {
			got <- name
			_, _ = c.Write([]byte(name))
			c.Close()
		}
	}
	e.Handle("media/1", echoName("media"))
	e.Handle("zc/1", echoName("zc"))
	ctl := e.Listener("")
	go func() {
		for {
			c, err := ctl.Accept()
			if err != nil {
				return
			}
			echoName("control")(c)
		}
	}()
	served := make(chan error, 1)
	go func() { served <- e.Serve() }()

	cli, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	for _, tc := range []struct{ alpn, want string }{{"media/1", "media"}, {"zc/1", "zc"}, {"", "control"}} {
		t.Run(tc.want, func(t *testing.T) {
			c := cli.Clone()
			if tc.alpn != "" {
				c.NextProtos = []string{tc.alpn}
			}
			conn, err := tls.Dial("tcp", ln.Addr().String(), c)
			require.NoError(t, err)
			defer conn.Close()
			b, err := io.ReadAll(conn)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
		})
	}
	// Garbage and silence are dropped after the handshake timeout.
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	_, _ = raw.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.ReadAll(raw)
	require.NoError(t, err, "closed by the server, not timed out")
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()
	_ = silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.ReadAll(silent)
	require.NoError(t, err, "a silent client is cut at the handshake timeout")

	require.NoError(t, e.Close())
	require.NoError(t, e.Close())
	require.NoError(t, <-served)
}

func TestListenErrorNamesFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), "-tls")
	require.ErrorContains(t, err, "-tls")
}
