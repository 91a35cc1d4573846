package sniff

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/tlsutil"
)

// TestRoute over real TLS without ALPN: an HTTP request reaches an
// http.Server through the Listener, a length-prefixed frame reaches the
// other handler with every byte intact.
func TestRoute(t *testing.T) {
	leaktest.Check(t)
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	tl, err := tls.Listen("tcp", "127.0.0.1:0", tlsutil.ServerConfig(cert))
	require.NoError(t, err)
	defer tl.Close()

	hl := NewListener(tl.Addr())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello "+r.URL.Path) }), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(hl) }()
	others := make(chan []byte, 1)
	rt := New(hl.Deliver, func(c net.Conn) {
		defer c.Close()
		b := make([]byte, 8)
		_, err := io.ReadFull(c, b)
		require.NoError(t, err)
		_, _ = c.Write([]byte("ok"))
		others <- b
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					tc.Close()
					return
				}
				rt.Route(tc)
			}()
		}
	}()
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", tl.Addr().String(), pin) // no ALPN
		require.NoError(t, err)
		require.Equal(t, "", c.ConnectionState().NegotiatedProtocol)
		return c
	}

	c := dial()
	_, err = io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, "hello /x", string(body))
	c.Close()

	c = dial()
	frame := []byte{0, 0, 0, 4, 'a', 'b', 'c', 'd'}
	_, err = c.Write(frame)
	require.NoError(t, err)
	require.Equal(t, frame, <-others)
	ok := make([]byte, 2)
	_, err = io.ReadFull(c, ok)
	require.NoError(t, err)
	c.Close()

	// Silent and closing clients are dropped and counted.
	c = dial()
	c.Close()
	require.Eventually(t, func() bool { return rt.Stats().Failed == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, Stats{HTTP: 1, Other: 1, Failed: 1}, rt.Stats())

	require.NoError(t, srv.Close())
	require.ErrorIs(t, <-served, http.ErrServerClosed)
	hl.Close()
	hl.Close()
	tl.Close()
	<-done
}

func TestIsHTTP(t *testing.T) {
	leaktest.Check(t)
	for _, m := range []string{"GET", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "PUT", "PRI"} {
		require.True(t, IsHTTP(m[0]), m)
	}
	for _, b := range []byte{0x00, 0x01, 0x16, 'g', ' '} {
		require.False(t, IsHTTP(b))
	}
}
