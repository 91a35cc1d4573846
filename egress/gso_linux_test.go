package egress

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// runPackets returns n packets for a run of segment size size, the last
// one last bytes long, each byte naming its packet and offset.
func runPackets(n, size, last int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		l := size
		if i == n-1 {
			l = last
		}
		pkts[i] = make([]byte, l)
		for j := range pkts[i] {
			pkts[i][j] = byte(i*7 + j)
		}
	}
	return pkts
}

// recvN reads n datagrams from c with their DSCP marks and sources.
func recvN(t *testing.T, c *net.UDPConn, n int) (got [][]byte, marks []uint8, from []netip.AddrPort) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	for range n {
		buf, oob := make([]byte, 70000), make([]byte, 128)
		m, oobn, _, src, err := c.ReadMsgUDPAddrPort(buf, oob)
		require.NoError(t, err)
		got = append(got, buf[:m])
		mark, ok := dscp.ParseRecv(oob[:oobn])
		require.True(t, ok, "TOS reported")
		marks = append(marks, mark)
		from = append(from, src)
	}
	return got, marks, from
}

// TestAddRun sends runs as UDP GSO super-packets over real sockets, from a
// socket bound to a wildcard address with a source address (IP_PKTINFO) and
// the DSCP mark on each message, and checks that the receiver gets every
// datagram byte for byte, in order, marked and from the source asked for;
// then makes GSO fail (SO_NO_CHECK: the kernel refuses UDP_SEGMENT without
// checksums, EINVAL) and checks that the same runs still arrive whole, one
// datagram per message, counted as fallbacks and not as drops.
func TestAddRun(t *testing.T) {
	leaktest.Check(t)
	tests := []struct {
		name      string
		n, size   int
		last      int
		wildcard  bool
		fallback  bool
		stage     bool
		wantGSO   uint64
		wantFalls uint64
	}{
		{"equal", 8, 1200, 1200, false, false, false, 2, 0},
		{"short last", 7, 1000, 333, true, false, false, 2, 0},
		{"max segments", MaxSegments, 1000, 1000, false, false, false, 2, 0},
		{"fallback", 5, 1200, 17, true, true, false, 0, 2},
		{"staged", 8, 1200, 1200, false, false, true, 2, 0},
		{"staged short last", 7, 1000, 333, true, false, true, 2, 0},
		{"staged max", MaxSegments, 1000, 1000, true, false, true, 2, 0},
		{"staged fallback", 5, 1200, 17, true, true, true, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bindAddr := "127.0.0.1:0"
			if tc.wildcard {
				bindAddr = "0.0.0.0:0"
			}
			sender, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(bindAddr)))
			require.NoError(t, err)
			defer sender.Close()
			recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			defer recv.Close()
			require.NoError(t, recv.SetReadBuffer(4<<20))
			require.NoError(t, dscp.EnableRecv(recv))
			rc, err := sender.SyscallConn()
			require.NoError(t, err)
			var fd int
			require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
			if tc.fallback {
				require.NoError(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1))
			}
			var live, owner stats.Live
			b := NewBatch(fd, false, dscp.Default(), &live)
			require.True(t, b.EnableGSO(), "UDP_SEGMENT supported (Linux 4.18+)")
			src := netip.MustParseAddr("127.0.0.1")
			if tc.wildcard {
				src = netip.MustParseAddr("127.0.0.2") // not the kernel's choice
			}
			dst := AddrFrom(recv.LocalAddr().(*net.UDPAddr).AddrPort(), Src{Addr: src})
			pkts := runPackets(tc.n, tc.size, tc.last)
			segs := NewSegs(MaxSegments, MaxRunBytes)
			bytes := 0
			for i, p := range pkts {
				segs.Set(i, p)
				bytes += len(p)
			}
			for range 2 { // the second round finds the destination marked (fallback)
				segs.Reset()
				run := Run{First: 0, N: tc.n, Size: tc.size, Bytes: bytes}
				if tc.stage {
					segs.Stage(&run)
					require.NotZero(t, run.staged)
				}
				b.AddRun(segs, run, dst, media.Video, &owner)
				b.Add(pkts[0], dst, media.Audio, &owner) // a plain message after it
				b.Flush()
				got, marks, from := recvN(t, recv, tc.n+1)
				require.Equal(t, append(append([][]byte{}, pkts...), pkts[0]), got, "every datagram, byte for byte, in order")
				for i := range marks {
					want := dscp.Default().Video
					if i == tc.n {
						want = dscp.Default().Audio
					}
					require.Equal(t, want, marks[i], "mark of datagram %d", i)
					require.Equal(t, src, from[i].Addr(), "source of datagram %d", i)
				}
			}
			s := live.Snapshot()
			require.Equal(t, uint64(2*(tc.n+1)), s.PacketsOut)
			require.Equal(t, uint64(2*(bytes+len(pkts[0]))), s.BytesOut)
			require.Equal(t, tc.wantGSO, s.GSOSent)
			require.Equal(t, tc.wantFalls, s.GSOFallbacks)
			require.Zero(t, s.Dropped())
			require.Equal(t, s.PacketsOut, owner.Snapshot().PacketsOut)
		})
	}
}

