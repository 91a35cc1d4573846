package control

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/tlsutil"
)

// benchMeetings spreads benchmark participants over 100 meetings, so that
// 1,000 of them make meetings of 10.
const benchMeetings = 100

// benchJoin dials addr and joins participant i, returning the client and the
// time from dial to joined, TLS handshake included.
func benchJoin(tb testing.TB, addr, fp string, i int) (*ctlclient.Client, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	meeting := fmt.Sprintf("bench%d", i%benchMeetings)
	tok := mint(tb, meeting, fmt.Sprint("user", i), token.Participant)
	tc, err := tlsutil.PinnedClientConfig(fp)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	c, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: tc, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Join(ctx, meeting, tok, ""); err != nil {
		tb.Fatal(err)
	}
	return c, time.Since(start)
}

// liveBytes returns live heap plus goroutine stacks after a full collection.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// BenchmarkJoin measures, against the real router on loopback:
//   - latency: dial + TLS handshake + hello + join until joined arrives,
//     one client after another; reports p50_us and p99_us.
//   - idle1000: the memory one idle joined participant costs with 1,000 of
//     them in 100 meetings, from runtime.MemStats (live heap plus goroutine
//     stacks after a full GC): server_bytes/participant with the clients in
//     a child process (server, router, and the server end of the TLS
//     connection; budget 64 KiB), and both_ends_bytes/participant with the
//     Go clients in this process too.
func BenchmarkJoin(b *testing.B) {
	b.Run("latency", func(b *testing.B) {
		_, e := startE2E(b, nil)
		var lat []time.Duration
		var clients []*ctlclient.Client
		for i := 0; b.Loop(); i++ {
			c, d := benchJoin(b, e.addr(), e.fp, i)
			lat = append(lat, d)
			clients = append(clients, c)
		}
		b.StopTimer()
		for _, c := range clients {
			c.Close()
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
	})
	b.Run("idle1000", func(b *testing.B) {
		// One measurement, whatever b.N: it takes seconds, so the default
		// -benchtime runs one iteration, and -benchtime Nx repeats nothing.
		for i := 0; b.Loop(); i++ {
			if i > 0 {
				continue
			}
			server := idleServerOnly(b)
			both := idleBothEnds(b)
			b.ReportMetric(server, "server_bytes/participant")
			b.ReportMetric(both, "both_ends_bytes/participant")
			if server > 64<<10 {
				b.Errorf("%.0f bytes per idle participant on the server, budget 65536", server)
			}
		}
	})
}

// idleN is the number of idle participants measured.
const idleN = 1000

// idleConfig keeps the measured participants idle: no ping during the
// measurement.
func idleConfig(c *Config) { c.IdleTimeout = time.Hour; c.PingInterval = 20 * time.Minute }

// idleServerOnly measures the server side alone: the clients run in a child
// process (this test binary running TestIdleClientsHelper), so the
// MemStats delta of this process is the server, the router and the server
// end of each TLS connection.
func idleServerOnly(b *testing.B) float64 {
	_, e := startE2E(b, idleConfig)
	base := liveBytes()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OPENMMR_IDLE_ADDR="+e.addr(), "OPENMMR_IDLE_FP="+e.fp)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the helper leaves when its stdin closes
		if err := cmd.Wait(); err != nil {
			b.Errorf("client process: %v", err)
		}
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if e.srv.Stats().Participants != idleN {
		b.Fatalf("%d participants joined, want %d", e.srv.Stats().Participants, idleN)
	}
	time.Sleep(100 * time.Millisecond) // let the post-join ping exchange finish
	go io.Copy(io.Discard, stdout)
	return float64(liveBytes()-base) / idleN
}

// idleBothEnds measures server and clients in this one process.
func idleBothEnds(b *testing.B) float64 {
	_, e := startE2E(b, idleConfig)
	base := liveBytes()
	clients := make([]*ctlclient.Client, idleN)
	for i := range clients {
		clients[i], _ = benchJoin(b, e.addr(), e.fp, i)
	}
	time.Sleep(100 * time.Millisecond)
	per := float64(liveBytes()-base) / idleN
	for _, c := range clients {
		c.Close()
	}
	return per
}

// TestIdleClientsHelper is the client process of idleServerOnly; it does
// nothing in a normal test run.
func TestIdleClientsHelper(t *testing.T) {
	addr := os.Getenv("OPENMMR_IDLE_ADDR")
	if addr == "" {
		t.Skip("helper process of BenchmarkJoin/idle1000")
	}
	clients := make([]*ctlclient.Client, idleN)
	for i := range clients {
		clients[i], _ = benchJoin(t, addr, os.Getenv("OPENMMR_IDLE_FP"), i)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range clients {
		c.Close()
	}
}
