package webclient

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// wtZone is a zone (startZone) with a WebTransport server on a UDP
// loopback port and a client configuration pinned to its certificate.
type wtZone struct {
	*zone
	wt   *WebTransport
	addr string // 127.0.0.1:PORT
	tls  *tls.Config
}

func startWTZone(t *testing.T, mod func(*WebTransportConfig), rmod func(*router.Config)) *wtZone {
	t.Helper()
	z := startZone(t, nil, rmod)
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	cfg := WebTransportConfig{Media: z.rt, TLS: tlsutil.ServerConfig(cert), Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWebTransport(cfg)
	require.NoError(t, err)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- w.Serve(pc) }()
	t.Cleanup(func() {
		require.NoError(t, w.Close())
		require.NoError(t, w.Close(), "Close is idempotent")
		require.NoError(t, <-done)
	})
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	pin.NextProtos = []string{http3.NextProtoH3}
	return &wtZone{zone: z, wt: w, addr: pc.LocalAddr().String(), tls: pin}
}

// quicClient is the test client's QUIC configuration: packets up to 1,452
// bytes (loopback's MTU is far above) so that datagrams above the server's
// 1,200-byte cap can be sent at all.
func quicClient() *quic.Config {
	return &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true, InitialPacketSize: 1452, MaxIdleTimeout: waitLimit}
}

// dialWT opens a WebTransport session at path with quic-go's own client.
func (z *wtZone) dialWT(t *testing.T, path string, hdr http.Header) (*http.Response, *webtransport.Session, error) {
	t.Helper()
	d := &webtransport.Transport{TLSClientConfig: z.tls, QUICConfig: quicClient()}
	t.Cleanup(func() { d.Close() })
	resp, s, err := d.Dial(ctxT(t), "https://"+z.addr+path, hdr)
	if s != nil {
		t.Cleanup(func() { _ = s.CloseWithError(0, "") })
	}
	return resp, s, err
}

func (z *wtZone) session(t *testing.T) *webtransport.Session {
	t.Helper()
	_, s, err := z.dialWT(t, WebTransportPath, nil)
	require.NoError(t, err)
	return s
}

// recvWT returns the next datagram.
func recvWT(t *testing.T, s *webtransport.Session) []byte {
	t.Helper()
	b, err := s.ReceiveDatagram(ctxT(t))
	require.NoError(t, err)
	return b
}

// ended waits for the server to end s.
func ended(t *testing.T, s *webtransport.Session) {
	t.Helper()
	select {
	case <-s.Context().Done():
	case <-time.After(waitLimit):
		t.Fatal("the server did not end the session")
	}
}

// refusedEventually waits for reason's count to reach n (counted by the
// server's goroutines, after the client has seen the effect).
func (z *wtZone) refusedEventually(t *testing.T, reason string, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return z.wt.Stats().Refused[reason] == n }, waitLimit, 5*time.Millisecond,
		"%s: %v", reason, z.wt.Stats().Refused)
}

// TestWebTransportInterop: a WebTransport participant (control over the
// WebSocket, media over datagrams) and a native UDP participant exchange
// RTP both ways through the real router; a repeated Bind (the page's
// retransmission) is answered with the same BindAck and not passed on.
func TestWebTransportInterop(t *testing.T) {
	leaktest.Check(t)
	z := startWTZone(t, nil, nil)
	cw := z.dial(t, "/v1/ws/control", ControlProtocol)
	jw := join(t, cw, "m1", "web")
	cn := z.dial(t, "/v1/ws/control", ControlProtocol)
	jn := join(t, cn, "m1", "native")
	until(t, cw, "participant-joined")

	s := z.session(t)
	bind := bindPacket(t, media.Video, jw.MediaToken)
	require.NoError(t, s.SendDatagram(bind))
	ack := recvWT(t, s)
	require.Equal(t, wire.ClassBindAck, wire.Classify(ack))
	var ba wire.BindAck
	require.NoError(t, ba.Unmarshal(ack))
	require.Equal(t, media.Video, ba.Kind)
	require.Equal(t, wire.StatusOK, ba.Status)
	require.NoError(t, s.SendDatagram(bind), "the page resends its Bind until a BindAck")
	require.Equal(t, ack, recvWT(t, s), "answered with the same BindAck")

	f := nativeVideo(t, z.zone, cw, cn, jn)
	// Browser to native, byte for byte.
	toNative(t, f, s.SendDatagram)

	// Native to browser: one datagram per packet, unchanged; a packet of
	// 1,200 bytes (the cap) still fits a datagram.
	for _, size := range []int{0, DefaultMaxDatagram - 12} {
		pk := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 9, SSRC: 2222}, Payload: make([]byte, size)}
		want, err := pk.Marshal()
		require.NoError(t, err)
		require.NoError(t, f.Send(want))
		require.Equal(t, want, recvWT(t, s), "%d bytes", len(want))
	}
	in, out := z.wt.Datagrams()
	require.Positive(t, in)
	require.GreaterOrEqual(t, out, uint64(4)) // two BindAcks, two RTP
	st := z.wt.Stats()
	require.Equal(t, uint64(1), st.Accepted)
	require.Equal(t, int64(1), st.Open)
	for r, n := range st.Refused {
		require.Zero(t, n, "nothing refused (%s)", r)
	}

	// The server closing ends the session and the router's stream.
	z.wt.CloseAll()
	ended(t, s)
	require.Eventually(t, func() bool { return z.wt.Stats().Open == 0 }, waitLimit, 5*time.Millisecond)
}