// TestMarksBesideSocketDefault: video's mark is the socket's own TOS and
// its copies carry no control message; every other kind keeps its own
// mark, an unmarked one (0) included, on IPv4 and IPv6.
func TestMarksBesideSocketDefault(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct{ name, net, addr string }{{"ipv4", "udp4", "127.0.0.1:0"}, {"ipv6", "udp6", "[::1]:0"}} {
		t.Run(tc.name, func(t *testing.T) {
			ap := netip.MustParseAddrPort(tc.addr)
			sender, err := net.ListenUDP(tc.net, net.UDPAddrFromAddrPort(ap))
			require.NoError(t, err)
			defer sender.Close()
			recv, err := net.ListenUDP(tc.net, net.UDPAddrFromAddrPort(ap))
			require.NoError(t, err)
			defer recv.Close()
			require.NoError(t, dscp.EnableRecv(recv))
			rc, err := sender.SyscallConn()
			require.NoError(t, err)
			var fd int
			require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
			d := dscp.Config{Audio: 0, Video: 34, Content: 40}
			var live stats.Live
			b := NewBatch(fd, ap.Addr().Is6(), d, &live)
			dst := AddrOf(recv.LocalAddr().(*net.UDPAddr).AddrPort())
			pkt := []byte("marked")
			for _, k := range media.Kinds {
				b.Add(pkt, dst, k, nil)
			}
			b.Flush()
			_, marks, _ := recvN(t, recv, len(media.Kinds))
			for i, k := range media.Kinds {
				require.Equal(t, d.For(k), marks[i], k.String())
			}
			require.Nil(t, b.cmsgs[media.Video.Index()], "video rides on the socket's TOS")
		})
	}
}

// TestRawChunk: with SetHoldP a raw sendmmsg carries at most rawMaxCopies
// copies (super-packets counted by their segments), and at least one
// message.
func TestRawChunk(t *testing.T) {
	var live stats.Live
	const n = MaxMessages
	b := NewBatchSize(-1, false, dscp.Config{}, &live, n)
	b.gso = &gsoState{segn: make([]uint16, n), size: make([]uint16, n), bytes: make([]int32, n), dsts: make([]*Addr, n)}
	b.n = n
	require.Equal(t, rawMaxCopies, b.rawChunk(0), "plain messages")
	for i := range n {
		b.gso.segn[i] = 64
	}
	require.Equal(t, rawMaxCopies/64, b.rawChunk(0), "super-packets of 64")
	b.gso.segn[0] = rawMaxCopies + 1
	require.Equal(t, 1, b.rawChunk(0), "one message even above the bound")
	require.Equal(t, 4, b.rawChunk(n-4), "the rest")
	b.gso = nil
	require.Equal(t, n-rawMaxCopies-10, b.rawChunk(rawMaxCopies+10))
}
