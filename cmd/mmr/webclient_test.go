package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/webclient"
	"github.com/openmmr/mmr/wire"
)

// TestOneBoxWebClient: the one-box node serves the web client's page at /
// and /j/ID with its modules, and its two WebSocket endpoints work through
// the shared TLS port: the control WebSocket joins with the lookup's token
// and a media WebSocket binds with the media token.
func TestOneBoxWebClient(t *testing.T) {
	leaktest.Check(t)
	n, state, _ := startNode(t)
	addr := addrPort(n.edge.Addr()).String()
	var fm firstMeeting
	b, err := os.ReadFile(filepath.Join(state, firstMeetingFile))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &fm))
	pin, err := tlsutil.PinnedClientConfig(n.fp)
	require.NoError(t, err)
	tr := &http.Transport{TLSClientConfig: pin.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	get := func(path string) (string, *http.Response) {
		resp, err := hc.Get("https://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		return string(b), resp
	}
	page, resp := get("/")
	require.Contains(t, page, `/static/app.js`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	page, _ = get("/j/" + fm.ID)
	require.Contains(t, page, `id="join-form"`)
	js, resp := get("/static/srtp.js")
	require.Contains(t, js, "AES-GCM")
	require.Contains(t, resp.Header.Get("Content-Type"), "javascript")

	body := `{"meeting_id":"` + fm.ID + `","passcode":"` + fm.Passcode + `","name":"Web"}`
	resp, err = hc.Post("https://"+addr+"/v1/lookup", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var lk struct {
		JoinToken string `json:"join_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&lk))
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h1 := &http.Transport{TLSClientConfig: pin.Clone()} // WebSockets are HTTP/1.1
	defer h1.CloseIdleConnections()
	dial := func(path, proto string) *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "wss://"+addr+path, &websocket.DialOptions{HTTPClient: &http.Client{Transport: h1}, Subprotocols: []string{proto}})
		require.NoError(t, err, path)
		return c
	}
	cw := dial("/v1/ws/control", webclient.ControlProtocol)
	defer cw.CloseNow()
	call := func(m string) map[string]any {
		require.NoError(t, cw.Write(ctx, websocket.MessageText, []byte(m)))
		for {
			_, b, err := cw.Read(ctx)
			require.NoError(t, err)
			var r map[string]any
			require.NoError(t, json.Unmarshal(b, &r))
			if r["type"] != "ping" {
				return r
			}
		}
	}
	require.Equal(t, "welcome", call(`{"type":"hello","id":1,"body":{"versions":[1]}}`)["type"])
	j := call(`{"type":"join","id":2,"body":{"meeting":"` + fm.ID + `","token":"` + lk.JoinToken + `"}}`)
	require.Equal(t, "joined", j["type"], "%v", j)
	tok, err := wire.ParseToken(j["body"].(map[string]any)["media_token"].(string))
	require.NoError(t, err)

	mw := dial("/v1/ws/media", webclient.MediaProtocol)
	defer mw.CloseNow()
	bind := make([]byte, wire.BindSize)
	sb := wire.Bind{Kind: media.Audio, TxID: 5}
	now := time.Now()
	sb.Sign(tok, uint64(now.UnixMicro()), now)
	_, err = sb.MarshalTo(bind)
	require.NoError(t, err)
	require.NoError(t, mw.Write(ctx, websocket.MessageBinary, bind))
	_, ack, err := mw.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, wire.ClassBindAck, wire.Classify(ack))
	require.Equal(t, int64(2), n.web.wc.Stats().Open)
	require.Equal(t, "ok", call(`{"type":"leave","id":3}`)["type"])
}
