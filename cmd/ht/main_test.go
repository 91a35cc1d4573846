package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/metrics/dashboard"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/tunnel"
)

const secret = "ht-test-join-secret-0123456789"

func writeSecret(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "join.secret")
	require.NoError(t, os.WriteFile(p, []byte(secret+"\n"), 0o600))
	return p
}

func mint(t *testing.T) string {
	t.Helper()
	tok, err := token.Mint([]byte(secret), token.Claims{Meeting: "1234567890", Identity: "p-1", Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	return tok
}

// echo is a TLS echo server (ALPN "echo") on loopback.
type echo struct {
	addr, fp string
}

func startEcho(t *testing.T) echo {
	t.Helper()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"echo"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				_, _ = io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return echo{addr: ln.Addr().String(), fp: tlsutil.Fingerprint(cert)}
}

// dialEcho opens a tunnelled TLS stream to e through tun.
func dialEcho(t *testing.T, tun *tunnel.Tunnel, e echo) *tls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tun.Dial(ctx, e.addr)
	require.NoError(t, err)
	cfg, err := tlsutil.PinnedClientConfig(e.fp)
	require.NoError(t, err)
	cfg.NextProtos = []string{"echo"}
	tc := tls.Client(c, cfg)
	require.NoError(t, tc.HandshakeContext(ctx))
	require.NoError(t, tc.SetDeadline(time.Now().Add(20*time.Second)))
	msg := []byte("ping through ht")
	_, err = tc.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(tc, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	return tc
}

func TestFlags(t *testing.T) {
	sec := writeSecret(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret", []string{"-zones", "127.0.0.1:1"}, "-join-secret-file is required"},
		{"no zones", []string{"-join-secret-file", sec}, "-zones or -zc is required"},
		{"zc without pin", []string{"-join-secret-file", sec, "-zc", "127.0.0.1:1"}, "want host:port=fingerprint"},
		{"zc bad pin", []string{"-join-secret-file", sec, "-zc", "127.0.0.1:1=abc"}, "fingerprint must be"},
		{"cert alone", []string{"-join-secret-file", sec, "-zones", "127.0.0.1:1", "-cert", "x.pem"}, "-cert and -key go together"},
		{"extra", []string{"-join-secret-file", sec, "-zones", "127.0.0.1:1", "junk"}, "unexpected argument"},
		{"pprof alone", []string{"-join-secret-file", sec, "-zones", "127.0.0.1:1", "-pprof"}, "-pprof needs -metrics"},
		{"log format", []string{"-join-secret-file", sec, "-zones", "127.0.0.1:1", "-log-format", "xml"}, "want text or json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			require.Equal(t, 2, run(context.Background(), tc.args, &out, nil, nil))
			require.Contains(t, out.String(), tc.want)
		})
	}
	var out bytes.Buffer
	require.Equal(t, 1, run(context.Background(), []string{"-join-secret-file", sec, "-zones", "bad zone", "-state", t.TempDir(), "-listen", "127.0.0.1:0"}, &out, nil, nil))
	require.Contains(t, out.String(), "zone address")
}

// TestRunAndMetrics runs ht in process with a generated certificate and
// -metrics: a stream flows, and the scrape (parsed with the Prometheus
// text parser) shows it and a refused ping.
func TestRunAndMetrics(t *testing.T) {
	leaktest.Check(t)
	e := startEcho(t)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan running, 1)
	done := make(chan int, 1)
	var logs lockedBuffer
	state := t.TempDir()
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-state", state, "-join-secret-file", writeSecret(t),
			"-zones", e.addr, "-metrics", "127.0.0.1:0", "-name", "ht-test"}, &logs, nil, started)
	}()
	var r running
	select {
	case r = <-started:
	case code := <-done:
		t.Fatalf("ht exited %d: %s", code, logs.String())
	}
	require.Contains(t, logs.String(), "created a self-signed certificate")
	require.Contains(t, logs.String(), r.fingerprint)

	ep := tunnel.Endpoint{URL: "https://" + r.addr + tunnel.PathTunnel, Fingerprint: r.fingerprint}
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	tun, err := (&tunnel.Dialer{Token: mint(t)}).Pick(pctx, []tunnel.Endpoint{ep})
	require.NoError(t, err)
	require.Equal(t, "ht-test", tun.Server.Server)
	tc := dialEcho(t, tun, e)
	bad, err := (&tunnel.Dialer{Token: "forged"}).Open(ep)
	require.NoError(t, err)
	_, _, err = bad.Ping(pctx)
	require.ErrorIs(t, err, &tunnel.Error{Code: tunnel.CodeTokenInvalid})

	// The refused ping's connection closes as its answer is read; the
	// server counts it gone when its side sees the close, a moment later
	// on a busy machine: scrape until the gauge has settled.
	var m map[string]float64
	require.Eventually(t, func() bool {
		m, err = load.Scrape("http://" + r.metrics + "/metrics")
		return err == nil && m["ht_connections"] == 1
	}, 10*time.Second, 20*time.Millisecond, "ht_connections settles at the one stream's connection")
	for k, want := range map[string]float64{
		"ht_connections": 1, "ht_streams": 1, "ht_streams_opened_total": 1, "ht_pings_total": 1,
		`ht_refused_total{reason="token-invalid"}`: 1, `ht_refused_total{reason="server-full"}`: 0,
		`ht_stream_ends_total{reason="idle"}`: 0,
	} {
		require.Contains(t, m, k)
		require.Equal(t, want, m[k], k)
	}
	require.GreaterOrEqual(t, m["ht_bytes_up_total"], float64(len("ping through ht")))
	require.GreaterOrEqual(t, m["ht_bytes_down_total"], float64(len("ping through ht")))
	for _, k := range []string{"ht_accepted_total", "ht_conn_timeouts_total", "ht_log_suppressed_total", "ht_placements_total",
		"ht_place_failed_total", "process_cpu_seconds_total", "go_goroutines"} {
		require.Contains(t, m, k)
	}
	missing, err := dashboard.MissingFrom(dashboard.Path, "http://"+r.metrics+"/metrics", "ht")
	require.NoError(t, err)
	require.Empty(t, missing, "queried by docs/grafana/openmmr.json, not exported")
	resp, err := http.Get("http://" + r.metrics + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no pprof without -pprof")
	http.DefaultClient.CloseIdleConnections()
	require.NoError(t, tc.Close())
	cancel()
	require.Equal(t, 0, <-done)
	require.Contains(t, logs.String(), "ht: stopped")
}

