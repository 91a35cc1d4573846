package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/tlsutil"
)

// childEnv selects a benchmark child role when the test binary is run
// again by BenchmarkTunnel: "echo" (a TLS echo with ALPN, the direct media
// endpoint) or "tunnel" (a tunnel server serving TUNNEL_BENCH_ZONE). The
// child prints "ADDR FINGERPRINT" and serves until its stdin closes.
const childEnv = "TUNNEL_BENCH_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "echo":
		runEchoChild()
	case "tunnel":
		runTunnelChild()
	case "netns-client":
		runNetnsClient()
	}
	os.Exit(0)
}

func runEchoChild() {
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		panic(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{echoALPN}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s\n", ln.Addr(), tlsutil.Fingerprint(cert))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				_, _ = io.Copy(tc, tc)
				_ = c.Close()
			}()
		}
	}()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func runTunnelChild() {
	s, err := NewServer(Config{Secret: testSecret, Zones: []string{os.Getenv("TUNNEL_BENCH_ZONE")},
		BytesPerClient: 1 << 30, BytesPerAddr: 1 << 30, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s\n", ln.Addr(), tlsutil.Fingerprint(cert))
	go func() { _ = s.Serve(ln, cert) }()
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
}

// child is a benchmark child process.
type child struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	addr, fp string
}

func startChild(b *testing.B, role string, env ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err)
	f := strings.Fields(line)
	require.Len(b, f, 2)
	c := &child{cmd: cmd, stdin: stdin, addr: f[0], fp: f[1]}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	return c
}

// mediaPacket is the size of a typical video RTP packet with stream framing.
const mediaPacket = 1200

// pingPong measures n round trips of one packet on c and returns the median.
func pingPong(b *testing.B, c net.Conn, n int) time.Duration {
	b.Helper()
	pkt := make([]byte, mediaPacket)
	got := make([]byte, mediaPacket)
	rtts := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		_, err := c.Write(pkt)
		require.NoError(b, err)
		_, err = io.ReadFull(c, got)
		require.NoError(b, err)
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// pipeline sends n packets on c while reading their echoes (media in flight
// both ways, as in a meeting).
func pipeline(b *testing.B, c net.Conn, n int) {
	b.Helper()
	done := make(chan error, 1)
	go func() {
		got := make([]byte, n*mediaPacket)
		_, err := io.ReadFull(c, got)
		done <- err
	}()
	pkt := make([]byte, mediaPacket)
	for range n {
		_, err := c.Write(pkt)
		require.NoError(b, err)
	}
	require.NoError(b, <-done)
}

// BenchmarkTunnel compares a TLS media stream through a tunnel server
// with the same stream direct, in one run. The echo endpoint and the
// tunnel server are child processes, so their CPU is measured apart from
// the client's. Metrics:
//   - direct-rtt-us, tunnel-rtt-us, added-rtt-us: median round trip of one
//     1200-byte packet (added latency of the tunnel, both ways);
//   - tunnel-cpu-ns/pkt: tunnel server CPU per relayed packet (each
//     iteration relays two: up and its echo down);
//   - endpoint-cpu-ns/pkt: the TLS endpoint's CPU per packet it receives
//     and sends back, the cost of terminating a direct TLS media stream,
//     for scale.
func BenchmarkTunnel(b *testing.B) {
	echo := startChild(b, "echo")
	ht := startChild(b, "tunnel", "TUNNEL_BENCH_ZONE="+echo.addr)
	cfg, err := tlsutil.PinnedClientConfig(echo.fp)
	require.NoError(b, err)
	cfg.NextProtos = []string{echoALPN}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	raw, err := net.Dial("tcp", echo.addr)
	require.NoError(b, err)
	direct := tls.Client(raw, cfg)
	require.NoError(b, direct.HandshakeContext(ctx))
	defer direct.Close()

	tun, err := (&Dialer{Token: mint(b, testSecret, "bench", time.Hour)}).Pick(ctx, []Endpoint{{URL: "https://" + ht.addr + PathTunnel, Fingerprint: ht.fp}})
	require.NoError(b, err)
	tc, err := tun.Dial(ctx, echo.addr)
	require.NoError(b, err)
	via := tls.Client(tc, cfg)
	require.NoError(b, via.HandshakeContext(ctx))
	defer via.Close()

	const rounds = 400
	pingPong(b, direct, 50) // warm up both paths
	pingPong(b, via, 50)
	dRTT := pingPong(b, direct, rounds)
	tRTT := pingPong(b, via, rounds)

	b.ResetTimer()
	e0, err0 := cpuOf(echo.cmd.Process.Pid)
	h0, err1 := cpuOf(ht.cmd.Process.Pid)
	pipeline(b, via, b.N)
	h1, err2 := cpuOf(ht.cmd.Process.Pid)
	e1, err3 := cpuOf(echo.cmd.Process.Pid)
	b.StopTimer()

	b.ReportMetric(float64(dRTT.Microseconds()), "direct-rtt-us")
	b.ReportMetric(float64(tRTT.Microseconds()), "tunnel-rtt-us")
	b.ReportMetric(float64((tRTT - dRTT).Microseconds()), "added-rtt-us")
	if err0 == nil && err1 == nil && err2 == nil && err3 == nil {
		b.ReportMetric(float64(h1-h0)/float64(2*b.N), "tunnel-cpu-ns/pkt")
		b.ReportMetric(float64(e1-e0)/float64(b.N), "endpoint-cpu-ns/pkt")
	}
}
