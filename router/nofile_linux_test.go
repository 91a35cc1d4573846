package router_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
)

// childNofile is the descriptor limit of the child process: small enough
// to reach with a few hundred loopback connections.
const childNofile = 256

const childEnv = "MMR_NOFILE_CHILD"

// TestDescriptorExhaustion runs a router and a TLS edge (the control port)
// in a child process whose RLIMIT_NOFILE is 256, and floods the router's
// TCP media port from this process. The router-wide stream cap must keep
// descriptors for the TLS port, and when the child does run out of
// descriptors, the TLS accept loop must survive it, show it (Accepting
// false, AcceptErrors), and serve again once descriptors are free.
func TestDescriptorExhaustion(t *testing.T) {
	leaktest.Check(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorExhaustionChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	// ask sends a command and returns the child's answer line.
	ask := func(cmd string) string {
		_, err := fmt.Fprintln(stdin, cmd)
		require.NoError(t, err)
		for lines.Scan() {
			if l, ok := strings.CutPrefix(lines.Text(), "CHILD "); ok {
				return l
			}
		}
		t.Fatalf("child ended: %v", lines.Err())
		return ""
	}
	var tcpAddr, tlsAddr, fp string
	_, err = fmt.Sscanf(ask("addrs"), "%s %s %s", &tcpAddr, &tlsAddr, &fp)
	require.NoError(t, err)
	cli, err := tlsutil.PinnedClientConfig(fp)
	require.NoError(t, err)
	handshake := func() error {
		d := &net.Dialer{Timeout: 3 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", tlsAddr, cli)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return fmt.Errorf("got %q", b)
		}
		return nil
	}
	require.NoError(t, handshake())

	// 1. Flood TCP 8801 with more connections than the child has
	// descriptors, 60 per source address (under MaxStreamsPerIP).
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; len(flood) < 2*childNofile; i++ {
		src := netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i/60)})
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", tcpAddr)
		require.NoError(t, err)
		flood = append(flood, c)
	}
	var refused uint64
	require.Eventually(t, func() bool {
		_, err := fmt.Sscanf(ask("streams_full"), "%d", &refused)
		return err == nil && refused > 0
	}, 10*time.Second, 20*time.Millisecond, "streams over the cap are refused")
	require.NoError(t, handshake(), "the TLS port still serves while TCP media is flooded")
	for _, c := range flood {
		c.Close()
	}
	flood = nil

	// 2. The child runs out of descriptors altogether: the TLS port's
	// Accept fails with EMFILE; it must say so and keep trying.
	// The router closes the flood's streams asynchronously: wait until
	// they are gone, and fill again whatever they freed meanwhile.
	require.Eventually(t, func() bool { return ask("streams") == "0" }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		ask("fill")
		return handshake() != nil
	}, 20*time.Second, 10*time.Millisecond, "no descriptor to accept with")
	require.Eventually(t, func() bool { return ask("accepting") == "false" }, 10*time.Second, 20*time.Millisecond)
	ask("release")
	require.Eventually(t, func() bool { return handshake() == nil }, 20*time.Second, 50*time.Millisecond, "the accept loop survived")
	require.Equal(t, "true", ask("accepting"))
	require.Equal(t, "bye", ask("quit"))
}

// TestDescriptorExhaustionChild is the child of TestDescriptorExhaustion;
// it does nothing in a normal run.
func TestDescriptorExhaustionChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("child process of TestDescriptorExhaustion")
	}
	var rl syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	rl.Cur = childNofile
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl))

	r, err := router.New(router.Config{
		UDP:         []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		TCP:         []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")},
		Shards:      1,
		BindTimeout: time.Minute, // the flood's silent streams stay for the whole test
	})
	require.NoError(t, err)
	defer r.Close()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := edge.Listen("127.0.0.1:0", "-control")
	require.NoError(t, err)
	e, err := edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(cert)})
	require.NoError(t, err)
	e.Handle("", func(c net.Conn) {
		_, _ = c.Write([]byte("ok"))
		c.Close()
	})
	served := make(chan error, 1)
	go func() { served <- e.Serve() }()
	defer func() {
		e.Close()
		require.NoError(t, <-served)
	}()

	var filled []int
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var ans string
		switch in.Text() {
		case "addrs":
			ans = fmt.Sprintf("%v %v %s", r.TCPAddrs()[0], ln.Addr(), tlsutil.Fingerprint(cert))
		case "streams":
			ans = fmt.Sprint(r.Stats().Streams)
		case "streams_full":
			ans = fmt.Sprint(r.Stats().Drops[stats.DropStreamsFull])
		case "accepting":
			ans = fmt.Sprint(e.Accepting())
		case "fill":
			for {
				fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
				if err != nil {
					break
				}
				filled = append(filled, fd)
			}
			ans = fmt.Sprint(len(filled))
		case "release":
			for _, fd := range filled {
				syscall.Close(fd)
			}
			filled = nil
			ans = "released"
		case "quit":
			fmt.Println("CHILD bye")
			return
		}
		fmt.Println("CHILD " + ans)
	}
}
