package router

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
)

// TestStreamDSCPOnTheWire captures loopback traffic with an AF_PACKET
// socket and checks the TOS byte of the TCP segments the router sends on
// each kind's media stream. Needs CAP_NET_RAW (root).
func TestStreamDSCPOnTheWire(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("AF_PACKET capture needs root")
	}
	want := dscp.Config{Audio: 46, Video: 34, Content: 40}
	r := newTestRouter(t, func(c *Config) { c.DSCP = want })
	require.NoError(t, r.CreateMeeting("m"))
	routerPort := r.TCPAddrs()[0].Port()
	lo := captureTCPFrom(t, routerPort)
	pub := join(t, r, "m", 1)
	_, sub := joinStream(t, r, "m", 2, r.TCPAddrs()[0], nil)
	for _, k := range media.Kinds {
		t.Run(k.String(), func(t *testing.T) {
			clientPort := addrPortOf(sub[k.Index()].Conn().LocalAddr()).Port()
			require.NoError(t, pub.flows[k.Index()].Send(pub.rtpPacket(t, k, 300)))
			require.Len(t, recvAll(sub[k.Index()], 1, 3*time.Second), 1)
			buf := make([]byte, 65536)
			var seen []string
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				n, _, err := unix.Recvfrom(lo, buf, 0)
				if err != nil || n < 24 || buf[0]>>4 != 4 || buf[9] != unix.IPPROTO_TCP {
					continue
				}
				ihl := int(buf[0]&0x0f) * 4
				total := int(binary.BigEndian.Uint16(buf[2:]))
				src, dst := binary.BigEndian.Uint16(buf[ihl:]), binary.BigEndian.Uint16(buf[ihl+2:])
				dataOff := int(buf[ihl+12]>>4) * 4
				seen = append(seen, fmt.Sprintf("%d->%d len %d tos %d", src, dst, total, buf[1]))
				if src != routerPort || dst != clientPort || total-ihl-dataOff < 302 {
					continue // not the framed 300-byte media packet
				}
				require.Equal(t, want.For(k), dscp.FromTOS(int(buf[1])), "TOS of %s stream", k)
				return
			}
			t.Fatalf("no media segment %d->%d captured; saw %v", routerPort, clientPort, seen)
		})
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func unixInterfaceIndex(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

// captureTCPFrom opens an AF_PACKET socket on lo that receives only IPv4
// TCP segments from port (a classic BPF filter, so other tests' loopback
// traffic cannot crowd them out).
func captureTCPFrom(t *testing.T, port uint16) int {
	t.Helper()
	lo, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(lo) })
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},                        // A = IP protocol
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.IPPROTO_TCP, Jf: 4}, // not TCP: drop
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},                       // X = IP header length
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 0},                        // A = TCP source port
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(port), Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	require.NoError(t, unix.SetsockoptSockFprog(lo, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog))
	_ = unix.SetsockoptInt(lo, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	require.NoError(t, unix.SetsockoptTimeval(lo, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	ifi, err := unixInterfaceIndex("lo")
	require.NoError(t, err)
	require.NoError(t, unix.Bind(lo, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi}))
	return lo
}
