package ingress

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pktinfo builds the control data the kernel writes for IP_PKTINFO or
// IPV6_PKTINFO.
func pktinfo(a netip.Addr, ifIndex uint32) []byte {
	if a.Is4() {
		b := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Ifindex, pi.Addr = int32(ifIndex), a.As4()
		return b
	}
	b := make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	pi.Addr, pi.Ifindex = a.As16(), ifIndex
	return b
}

// withControl puts ctl into message 0's control slot as recvmmsg would.
func withControl(b *Batch, ctl []byte) {
	n := copy(b.ctl[:ctlSpace], ctl)
	b.msgs[0].Hdr.SetControllen(n)
}

func TestDest(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name string
		ctl  []byte
		want netip.Addr
		ifi  uint32
		ok   bool
	}{
		{"ipv4", pktinfo(v4, 3), v4, 3, true},
		{"ipv6", pktinfo(v6, 5), v6, 5, true},
		{"none", nil, netip.Addr{}, 0, false},
		{"truncated", pktinfo(v6, 5)[:20], netip.Addr{}, 0, false},
		{"length beyond the data", func() []byte {
			b := pktinfo(v4, 1)
			(*unix.Cmsghdr)(unsafe.Pointer(&b[0])).SetLen(200)
			return b
		}(), netip.Addr{}, 0, false},
		{"other message", func() []byte {
			b := pktinfo(v4, 1)
			(*unix.Cmsghdr)(unsafe.Pointer(&b[0])).Type = unix.IP_TOS
			return b
		}(), netip.Addr{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatch(1)
			withControl(b, tc.ctl)
			a, ifi, ok := b.Dest(0)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, a)
			require.Equal(t, tc.ifi, ifi)
		})
	}
}

// TestDestOverRealSocket: a wildcard socket reports the address each
// datagram was sent to; a socket bound to one address is not asked to.
func TestDestOverRealSocket(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "127.0.0.1:0"} {
		t.Run(listen, func(t *testing.T) {
			socks, err := Listen(netip.MustParseAddrPort(listen), 1, Blocking, 0)
			require.NoError(t, err)
			s := socks[0]
			defer s.Close()
			require.Equal(t, listen == "0.0.0.0:0", s.Wildcard())
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			require.NoError(t, err)
			defer unix.Close(c)
			to := netip.MustParseAddr("127.0.0.1")
			if s.Wildcard() {
				to = netip.MustParseAddr("127.0.0.3")
			}
			require.NoError(t, unix.Sendto(c, []byte("x"), 0, &unix.SockaddrInet4{Port: int(s.LocalAddr().Port()), Addr: to.As4()}))
			b := NewBatch(4)
			n, err := s.Read(b)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			a, _, ok := b.Dest(0)
			require.Equal(t, s.Wildcard(), ok)
			if ok {
				require.Equal(t, to, a)
			}
		})
	}
}

func FuzzDest(f *testing.F) {
	f.Add(pktinfo(netip.MustParseAddr("192.0.2.1"), 1))
	f.Add(pktinfo(netip.MustParseAddr("2001:db8::1"), 2))
	f.Add(append(pktinfo(netip.MustParseAddr("192.0.2.1"), 1)[:16], 0))
	b := NewBatch(1)
	f.Fuzz(func(t *testing.T, ctl []byte) {
		withControl(b, ctl)
		a, _, ok := b.Dest(0)
		if ok != a.IsValid() {
			t.Fatalf("ok %v with address %v", ok, a)
		}
	})
}
