package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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

	cert, _, err := tlsutil.LoadOrCreate(dir)
	require.NoError(t, err)
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	c, err := zclient.Dial(context.Background(), s.Addr().String(), pin)
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
