package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/stats"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestDropLog: 200 unbound datagrams give a JSON line or a few naming the
// reason and the count the router counted, not 200 lines.
func TestDropLog(t *testing.T) {
	leaktest.Check(t)
	n, _, _ := startNode(t)
	var buf lockedBuf
	before := n.r.Stats().Drops[stats.DropUnbound]
	stop := startDropLog(n.r, slog.New(slog.NewJSONHandler(&buf, nil)), 200*time.Millisecond)
	defer stop()
	c, err := net.Dial("udp", n.r.UDPAddrs()[0].String())
	require.NoError(t, err)
	defer c.Close()
	for range 200 {
		_, err = c.Write([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
		require.NoError(t, err)
	}
	// The router's own count (a datagram the kernel dropped under load is
	// in neither): the logged sum must reach it.
	require.Eventually(t, func() bool { return n.r.Stats().Drops[stats.DropUnbound] >= before+150 }, 20*time.Second, 10*time.Millisecond)
	var got uint64
	require.Eventually(t, func() bool {
		want := n.r.Stats().Drops[stats.DropUnbound] - before
		got = 0
		for _, l := range buf.lines() {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m))
			require.Equal(t, "mmr: drops", m["msg"])
			got += uint64(m["unbound_source"].(float64))
		}
		return got == want
	}, 20*time.Second, 20*time.Millisecond)
	require.LessOrEqual(t, len(buf.lines()), 3, "bursts, not a line per packet")
	stop()
	stop()
}
