package webclient

import (
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

func bindPacket(t testing.TB, k media.Kind, tokHex string) []byte {
	tok, err := wire.ParseToken(tokHex)
	require.NoError(t, err)
	b := wire.Bind{Kind: k, TxID: 7}
	now := time.Now()
	b.Sign(tok, uint64(now.UnixMicro()), now)
	buf := make([]byte, wire.BindSize)
	n, err := b.MarshalTo(buf)
	require.NoError(t, err)
	return buf[:n]
}

func rtpPkt(t testing.TB, ssrc uint32, seq uint16) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc}, Payload: []byte("webclient-bridge")}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

// TestBridgeInterop: a WebSocket participant (control and media over the
// two endpoints) and a native UDP participant in one meeting exchange RTP
// both ways through the real router; the BindAck comes back over the
// media WebSocket; leave ends the control WebSocket normally.
func TestBridgeInterop(t *testing.T) {
	leaktest.Check(t)
	z := startZone(t, nil, nil)
	cw := z.dial(t, "/v1/ws/control", ControlProtocol)
	jw := join(t, cw, "m1", "web")

	// The native participant joins over the control server's own TLS path,
	// here the same server through a second WebSocket, and binds UDP.
	cn := z.dial(t, "/v1/ws/control", ControlProtocol)
	jn := join(t, cn, "m1", "native")
	until(t, cw, "participant-joined")

	mw := z.dial(t, "/v1/ws/media", MediaProtocol)
	require.NoError(t, mw.Write(ctxT(t), websocket.MessageBinary, bindPacket(t, media.Video, jw.MediaToken)))
	typ, b, err := mw.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Equal(t, wire.ClassBindAck, wire.Classify(b))
	var ack wire.BindAck
	require.NoError(t, ack.Unmarshal(b))
	require.Equal(t, media.Video, ack.Kind)

	tok, err := wire.ParseToken(jn.MediaToken)
	require.NoError(t, err)
	f, err := udpmedia.Dial(ctxT(t), z.rt.UDPAddrs()[0], media.Video, tok)
	require.NoError(t, err)
	defer f.Close()

	send(t, cw, "publish", 3, map[string]any{"kind": "video", "ssrcs": []uint32{1111}})
	require.Equal(t, "ok", until(t, cw, "ok").Type)
	send(t, cn, "publish", 3, map[string]any{"kind": "video", "ssrcs": []uint32{2222}})
	require.Equal(t, "ok", until(t, cn, "ok").Type)

	// Browser to native: the native flow receives the WebSocket's packets
	// byte for byte. Retried until the subscription is in place.
	buf := make([]byte, 1500)
	var got []byte
	for i := uint16(0); got == nil && i < 200; i++ {
		require.NoError(t, mw.Write(ctxT(t), websocket.MessageBinary, rtpPkt(t, 1111, i)))
		if n, err := f.Recv(buf, time.Now().Add(100*time.Millisecond)); err == nil {
			got = append([]byte(nil), buf[:n]...)
		}
	}
	require.NotNil(t, got, "the native flow received the browser's RTP")
	var p rtp.Packet
	require.NoError(t, p.Unmarshal(got))
	require.Equal(t, uint32(1111), p.SSRC)
	require.Equal(t, rtpPkt(t, 1111, p.SequenceNumber), got)

	// Native to browser: one message per packet, unchanged.
	want := rtpPkt(t, 2222, 9)
	require.NoError(t, f.Send(want))
	typ, b, err = mw.Read(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Equal(t, want, b)

	send(t, cw, "leave", 4, struct{}{})
	require.Equal(t, "ok", until(t, cw, "ok").Type)
	_, _, err = cw.Read(ctxT(t))
	require.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "%v", err)
	_ = hex.EncodeToString
}

