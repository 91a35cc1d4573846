package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/internal/leaktest"
)

var loadSecret = []byte("openmmr-load-test-join-secret-0123456789")

// loadZone starts a one-box zone and writes its join secret as cmd/mmr
// does (the secret's text, a newline); it returns the direct-mode flags.
func loadZone(t *testing.T) []string {
	t.Helper()
	z, err := connecttest.StartZone(connecttest.ZoneConfig{JoinSecret: loadSecret})
	require.NoError(t, err)
	t.Cleanup(z.Close)
	f := filepath.Join(t.TempDir(), "join.secret")
	require.NoError(t, os.WriteFile(f, append(append([]byte(nil), loadSecret...), '\n'), 0o600))
	return []string{"-direct", z.TLSAddr.String(), "-pin", z.Fingerprint, "-join-secret-file", f,
		"-meetings", "2", "-participants", "3", "-duration", "1500ms", "-warmup", "200ms", "-join-rate", "100", "-drain-quiet", "1s"}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoadLines: stdout is not a terminal: plain progress lines, the
// table, the JSON report, PNG and SVG plots, exit 0.
func TestLoadLines(t *testing.T) {
	leaktest.Check(t)
	args := loadZone(t)
	dir := t.TempDir()
	js, pngFile, svgFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png"), filepath.Join(dir, "r.svg")
	var out, errb syncBuffer
	code := run(context.Background(), append([]string{"load", "-json", js, "-plot", pngFile, "-log-format", "json", "-max-loss", "1"}, args...), &out, &errb)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	o := out.String()
	require.Contains(t, o, "measuring: joined 6/6")
	require.NotContains(t, o, "\x1b[", "no terminal escapes when stdout is not a terminal")
	require.Contains(t, o, "PASS")
	// Logs: JSON, one line per join.
	joins := 0
	for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "log line %q", l)
		if m["msg"] == "load: joined" {
			joins++
		}
	}
	require.Equal(t, 6, joins)

	b, err := os.ReadFile(js)
	require.NoError(t, err)
	var rep map[string]any
	require.NoError(t, json.Unmarshal(b, &rep))
	require.EqualValues(t, 6, rep["joins"].(map[string]any)["joined"])
	require.Len(t, rep["kinds"], 2)

	f, err := os.Open(pngFile)
	require.NoError(t, err)
	img, err := png.Decode(f)
	f.Close()
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 100)

	// The same report as SVG, and a threshold that fails: exit 1.
	out, errb = syncBuffer{}, syncBuffer{}
	code = run(context.Background(), append([]string{"load", "-plot", svgFile, "-max-loss", "-1", "-progress", "none"}, args...), &out, &errb)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	require.Contains(t, out.String(), "FAIL: audio loss")
	s, err := os.ReadFile(svgFile)
	require.NoError(t, err)
	require.Contains(t, string(s), "<svg")
	require.Contains(t, string(s), "delay CDF")
}

// TestLoadTerminal: on a pseudo-terminal the live display draws bars
// (cursor movement escapes, the bar labels) before the table.
func TestLoadTerminal(t *testing.T) {
	leaktest.Check(t)
	args := loadZone(t)
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	require.NoError(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}))
	var screen syncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&screen, ptmx) // ends when the tty side is closed
	}()
	var errb syncBuffer
	code := run(context.Background(), append([]string{"load", "-max-loss", "1"}, args...), tty, &errb)
	require.NoError(t, tty.Close())
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("pty reader did not end")
	}
	ptmx.Close()
	require.Equal(t, 0, code, "screen:\n%s\nstderr:\n%s", screen.String(), errb.String())
	s := screen.String()
	require.Contains(t, s, "joined")
	require.Contains(t, s, "window")
	require.Contains(t, s, "6/6")
	require.Contains(t, s, "\x1b[", "the bars redraw with terminal escapes")
	require.NotContains(t, s, "measuring: joined", "no plain progress lines on a terminal")
	require.Contains(t, s, "PASS")
}

func TestLoadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no target", []string{"-pin", strings.Repeat("ab", 32)}, "-web or -direct"},
		{"no pin", []string{"-direct", "127.0.0.1:1"}, "-pin"},
		{"bad shape", []string{"-shape", "x"}, "-shape"},
		{"run fails", []string{"-direct", "127.0.0.1:1", "-pin", strings.Repeat("ab", 32), "-join-secret-file", "/nonexistent"}, "nonexistent"},
		{"bad log format", []string{"-log-format", "xml"}, "log-format"},
		{"bad source ips", []string{"-source-ips", "nope", "-pin", strings.Repeat("ab", 32)}, "source-ips"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"load"}, tc.args...), &out, &errb)
			require.Equal(t, 2, code, errb.String())
			require.Contains(t, errb.String(), tc.want)
		})
	}
}