// TestWebTransportBadInput: every kind of bad input at the WebTransport
// endpoint is refused or dropped under its counted reason, and the server
// stays up for the next client.
func TestWebTransportBadInput(t *testing.T) {
	leaktest.Check(t)
	z := startWTZone(t, func(c *WebTransportConfig) {
		c.IdleTimeout = 500 * time.Millisecond
		c.SessionTimeout = 500 * time.Millisecond
	}, func(rc *router.Config) { rc.BindTimeout = 500 * time.Millisecond })
	cw := z.dial(t, "/v1/ws/control", ControlProtocol)
	jw := join(t, cw, "m1", "web")

	t.Run("unknown path", func(t *testing.T) {
		resp, _, err := z.dialWT(t, "/v1/wt/other", nil)
		require.Error(t, err)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		z.refusedEventually(t, CodePath, 1)
	})
	t.Run("foreign origin", func(t *testing.T) {
		resp, _, err := z.dialWT(t, WebTransportPath, http.Header{"Origin": []string{"https://evil.example"}})
		require.Error(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		z.refusedEventually(t, CodeOrigin, 1)
	})
	t.Run("plain HTTP/3 request", func(t *testing.T) {
		tr := &http3.Transport{TLSClientConfig: z.tls, QUICConfig: quicClient()}
		defer tr.Close()
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "https://"+z.addr+WebTransportPath, nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		z.refusedEventually(t, CodeNotWT, 1)
	})
	t.Run("no token", func(t *testing.T) {
		s := z.session(t)
		require.NoError(t, s.SendDatagram(rtpPkt(t, 1, 1)))
		ended(t, s)
		z.refusedEventually(t, CutNoToken, 1)
	})
	t.Run("invalid token", func(t *testing.T) {
		s := z.session(t)
		require.NoError(t, s.SendDatagram(bindPacket(t, media.Audio, "00112233445566778899aabbccddeeff")))
		ended(t, s)
		z.refusedEventually(t, CutBadToken, 1)
	})
	t.Run("oversize and empty datagrams", func(t *testing.T) {
		s := z.session(t)
		require.NoError(t, s.SendDatagram(make([]byte, DefaultMaxDatagram+1)))
		require.NoError(t, s.SendDatagram(nil))
		z.refusedEventually(t, CutTooLarge, 1)
		z.refusedEventually(t, CutEmpty, 1)
		// Dropped, not fatal: the session still binds.
		require.NoError(t, s.SendDatagram(bindPacket(t, media.Audio, jw.MediaToken)))
		require.Equal(t, wire.ClassBindAck, wire.Classify(recvWT(t, s)))
		// Then silent: cut off by the idle timeout.
		ended(t, s)
		z.refusedEventually(t, CutIdle, 1)
	})
	t.Run("session without a Bind", func(t *testing.T) {
		s := z.session(t)
		ended(t, s) // the router's bind timeout
		z.refusedEventually(t, CutIdle, 2)
	})
	t.Run("connection without a session", func(t *testing.T) {
		c, err := quic.DialAddr(ctxT(t), z.addr, z.tls, quicClient())
		require.NoError(t, err)
		defer c.CloseWithError(0, "")
		select {
		case <-c.Context().Done():
		case <-time.After(waitLimit):
			t.Fatal("a connection without a session is not closed")
		}
		z.refusedEventually(t, CutIdle, 3)
	})
	require.Eventually(t, func() bool { return z.wt.Stats().Open == 0 }, waitLimit, 5*time.Millisecond)
}

// TestWebTransportLimits: connections over the per-source cap are refused
// (counted); many idle sessions are all cut off and nothing stays open.
func TestWebTransportLimits(t *testing.T) {
	leaktest.Check(t)
	const perSource = 4
	z := startWTZone(t, func(c *WebTransportConfig) { c.MaxPerSource = perSource }, func(rc *router.Config) { rc.BindTimeout = time.Second })
	var open []*webtransport.Session
	for range perSource {
		open = append(open, z.session(t))
	}
	_, _, err := z.dialWT(t, WebTransportPath, nil)
	require.Error(t, err, "one over the per-source cap")
	var ae *quic.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, CodePerSource, ae.ErrorMessage)
	z.refusedEventually(t, CodePerSource, 1)
	for _, s := range open {
		ended(t, s) // no Bind: the router's bind timeout
	}
	z.refusedEventually(t, CutIdle, perSource)
	require.Eventually(t, func() bool { return z.wt.Stats().Open == 0 }, waitLimit, 5*time.Millisecond)
	// The slots are free again: a new connection is accepted.
	z.session(t)
}
