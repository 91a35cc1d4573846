package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/web/store"
	"github.com/openmmr/mmr/web/store/storetest"
)

var testSecret = []byte("0123456789abcdef-join-secret")

// testArgon2 are cheap hash parameters for tests (TestSecretHash checks
// the defaults).
var testArgon2 = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

// env is one web node over real HTTPS (httptest TLS, HTTP/2 enabled) with
// the Server's own http.Server settings.
type env struct {
	srv *Server
	ts  *httptest.Server
	st  store.Store
	key string // an admin API key
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testSite is a site with loose flood limits and tight lockouts.
func testSite() config.File {
	f := config.Default()
	f.Web.Limits.MeetingFailures = 3
	f.Web.Limits.SourceFailures = 1000
	f.Web.Limits.LookupRate = 10_000
	f.Web.Limits.LookupBurst = 10_000
	f.Web.ZoneCheckInterval = config.Duration(time.Hour)
	f.Web.ZoneCheckTimeout = config.Duration(2 * time.Second)
	return f
}

// newEnv starts a node on dsn's store (a fresh SQLite file when "").
func newEnv(t testing.TB, dsn string, site config.File) *env {
	t.Helper()
	if dsn == "" {
		dsn = storetest.SQLiteDSN(t)
	}
	st := storetest.Open(t, dsn)
	srv, err := New(Config{Site: site, Store: st, Secret: testSecret, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})),
		Argon2: testArgon2})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = srv.HTTPServer()
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	key, _, err := CreateAPIKey(context.Background(), st, "test", time.Now())
	if err != nil && !isExists(err) {
		require.NoError(t, err)
	}
	return &env{srv: srv, ts: ts, st: st, key: key}
}

func isExists(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("exists"))
}

// client returns a keep-alive HTTPS client of e whose connections come
// from local ("" : any loopback address).
func (e *env) client(t testing.TB, local string) *http.Client {
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	if local != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
		tr.DialContext = d.DialContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// answer is a decoded answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() string {
	var b errorBody
	_ = json.Unmarshal(a.body, &b)
	return b.Error.Code
}

func (a answer) decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(a.body, v), string(a.body))
}

// do sends a request; body is JSON-encoded unless it is a string or
// []byte (sent as is).
func (e *env) do(t testing.TB, c *http.Client, method, path, key string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode >= 300 {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "every error is JSON: %s", b)
		var eb errorBody
		require.NoError(t, json.Unmarshal(b, &eb), "error body: %s", b)
		require.NotEmpty(t, eb.Error.Code)
		require.NotEmpty(t, eb.Error.Message)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// createMeeting creates a meeting through the API and returns its answer.
func (e *env) createMeeting(t testing.TB, req map[string]any) meetingJSON {
	t.Helper()
	a := e.do(t, e.client(t, ""), "POST", "/v1/meetings", e.key, req)
	require.Equal(t, http.StatusCreated, a.status, string(a.body))
	var m meetingJSON
	a.decode(t, &m)
	return m
}

// lookupAnswer is the lookup answer as a client decodes it.
type lookupAnswer struct {
	Meeting struct {
		ID, Topic, Type string
		StartTime       string `json:"start_time"`
		DurationMinutes int    `json:"duration_minutes"`
		E2EE            bool   `json:"e2ee"`
	}
	Role         string
	Identity     string
	JoinToken    string `json:"join_token"`
	TokenExpires string `json:"token_expires"`
	Zones        []struct {
		Name       string
		Healthy    bool
		CheckedAt  string   `json:"checked_at"`
		DistanceKM *float64 `json:"distance_km"`
		ZCs        []struct {
			Addr, Fingerprint string
		} `json:"zcs"`
	}
	Tunnels      []any  `json:"tunnels"`
	WebClientURL string `json:"web_client_url"`
	Client       struct {
		Address  string
		ViaProxy bool `json:"via_proxy"`
		Proxy    string
	}
}

func (e *env) lookup(t testing.TB, c *http.Client, req map[string]any) (answer, lookupAnswer) {
	t.Helper()
	a := e.do(t, c, "POST", "/v1/lookup", "", req)
	var l lookupAnswer
	if a.status == http.StatusOK {
		a.decode(t, &l)
	}
	return a, l
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// testWriter sends log lines to the test's log (errors only reach it).
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSuffix(p, []byte("\n"))))
	return len(p), nil
}