// TestBinarySIGTERM builds ht, runs it as a child, opens two streams
// through it and sends SIGTERM: both streams end at once with an error
// matching tunnel.ErrServerLeaving, and ht exits 0.
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	leaktest.Check(t)
	bin := filepath.Join(t.TempDir(), "ht")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	e := startEcho(t)
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0", "-state", t.TempDir(), "-join-secret-file", writeSecret(t), "-zones", e.addr, "-log-format", "json")
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // no-op once it exited
		<-exited
	})
	var ep tunnel.Endpoint
	require.Eventually(t, func() bool {
		for _, m := range jsonLines(t, logs.String()) {
			if m["msg"] == "ht: running" {
				ep = tunnel.Endpoint{URL: "https://" + m["addr"].(string) + tunnel.PathTunnel, Fingerprint: m["fingerprint"].(string)}
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "ht did not start: %s", logs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tun, err := (&tunnel.Dialer{Token: mint(t)}).Pick(ctx, []tunnel.Endpoint{ep})
	require.NoError(t, err)
	streams := []*tls.Conn{dialEcho(t, tun, e), dialEcho(t, tun, e)}
	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	for _, s := range streams {
		_, err := s.Read(make([]byte, 1))
		require.ErrorIs(t, err, tunnel.ErrServerLeaving)
		_ = s.Close()
	}
	require.Less(t, time.Since(start), 15*time.Second, "not by the 60 s idle timeout")
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("ht did not exit after SIGTERM")
	}
	var msgs []string
	for _, m := range jsonLines(t, logs.String()) {
		msgs = append(msgs, m["msg"].(string))
	}
	require.Contains(t, msgs, "ht: stopping")
	require.Contains(t, msgs, "ht: stopped")
}

// jsonLines parses every complete line of a -log-format json log.
func jsonLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.SplitAfter(logs, "\n") {
		if !strings.HasSuffix(line, "\n") {
			break // still being written
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "not a JSON line: %q", line)
		out = append(out, m)
	}
	return out
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
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
