package tunnel

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"zc1.ams.example:443", "10.0.0.5:8801", "[::1]:443", "[fe80::1%eth0]:443", "host:0", "host:65536", "a..b:1", ":443", "host:", "x:01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := ParseTarget(s)
		if err != nil {
			return
		}
		require.NotZero(t, port)
		require.NotEmpty(t, host)
		require.LessOrEqual(t, len(s), MaxTarget)
		require.NotContains(t, host, "%")
	})
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Basic abc", "Bearer ", "Bearer a b", "BEARER AQ-_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := ParseBearer(s)
		if !ok {
			require.Empty(t, tok)
			return
		}
		require.NotEmpty(t, tok)
		require.NotContains(t, tok, " ")
		require.True(t, strings.HasSuffix(s, tok))
	})
}

func FuzzDecodeError(f *testing.F) {
	f.Add(401, []byte(`{"error":{"code":"token-expired","message":"the join token has expired"}}`))
	f.Add(503, []byte(`{"error":{"code":"leaving","message":"x"}}`))
	f.Add(502, []byte(`<html>bad gateway</html>`))
	f.Add(400, []byte(`{"error":null}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		err := DecodeError(status, bytes.NewReader(body))
		require.Error(t, err)
		require.NotEmpty(t, err.Error())
	})
}

func FuzzDecodePong(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-01T09:00:00.123456789Z","server":"ht1"}`))
	f.Add([]byte(`{"time":"garbage"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePong(bytes.NewReader(body))
		if err == nil {
			require.False(t, p.Time.IsZero())
			_, err := json.Marshal(p)
			require.NoError(t, err)
		}
	})
}

// FuzzServeHTTP sends arbitrary method, path, token and target to the
// handler (no hijacking recorder: an upgrade that passes every check fails
// at Accept or at the dial to the closed zone port). Every answer other
// than 101 must carry the JSON error body.
func FuzzServeHTTP(f *testing.F) {
	s, err := NewServer(Config{Secret: testSecret, Zones: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	require.NoError(f, err)
	f.Cleanup(func() { _ = s.Close() })
	good := mint(f, testSecret, "fuzz", 24*time.Hour)
	f.Add("GET", PathPing, "Bearer "+good, "", false)
	f.Add("GET", PathTunnel, "Bearer "+good, "127.0.0.1:1", true)
	f.Add("GET", PathTunnel, "Bearer "+good, "10.0.0.1:443", true)
	f.Add("POST", PathTunnel, "Bearer x", "[::1]:443", true)
	f.Add("GET", "/other", "", "", false)
	f.Fuzz(func(t *testing.T, method, path, auth, target string, upgrade bool) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") {
			return
		}
		u, err := url.Parse("https://ht.test" + path)
		if err != nil {
			return
		}
		req := httptest.NewRequest(method, "https://ht.test/", nil)
		req.URL = u
		req.Header.Set("Authorization", auth)
		req.Header.Set(HeaderTarget, target)
		if upgrade {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Sec-WebSocket-Protocol", Subprotocol)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code == http.StatusOK {
			_, err := DecodePong(w.Body)
			require.NoError(t, err)
			return
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") == "application/json" {
			var b ErrorBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &b))
			require.NotEmpty(t, b.Error.Code)
		}
	})
}

// validMethod reports whether m is an HTTP token httptest accepts.
func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