// TestBadInput: every kind of bad input at the endpoints is refused before
// the upgrade or cut off after it, each under its counted reason.
func TestBadInput(t *testing.T) {
	leaktest.Check(t)
	z := startZone(t, func(c *Config) { c.MaxControlMessage = 1024 }, func(rc *router.Config) { rc.BindTimeout = time.Second })

	cut := func(path, proto string, typ websocket.MessageType, payload []byte) websocket.StatusCode {
		c := z.dial(t, path, proto)
		c.SetReadLimit(1 << 20)
		require.NoError(t, c.Write(ctxT(t), typ, payload))
		for {
			if _, _, err := c.Read(ctxT(t)); err != nil {
				return websocket.CloseStatus(err)
			}
		}
	}
	t.Run("text on media", func(t *testing.T) {
		require.Equal(t, websocket.StatusUnsupportedData, cut("/v1/ws/media", MediaProtocol, websocket.MessageText, []byte("hi")))
		require.Equal(t, uint64(1), z.h.Stats().Refused[CutWrongType])
	})
	t.Run("binary on control", func(t *testing.T) {
		require.Equal(t, websocket.StatusUnsupportedData, cut("/v1/ws/control", ControlProtocol, websocket.MessageBinary, []byte("{}")))
		require.Equal(t, uint64(2), z.h.Stats().Refused[CutWrongType])
	})
	t.Run("too large media", func(t *testing.T) {
		require.Equal(t, websocket.StatusMessageTooBig, cut("/v1/ws/media", MediaProtocol, websocket.MessageBinary, make([]byte, MaxMediaMessage+1)))
		require.Equal(t, uint64(1), z.h.Stats().Refused[CutTooLarge])
	})
	t.Run("too large control", func(t *testing.T) {
		require.Equal(t, websocket.StatusMessageTooBig, cut("/v1/ws/control", ControlProtocol, websocket.MessageText, make([]byte, 1025)))
		require.Equal(t, uint64(2), z.h.Stats().Refused[CutTooLarge])
	})
	t.Run("empty", func(t *testing.T) {
		require.Equal(t, websocket.StatusPolicyViolation, cut("/v1/ws/media", MediaProtocol, websocket.MessageBinary, nil))
		require.Equal(t, uint64(1), z.h.Stats().Refused[CutEmpty])
	})
	t.Run("media without a token", func(t *testing.T) {
		// RTP before any Bind: the router refuses the stream (stream_bind).
		before := z.rt.Stats().Drops[stats.DropStreamBind]
		st := cut("/v1/ws/media", MediaProtocol, websocket.MessageBinary, rtpPkt(t, 1, 1))
		require.Equal(t, websocket.StatusNormalClosure, st)
		require.Greater(t, z.rt.Stats().Drops[stats.DropStreamBind], before)
	})
	t.Run("media with a wrong token", func(t *testing.T) {
		st := cut("/v1/ws/media", MediaProtocol, websocket.MessageBinary, bindPacket(t, media.Audio, "00112233445566778899aabbccddeeff"))
		require.Equal(t, websocket.StatusNormalClosure, st)
	})
	t.Run("control garbage", func(t *testing.T) {
		c := z.dial(t, "/v1/ws/control", ControlProtocol)
		require.NoError(t, c.Write(ctxT(t), websocket.MessageText, []byte("not json")))
		m := next(t, c)
		require.Equal(t, "error", m.Type)
		require.Contains(t, string(m.Body), "bad-frame")
	})
	t.Run("no subprotocol", func(t *testing.T) {
		_, resp, err := websocket.Dial(ctxT(t), z.wsURL("/v1/ws/media"), nil)
		require.Error(t, err)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Equal(t, uint64(1), z.h.Stats().Refused[CodeSubprotocol])
	})
	t.Run("foreign origin", func(t *testing.T) {
		h := http.Header{"Origin": []string{"https://evil.example"}}
		_, resp, err := websocket.Dial(ctxT(t), z.wsURL("/v1/ws/control"), &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{ControlProtocol}})
		require.Error(t, err)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Equal(t, uint64(1), z.h.Stats().Refused[CodeOrigin])
	})
	t.Run("not an upgrade", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, z.srv.URL+"/v1/ws/media", nil)
		req.Header.Set("Sec-WebSocket-Protocol", MediaProtocol)
		require.Equal(t, http.StatusUpgradeRequired, httpStatus(t, req))
		require.Equal(t, uint64(1), z.h.Stats().Refused[CodeUpgrade])
	})
}

// TestIdleWebSockets: 1,000 idle media WebSockets from one address: those
// over the per-source cap are refused (counted), the rest are cut off by
// the router's bind timeout, and nothing is left open.
func TestIdleWebSockets(t *testing.T) {
	leaktest.Check(t)
	const n, perSource = 1000, 50
	z := startZone(t, func(c *Config) { c.MaxPerSource = perSource }, func(rc *router.Config) { rc.BindTimeout = time.Second })
	var (
		mu      sync.Mutex
		conns   []*websocket.Conn
		refused int
	)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, resp, err := websocket.Dial(ctxT(t), z.wsURL("/v1/ws/media"), &websocket.DialOptions{Subprotocols: []string{MediaProtocol}})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
					refused++
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	// Connections may already have been cut (bind timeout) while others
	// dialled, freeing slots: at least n - perSource... are refused only
	// if all dials finished within the timeout; assert the accounting.
	require.Equal(t, n, refused+len(conns), "every dial was accepted or refused with 503")
	require.Equal(t, uint64(refused), z.h.Stats().Refused[CodePerSource])
	require.Positive(t, refused)
	for _, c := range conns {
		_, _, err := c.Read(ctxT(t))
		require.Error(t, err, "an idle WebSocket is cut off")
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			require.Equal(t, websocket.StatusNormalClosure, ce.Code)
		}
		c.CloseNow()
	}
	require.Eventually(t, func() bool { return z.h.Stats().Open == 0 }, waitLimit, 10*time.Millisecond)
	require.GreaterOrEqual(t, z.rt.Stats().Drops[stats.DropStreamBind], uint64(len(conns)), "each cut counted by the router as stream_bind")
}
