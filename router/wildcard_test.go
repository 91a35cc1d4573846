package router

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
)

// otherLocalIPv6 returns a global IPv6 address of this host other than ::1,
// or false.
func otherLocalIPv6() (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := pfx.Addr(); ip.Is6() && !ip.Is4In6() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// TestWildcardRepliesFromTheAddressUsed binds the router to a wildcard
// address and has each client send to a different local address of the
// host. The kernel would pick the same source for every reply (127.0.0.1,
// ::1), which a NAT or the client's filter (udpmedia accepts only packets
// from the address it sent to) drops; every bind answer, keepalive answer
// and media copy must come back from the address that client used, with
// its DSCP mark intact.
func TestWildcardRepliesFromTheAddressUsed(t *testing.T) {
	for _, g := range gsoModes {
		t.Run(g.name, func(t *testing.T) {
			v6, haveV6 := otherLocalIPv6()
			tests := []struct {
				name    string
				listen  string
				local   netip.Addr   // clients send from here
				targets []netip.Addr // one per member: the address it sends to
			}{
				{"ipv4", "0.0.0.0:0", netip.MustParseAddr("127.0.0.1"), []netip.Addr{
					netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.1")}},
				{"ipv6", "[::]:0", netip.MustParseAddr("::1"), []netip.Addr{v6, netip.MustParseAddr("::1")}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					if tc.name == "ipv6" && !haveV6 {
						t.Skip("no second local IPv6 address on this host")
					}
					r := newTestRouter(t, func(c *Config) {
						c.UDP = []netip.AddrPort{netip.MustParseAddrPort(tc.listen)}
						c.DSCP = dscp.Config{Audio: 46, Video: 34, Content: 36}
						c.DisableGSO = g.disable
					})
					port := r.UDPAddrs()[0].Port()
					require.NoError(t, r.CreateMeeting("m"))
					ms := make([]*member, len(tc.targets))
					for n, target := range tc.targets {
						info, err := r.AddParticipant("m", ParticipantOptions{})
						require.NoError(t, err)
						m := &member{info: info}
						for _, k := range media.Kinds {
							ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
							f, err := udpmedia.DialFrom(ctx, netip.AddrPortFrom(tc.local, 0), netip.AddrPortFrom(target, port), k, info.Token)
							cancel()
							require.NoError(t, err, "bind answer from %v", target)
							t.Cleanup(func() { f.Close() })
							require.NoError(t, dscp.EnableRecv(f.Conn()))
							m.flows[k.Index()] = f
							m.ssrc[k.Index()] = uint32(n+1)<<8 | uint32(k)
							require.NoError(t, r.Publish(info.ID, k, m.ssrc[k.Index()]))
						}
						ms[n] = m
					}
					for n, m := range ms {
						for _, k := range media.Kinds {
							require.NoError(t, m.flows[k.Index()].Send(m.rtpPacket(t, k, 300)))
						}
						for o, other := range ms {
							if o == n {
								continue
							}
							for _, k := range media.Kinds {
								conn := other.flows[k.Index()].Conn()
								buf, oob := make([]byte, 2048), make([]byte, 128)
								require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
								_, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
								require.NoError(t, err, "member %d's %s copy to member %d", n, k, o)
								require.Equal(t, netip.AddrPortFrom(tc.targets[o], port), from, "sent from the address member %d uses", o)
								mark, ok := dscp.ParseRecv(oob[:oobn])
								require.True(t, ok)
								require.Equal(t, r.cfg.DSCP.For(k), mark, k.String())
							}
						}
					}
					for n, m := range ms {
						f := m.flows[media.Video.Index()]
						require.NoError(t, f.Keepalive())
						got := recvAll(f, 1, 3*time.Second)
						require.Len(t, got, 1, "member %d's keepalive answer", n)
						require.Equal(t, byte(7), got[0][0])
					}
					require.Zero(t, r.Stats().Dropped())
				})
			}
		})
	}
}
