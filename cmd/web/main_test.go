package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/metrics/dashboard"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web/store/storetest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs the command in process and stops it when the test ends.
func start(t *testing.T, args ...string) (*running, *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *running, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() { done <- run(ctx, args, logs, started) }()
	var r *running
	select {
	case r = <-started:
	case code := <-done:
		cancel()
		t.Fatalf("web exited %d:\n%s", code, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		require.Equal(t, 0, <-done, logs.String())
	})
	return r, logs
}

func apikey(t *testing.T, args ...string) string {
	var out, errb bytes.Buffer
	code := apikeyMain(context.Background(), append([]string{"create"}, args...), &out, &errb)
	require.Equal(t, 0, code, errb.String())
	return strings.TrimSpace(out.String())
}

func TestServe(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			leaktest.Check(t)
			state := t.TempDir()
			cfg := filepath.Join(state, "site.toml")
			require.NoError(t, os.WriteFile(cfg, []byte(`
[web]
zone_check_interval = "1h"
[[zones]]
name = "ams"
latitude = 52.37
longitude = 4.90
  [[zones.zcs]]
  addr = "127.0.0.1:1"
  fingerprint = "`+strings.Repeat("cd", 32)+`"
`), 0o600))
			args := []string{"-config", cfg, "-listen", "127.0.0.1:0", "-state", state, "-log-level", "debug"}
			if db == "postgres" {
				args = append(args, "-db", storetest.PostgresDSN(t))
			}
			key := apikey(t, args...)
			require.True(t, strings.HasPrefix(key, "omk_"))
			r, logs := start(t, append(args, "-metrics", "127.0.0.1:0", "-log-format", "json")...)
			murl := "http://" + r.metrics + "/metrics"
			before, err := load.Scrape(murl)
			require.NoError(t, err)
			pin, err := tlsutil.PinnedClientConfig(r.fp)
			require.NoError(t, err)
			tr := &http.Transport{TLSClientConfig: pin, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
			url := "https://" + r.addr.String()
			post := func(path, auth, body string) (*http.Response, map[string]any) {
				req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if auth != "" {
					req.Header.Set("Authorization", "Bearer "+auth)
				}
				resp, err := c.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				var m map[string]any
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
				return resp, m
			}
			resp, m := post("/v1/meetings", key, `{"id":"1234567890","topic":"cmd test","passcode":"9876"}`)
			require.Equal(t, http.StatusCreated, resp.StatusCode, fmt.Sprint(m))
			require.Equal(t, "HTTP/2.0", resp.Proto)
			resp, m = post("/v1/lookup", "", `{"meeting_id":"1234567890","passcode":"9876","name":"Ann"}`)
			require.Equal(t, http.StatusOK, resp.StatusCode, fmt.Sprint(m))
			require.Equal(t, "ams", m["zones"].([]any)[0].(map[string]any)["name"])

			// The token verifies with the join secret the MMRs share.
			secret, err := LoadOrCreateHexSecret(filepath.Join(state, "join.secret"))
			require.NoError(t, err)
			v, err := token.NewVerifier(secret)
			require.NoError(t, err)
			claims, err := v.Verify(m["join_token"].(string), time.Now())
			require.NoError(t, err)
			require.Equal(t, "1234567890", claims.Meeting)
			require.Equal(t, "Ann", claims.Name)

			// -metrics: the lookup and a refusal, parsed with the
			// Prometheus text parser; the dashboard's web_ names.
			resp, _ = post("/v1/lookup", "", `{"meeting_id":"1234567890","passcode":"0000","name":"Bob"}`)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			after, err := load.Scrape(murl)
			require.NoError(t, err)
			require.Equal(t, before["web_lookups_total"]+1, after["web_lookups_total"])
			require.Equal(t, before[`web_refused_total{code="wrong-passcode"}`]+1, after[`web_refused_total{code="wrong-passcode"}`])
			missing, err := dashboard.MissingFrom(dashboard.Path, murl, "web")
			require.NoError(t, err)
			require.Empty(t, missing, "queried by docs/grafana/openmmr.json, not exported")
			tr.CloseIdleConnections()
			http.DefaultClient.CloseIdleConnections()
			// -log-format json: every line so far is a JSON object.
			for _, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &m), "not a JSON line: %q", line)
				require.Contains(t, m, "msg")
			}
			require.Contains(t, logs.String(), `"msg":"web: serving"`)
		})
	}
}

func TestFlags(t *testing.T) {
	leaktest.Check(t)
	var out lockedBuffer
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, &out, nil))
	require.Contains(t, out.String(), "-db")
	require.Equal(t, 2, run(context.Background(), []string{"-db", "mysql://x", "-state", t.TempDir()}, &out, nil))
	require.Equal(t, 2, run(context.Background(), []string{"extra"}, &out, nil))
	require.Equal(t, 2, run(context.Background(), []string{"-pprof", "-state", t.TempDir()}, &out, nil))
	require.Contains(t, out.String(), "-pprof needs -metrics")
	require.Equal(t, 2, run(context.Background(), []string{"-log-format", "xml"}, &out, nil))
	require.Contains(t, out.String(), "want text or json")
	bad := filepath.Join(t.TempDir(), "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[web]\nlisen = 1\n"), 0o600))
	out = lockedBuffer{}
	require.Equal(t, 2, run(context.Background(), []string{"-config", bad}, &out, nil))
	require.Contains(t, out.String(), `line 2: unknown key "web.lisen"`)
	var o, e bytes.Buffer
	require.Equal(t, 2, apikeyMain(context.Background(), nil, &o, &e))
	require.Equal(t, "postgres://u:xxxxx@h/db", redactDSN("postgres://u:pw@h/db"))
}
