package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/metrics/dashboard"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone/zclient"
)

func TestStartServesAndStops(t *testing.T) {
	t.Setenv(secretEnv, "")
	dir := t.TempDir()
	var logs bytes.Buffer
	s, err := start([]string{"-listen", "127.0.0.1:0", "-state", dir, "-id", "zc-cmd"}, &logs)
	require.NoError(t, err)
	defer s.Close()
	require.Contains(t, logs.String(), "created a new zone secret")
	secret, err := os.ReadFile(filepath.Join(dir, "zone.secret"))
	require.NoError(t, err)
	require.Len(t, bytes.TrimSpace(secret), 64)

	probe(t, dir, s.Addr().String())
}

// probe dials the ZC at addr, pinning the certificate in its state dir,
// and has one probe echoed.
func probe(t *testing.T, dir, addr string) {
	t.Helper()
	cert, _, err := tlsutil.LoadOrCreate(dir)
	require.NoError(t, err)
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	c, err := zclient.Dial(context.Background(), addr, pin)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Probe(context.Background(), zclient.ProbeOptions{Count: 1})
	require.NoError(t, err)
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Setenv(secretEnv, "0123456789abcdef0123456789abcdef")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-state", t.TempDir()}, &bytes.Buffer{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestStartErrors(t *testing.T) {
	t.Setenv(secretEnv, "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abc"), 0o600))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"port in use", []string{"-listen", busy.Addr().String()}, "-listen"},
		{"host name", []string{"-listen", "localhost:443"}, "not a host name"},
		{"bad port", []string{"-listen", ":99999"}, "-listen"},
		{"cert without key", []string{"-cert", "x.pem"}, "-cert and -key"},
		{"missing cert", []string{"-cert", "x.pem", "-key", "y.pem"}, "-cert/-key"},
		{"short secret file", []string{"-secret-file", short}, "-secret-file"},
		{"short secret flag", []string{"-secret", "abc"}, "-secret"},
		{"log level", []string{"-log-level", "loud"}, "-log-level"},
		{"log format", []string{"-log-format", "xml"}, "want text or json"},
		{"pprof alone", []string{"-pprof"}, "-pprof needs -metrics"},
		{"metrics address", []string{"-metrics", busy.Addr().String()}, "-metrics: "},
		{"extra argument", []string{"extra"}, "unexpected argument"},
		{"unknown flag", []string{"-nope"}, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-listen", "127.0.0.1:0", "-state", t.TempDir()}, tc.args...)
			s, err := start(args, &bytes.Buffer{})
			if s != nil {
				s.Close()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, exitCode(run(context.Background(), []string{"-h"}, &out), &out))
	require.Contains(t, out.String(), "-listen")
	out.Reset()
	require.Equal(t, 1, exitCode(run(context.Background(), []string{"-bogus"}, &out), &out))
}

// TestMetricsAndJSONLogs: with -metrics the ZC's counters (zc_*) follow a
// real probe in a scrape parsed with the Prometheus text parser, the
// dashboard's zc_ names are all there, pprof is off without -pprof, and
// with -log-format json every log line is a JSON object.
func TestMetricsAndJSONLogs(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	t.Setenv(secretEnv, "")
	dir := t.TempDir()
	var logs bytes.Buffer
	s, err := start([]string{"-listen", "127.0.0.1:0", "-state", dir, "-metrics", "127.0.0.1:0", "-log-format", "json"}, &logs)
	require.NoError(t, err)
	defer s.Close()
	url := "http://" + s.met.Addr().String() + "/metrics"
	before, err := load.Scrape(url)
	require.NoError(t, err)
	require.Contains(t, before, "zc_mmrs")

	probe(t, dir, s.Addr().String())
	var after map[string]float64
	require.Eventually(t, func() bool {
		after, err = load.Scrape(url)
		require.NoError(t, err)
		return after["zc_probes_total"] == before["zc_probes_total"]+1 && after["zc_accepted_total"] == before["zc_accepted_total"]+1
	}, 20*time.Second, 20*time.Millisecond)
	require.Zero(t, after["zc_mmrs"])

	missing, err := dashboard.MissingFrom(dashboard.Path, url, "zc")
	require.NoError(t, err)
	require.Empty(t, missing, "queried by docs/grafana/openmmr.json, not exported")
	resp, err := http.Get("http://" + s.met.Addr().String() + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	require.NoError(t, s.Close())
	var msgs []string
	for _, line := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "not a JSON line: %q", line)
		msgs = append(msgs, m["msg"].(string))
	}
	require.Contains(t, msgs, "metrics: serving")
	require.Contains(t, msgs, "created a new zone secret: copy this file to every ZC and MMR of the zone")
}
