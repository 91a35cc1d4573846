package webclient

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// waitLimit bounds every wait for something the test expects; a hang
// guard, never a measurement.
const waitLimit = 20 * time.Second

var testSecret = []byte("webclient-test-secret-0123456789")

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// zone is a real router and control server with the web client's handler
// in front of them on a plain HTTP test server.
type zone struct {
	rt  *router.Router
	ctl *control.Server
	h   *Handler
	srv *httptest.Server
}

func startZone(t testing.TB, mod func(*Config), rmod func(*router.Config)) *zone {
	t.Helper()
	rc := router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quietLogger(), SocketBuffer: 256 << 10}
	if rmod != nil {
		rmod(&rc)
	}
	rt, err := router.New(rc)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rt.Close()) })
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ctl, err := control.New(control.Config{TLS: tlsutil.ServerConfig(cert), Secret: testSecret, Logger: quietLogger(),
		Endpoints: control.UDPEndpoints(rt.UDPAddrs()), MaxConnsPerIP: 10_000, MaxConns: 10_000}, rt)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ctl.Close()) })
	cfg := Config{Control: ctl, Media: rt, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		require.NoError(t, h.Close())
		srv.Close()
	})
	return &zone{rt: rt, ctl: ctl, h: h, srv: srv}
}

func (z *zone) wsURL(path string) string { return "ws" + strings.TrimPrefix(z.srv.URL, "http") + path }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func (z *zone) dial(t testing.TB, path, proto string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctxT(t), z.wsURL(path), &websocket.DialOptions{Subprotocols: []string{proto}})
	require.NoError(t, err)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func mint(t testing.TB, meeting, identity string) string {
	tok, err := token.Mint(testSecret, token.Claims{Meeting: meeting, Identity: identity, Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	return tok
}

// msg is a control envelope as the page sends and reads it.
type msg struct {
	Type string          `json:"type"`
	ID   uint32          `json:"id,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

func send(t testing.TB, c *websocket.Conn, typ string, id uint32, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	m, err := json.Marshal(msg{Type: typ, ID: id, Body: b})
	require.NoError(t, err)
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, m))
}

// next returns the next message that is not a server ping (pings are
// answered).
func next(t testing.TB, c *websocket.Conn) msg {
	t.Helper()
	for {
		typ, b, err := c.Read(ctxT(t))
		require.NoError(t, err)
		require.Equal(t, websocket.MessageText, typ)
		var m msg
		require.NoError(t, json.Unmarshal(b, &m))
		if m.Type == "ping" {
			send(t, c, "pong", m.ID, struct{}{})
			continue
		}
		return m
	}
}

// until reads messages until one of type typ.
func until(t testing.TB, c *websocket.Conn, typ string) msg {
	t.Helper()
	for {
		if m := next(t, c); m.Type == typ {
			return m
		}
	}
}

type joined struct {
	Participant uint64 `json:"participant"`
	MediaToken  string `json:"media_token"`
	Resume      string `json:"resume"`
}

// join runs hello and join on a control WebSocket.
func join(t testing.TB, c *websocket.Conn, meeting, identity string) joined {
	t.Helper()
	send(t, c, "hello", 1, map[string]any{"versions": []int{1}, "software": "webclient-test"})
	require.Equal(t, "welcome", next(t, c).Type)
	send(t, c, "join", 2, map[string]any{"meeting": meeting, "token": mint(t, meeting, identity), "name": identity})
	m := next(t, c)
	require.Equal(t, "joined", m.Type, "%s", m.Body)
	var j joined
	require.NoError(t, json.Unmarshal(m.Body, &j))
	return j
}

// httpStatus performs a request and returns the status.
func httpStatus(t testing.TB, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// nativeVideo binds the native participant's (jn, control cn) video flow
// over UDP and publishes video: SSRC 1111 for the web participant (control
// cw), 2222 for the native one.
func nativeVideo(t testing.TB, z *zone, cw, cn *websocket.Conn, jn joined) *udpmedia.Flow {
	t.Helper()
	tok, err := wire.ParseToken(jn.MediaToken)
	require.NoError(t, err)
	f, err := udpmedia.Dial(ctxT(t), z.rt.UDPAddrs()[0], media.Video, tok)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	send(t, cw, "publish", 3, map[string]any{"kind": "video", "ssrcs": []uint32{1111}})
	require.Equal(t, "ok", until(t, cw, "ok").Type)
	send(t, cn, "publish", 3, map[string]any{"kind": "video", "ssrcs": []uint32{2222}})
	require.Equal(t, "ok", until(t, cn, "ok").Type)
	return f
}

// toNative sends the web participant's RTP (SSRC 1111) with send until
// the native flow f receives one (the subscription takes a moment), and
// checks that it arrived byte for byte.
func toNative(t testing.TB, f *udpmedia.Flow, send func([]byte) error) {
	t.Helper()
	buf := make([]byte, 1500)
	var got []byte
	for i := uint16(0); got == nil && i < 200; i++ {
		require.NoError(t, send(rtpPkt(t, 1111, i)))
		if n, err := f.Recv(buf, time.Now().Add(100*time.Millisecond)); err == nil {
			got = append([]byte(nil), buf[:n]...)
		}
	}
	require.NotNil(t, got, "the native flow received the web participant's RTP")
	var p rtp.Packet
	require.NoError(t, p.Unmarshal(got))
	require.Equal(t, uint32(1111), p.SSRC)
	require.Equal(t, rtpPkt(t, 1111, p.SequenceNumber), got)
}
