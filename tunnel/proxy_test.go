package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// startTinyproxy runs a real tinyproxy (Debian package tinyproxy) on a free
// loopback port with its own configuration and returns its URL and log.
func startTinyproxy(t *testing.T) (*url.URL, *lockedBuffer) {
	t.Helper()
	return startTinyproxyAt(t, "127.0.0.1")
}

// startTinyproxyAt is startTinyproxy listening on the IPv4 address ip.
func startTinyproxyAt(t *testing.T, ip string) (*url.URL, *lockedBuffer) {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		t.Skip("tinyproxy not installed (apt-get install tinyproxy)")
	}
	dir := t.TempDir()
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", ip+":0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, ln.Close())
		conf := filepath.Join(dir, "tinyproxy.conf")
		// No ConnectPort line: CONNECT to any port (the test's tunnel
		// servers listen on ephemeral ports, not 443).
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil,
			"User nobody\nGroup nogroup\nListen %s\nPort %d\nTimeout 60\nMaxClients 50\nAllow 127.0.0.1\nAllow %s/24\nLogLevel Connect\n", ip, port, ip), 0o644))
		logs := &lockedBuffer{}
		cmd := exec.Command(bin, "-d", "-c", conf)
		cmd.Stdout, cmd.Stderr = logs, logs
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		deadline := time.Now().Add(10 * time.Second)
		for {
			select {
			case <-exited:
			default:
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					_ = c.Close()
					t.Cleanup(stop)
					return &url.URL{Scheme: "http", Host: addr}, logs
				}
				if time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				stop()
			}
			break
		}
		t.Logf("tinyproxy on port %d did not start (attempt %d): %s", port, attempt+1, logs.String())
	}
	t.Fatal("tinyproxy did not start")
	return nil, nil
}

// TestThroughHTTPProxy: Pick and Dial through a real HTTP proxy (CONNECT),
// the only way the client reaches the tunnel in this test's view: the
// proxy logs the CONNECTs to the tunnel server, and TLS inside works.
func TestThroughHTTPProxy(t *testing.T) {
	leaktest.Check(t)
	proxy, plog := startTinyproxy(t)
	echo := startEcho(t, nil)
	srv := startServer(t, Config{Zones: []string{echo.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := &Dialer{Token: mint(t, testSecret, "proxied", time.Hour), Proxy: proxy}
	tun, err := d.Pick(ctx, []Endpoint{srv.ep})
	require.NoError(t, err)
	c, err := tun.Dial(ctx, echo.addr)
	require.NoError(t, err)
	tc := echo.clientTLS(t, c)
	roundTrip(t, tc, []byte("through the proxy"))
	require.NoError(t, tc.Close())
	waitFor(t, "proxy log", func() bool { return strings.Count(plog.String(), "CONNECT") >= 2 })
	require.Contains(t, plog.String(), srv.addr[strings.LastIndexByte(srv.addr, ':')+1:])
	require.Equal(t, uint64(1), srv.Stats().Pings)
	require.Equal(t, uint64(1), srv.Stats().Opened)

	// A proxy that refuses (here: nothing listens there) fails the Pick.
	dead := *proxy
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead.Host = ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = (&Dialer{Token: d.Token, Proxy: &dead}).Pick(ctx, []Endpoint{srv.ep})
	require.Error(t, err)
}
