package ingress

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/internal/leaktest"
)

const heldEnv = "MMR_INGRESS_HELD_PORT"

// TestHeldPortRefused: a second socket group on a port that another group
// holds (SO_REUSEPORT on both, same user) is refused with EADDRINUSE, in
// this process and from another process; a different address on the same
// port, or the other family, is not in conflict.
func TestHeldPortRefused(t *testing.T) {
	leaktest.Check(t)
	first, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), 2, Blocking, 64<<10)
	require.NoError(t, err)
	defer func() {
		for _, s := range first {
			s.Close()
		}
	}()
	port := first[0].LocalAddr().Port()
	for _, tc := range []struct {
		addr string
		held bool
	}{
		{"127.0.0.1", true},
		{"0.0.0.0", true},
		{"127.0.0.2", false},
		{"::1", false}, // IPv6 sockets are V6ONLY: the families share ports
	} {
		t.Run(tc.addr, func(t *testing.T) {
			socks, err := Listen(netip.AddrPortFrom(netip.MustParseAddr(tc.addr), port), 2, Blocking, 64<<10)
			for _, s := range socks {
				s.Close()
			}
			if !tc.held {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, unix.EADDRINUSE)
			require.Contains(t, err.Error(), "already held by another socket")
		})
	}
	t.Run("another process", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHeldPortChild$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", heldEnv, port))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "REFUSED")
	})
}

// TestHeldPortChild is the other process of TestHeldPortRefused.
func TestHeldPortChild(t *testing.T) {
	port := os.Getenv(heldEnv)
	if port == "" {
		t.Skip("child process of TestHeldPortRefused")
	}
	socks, err := Listen(netip.MustParseAddrPort("127.0.0.1:"+port), 1, Blocking, 64<<10)
	for _, s := range socks {
		s.Close()
	}
	require.ErrorIs(t, err, unix.EADDRINUSE)
	fmt.Println("REFUSED")
}

func TestParseProcNetUDP(t *testing.T) {
	v4 := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 3808: 0100007F:2261 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 72987 2 0000000098b68ab2 0
 bad line
`
	v6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1: 00000000000000000000000001000000:2261 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0000000000000000 0
`
	require.Equal(t, []procUDPEntry{{local: netip.MustParseAddrPort("127.0.0.1:8801"), uid: 1000, inode: 72987}}, parseProcNetUDP([]byte(v4)))
	require.Equal(t, []procUDPEntry{{local: netip.MustParseAddrPort("[::1]:8801"), inode: 555}}, parseProcNetUDP([]byte(v6)))
}

func FuzzParseProcNetUDP(f *testing.F) {
	f.Add([]byte("h\n 1: 0100007F:2261 00000000:0000 07 0:0 0:0 0 1000 0 72987 2 0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range parseProcNetUDP(b) {
			if !e.local.IsValid() || strings.Contains(e.local.String(), "invalid") {
				t.Fatalf("invalid entry %+v", e)
			}
		}
	})
}

// TestKernelDrops: datagrams the kernel drops for a full receive buffer
// are counted.
func TestKernelDrops(t *testing.T) {
	leaktest.Check(t)
	socks, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, Blocking, 64<<10)
	require.NoError(t, err)
	defer socks[0].Close()
	require.Zero(t, socks[0].KernelDrops())
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(socks[0].LocalAddr()))
	require.NoError(t, err)
	defer c.Close()
	pkt := make([]byte, 1400)
	// Nobody reads: far more than the buffer (64 KiB, doubled by the kernel) holds.
	for range 2000 {
		_, _ = c.Write(pkt)
	}
	require.Eventually(t, func() bool { return socks[0].KernelDrops() > 0 }, 10*time.Second, 5*time.Millisecond)
}
