package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/router"
)

func TestRunStartsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *router.Router, 1)
	var logs bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-udp", "127.0.0.1:0", "-shards", "1"}, &logs, started) }()
	r := <-started
	require.Len(t, r.UDPAddrs(), 1)
	cancel()
	require.Equal(t, 0, <-done)
	require.Contains(t, logs.String(), "router: listening")
	require.Contains(t, logs.String(), "router: closed")
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, &out, nil))
	require.Contains(t, out.String(), "-dscp-audio")
	for _, bad := range [][]string{{"-udp", "nope"}, {"-read-mode", "x"}, {"-dscp-video", "64"}, {"extra"}} {
		require.Equal(t, 2, run(context.Background(), bad, &out, nil), bad)
	}
}

// TestBinarySignal builds the real binary and stops it with SIGTERM.
func TestBinarySignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mmr")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	cmd := exec.Command(bin, "-udp", "127.0.0.1:0", "-shards", "1")
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "mmr: running") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	require.Contains(t, logs.String(), "router: closed")
}

// lockedBuffer is a bytes.Buffer safe for exec's copier goroutine and the test.
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
