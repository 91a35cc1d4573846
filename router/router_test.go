package router

import (
	"bytes"
	"github.com/openmmr/mmr/internal/leaktest"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

func TestThreeParticipantsAllKinds(t *testing.T) {
	for _, g := range gsoModes {
		t.Run(g.name, func(t *testing.T) {
			r := newTestRouter(t, func(c *Config) { c.DisableGSO = g.disable })
			require.NoError(t, r.CreateMeeting("m1"))
			ms := []*member{join(t, r, "m1", 1), join(t, r, "m1", 2), join(t, r, "m1", 3)}
			const perKind = 30
			sent := map[*member][media.NumKinds][][]byte{}
			for _, m := range ms {
				var s [media.NumKinds][][]byte
				for _, k := range media.Kinds {
					for i := 0; i < perKind; i++ {
						pkt := m.rtpPacket(t, k, 200+i*30)
						s[k.Index()] = append(s[k.Index()], pkt)
						require.NoError(t, m.flows[k.Index()].Send(pkt))
					}
				}
				sent[m] = s
			}
			for _, m := range ms {
				for _, k := range media.Kinds {
					t.Run(k.String(), func(t *testing.T) {
						var want [][]byte
						for _, o := range ms {
							if o != m {
								want = append(want, sent[o][k.Index()]...)
							}
						}
						got := recvAll(m.flows[k.Index()], len(want), 5*time.Second)
						sortBytes(want)
						sortBytes(got)
						require.Equal(t, want, got, "each receives exactly the others' %s packets", k)
						require.True(t, quiet(m.flows[k.Index()], 100*time.Millisecond), "no extra packets")
					})
				}
			}
			st := r.Stats()
			require.Equal(t, uint64(18+9*perKind), st.PacketsIn, "9 binds, their 9 challenge echoes and every media packet")
			require.Equal(t, uint64(18+18*perKind), st.PacketsOut, "9 challenges, 9 bind answers and two copies of each packet")
			require.Equal(t, uint64(9), st.BindChallenges)
			require.Zero(t, st.Dropped())
			ps, err := r.ParticipantStats(ms[0].info.ID)
			require.NoError(t, err)
			require.Equal(t, uint64(3*perKind), ps.PacketsIn)
			require.Equal(t, uint64(2*3*perKind), ps.PacketsOut)
			mst, err := r.MeetingStats("m1")
			require.NoError(t, err)
			require.Equal(t, uint64(9*perKind), mst.PacketsIn)
			require.Equal(t, uint64(18*perKind), mst.PacketsOut)
		})
	}
}

func sortBytes(b [][]byte) { slices.SortFunc(b, bytes.Compare) }

func TestMeetingsAreIsolated(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("a"))
	require.NoError(t, r.CreateMeeting("b"))
	a1, a2 := join(t, r, "a", 1), join(t, r, "a", 2)
	b1 := join(t, r, "b", 3)
	pkt := a1.rtpPacket(t, media.Audio, 100)
	require.NoError(t, a1.flows[0].Send(pkt))
	require.Equal(t, [][]byte{pkt}, recvAll(a2.flows[0], 1, 3*time.Second))
	require.True(t, quiet(b1.flows[0], 150*time.Millisecond), "meeting b hears nothing of meeting a")
}

func TestLeaveStopsAtOnce(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b := join(t, r, "m", 1), join(t, r, "m", 2)
	require.NoError(t, a.flows[0].Send(a.rtpPacket(t, media.Audio, 100)))
	require.Len(t, recvAll(b.flows[0], 1, 3*time.Second), 1)
	require.NoError(t, r.RemoveParticipant(b.info.ID))
	require.NoError(t, a.flows[0].Send(a.rtpPacket(t, media.Audio, 100)))
	require.True(t, quiet(b.flows[0], 200*time.Millisecond), "a removed participant receives nothing")
	// b's own packets are now from an unbound address.
	before := r.Stats().Drops[stats.DropUnbound]
	require.NoError(t, b.flows[0].Send(b.rtpPacket(t, media.Audio, 100)))
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropUnbound] == before+1 }, 2*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, r.RemoveParticipant(b.info.ID), ErrNoParticipant)
}

func TestRebindKeepsMediaFlowing(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b := join(t, r, "m", 1), join(t, r, "m", 2)
	v := media.Video.Index()
	oldAddr := b.flows[v].LocalAddr()
	require.NoError(t, b.flows[v].Rebind(t.Context()))
	require.NotEqual(t, oldAddr, b.flows[v].LocalAddr())
	got, ok := r.Bound(b.info.ID, media.Video)
	require.True(t, ok)
	require.Equal(t, b.flows[v].LocalAddr().Port(), got.Port())
	require.Equal(t, got, b.flows[v].Mapped())
	// b still receives on its new port, and can still publish from it.
	p1 := a.rtpPacket(t, media.Video, 500)
	require.NoError(t, a.flows[v].Send(p1))
	require.Equal(t, [][]byte{p1}, recvAll(b.flows[v], 1, 3*time.Second))
	p2 := b.rtpPacket(t, media.Video, 500)
	require.NoError(t, b.flows[v].Send(p2))
	require.Equal(t, [][]byte{p2}, recvAll(a.flows[v], 1, 3*time.Second))
}

func TestSubscriptions(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b, c := join(t, r, "m", 1), join(t, r, "m", 2), join(t, r, "m", 3)
	// c: audio only; video only from a.
	require.NoError(t, r.Subscribe(c.info.ID, media.Video, From(a.info.ID)))
	require.NoError(t, r.Subscribe(c.info.ID, media.Content, None()))
	av, bv, bc := a.rtpPacket(t, media.Video, 300), b.rtpPacket(t, media.Video, 300), b.rtpPacket(t, media.Content, 300)
	require.NoError(t, a.flows[1].Send(av))
	require.NoError(t, b.flows[1].Send(bv))
	require.NoError(t, b.flows[2].Send(bc))
	require.Equal(t, [][]byte{av}, recvAll(c.flows[1], 1, 3*time.Second))
	require.True(t, quiet(c.flows[1], 150*time.Millisecond), "b's video filtered out")
	require.True(t, quiet(c.flows[2], 50*time.Millisecond), "content unsubscribed")
	require.Len(t, recvAll(a.flows[2], 1, 3*time.Second), 1, "others still get content")
	require.NoError(t, r.Subscribe(c.info.ID, media.Video, All()))
	require.NoError(t, b.flows[1].Send(bv))
	require.Equal(t, [][]byte{bv}, recvAll(c.flows[1], 1, 3*time.Second))
}

func TestDropsByReason(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b := join(t, r, "m", 1), join(t, r, "m", 2)
	stranger, err := net.ListenUDP("udp4", nil)
	require.NoError(t, err)
	defer stranger.Close()
	dst := r.UDPAddrs()[0]
	badBind := make([]byte, wire.BindSize)
	badBind[0], badBind[1], badBind[2] = 4, 2, 1 // well-formed bind naming the all-zero handle
	unknown := a.rtpPacket(t, media.Audio, 100)
	unknown[8] ^= 0xff // SSRC a never published
	cases := []struct {
		name   string
		send   func() error
		reason stats.DropReason
	}{
		{"unbound source", func() error { _, err := stranger.WriteToUDPAddrPort(a.rtpPacket(t, media.Audio, 100), dst); return err }, stats.DropUnbound},
		{"bad token", func() error { _, err := stranger.WriteToUDPAddrPort(badBind, dst); return err }, stats.DropBadToken},
		{"short bind", func() error { _, err := stranger.WriteToUDPAddrPort(badBind[:10], dst); return err }, stats.DropMalformed},
		{"oversize", func() error { _, err := a.flows[0].Conn().WriteToUDPAddrPort(make([]byte, 1600), dst); return err }, stats.DropOversize},
		{"garbage first byte", func() error { return a.flows[0].Send([]byte{0x42, 1, 2, 3}) }, stats.DropMalformed},
		{"garbage first byte, unbound source", func() error { _, err := stranger.WriteToUDPAddrPort([]byte{0x42, 1, 2, 3}, dst); return err }, stats.DropMalformed},
		{"bind ack sent to the router", func() error {
			b := make([]byte, wire.BindAckSize)
			b[0], b[1], b[2] = wire.TypeBindAck, wire.Version, 1
			_, err := stranger.WriteToUDPAddrPort(b, dst)
			return err
		}, stats.DropMalformed},
		{"truncated rtp", func() error { return a.flows[0].Send([]byte{0x80, 96, 0, 1, 0}) }, stats.DropMalformed},
		{"unknown ssrc", func() error { return a.flows[0].Send(unknown) }, stats.DropUnknownSSRC},
		{"rtcp bad length", func() error { return a.flows[0].Send([]byte{0x81, 201, 0, 9, 0, 0, 0, 1}) }, stats.DropRTCPMalformed},
		{"rtcp unknown ssrc", func() error { return a.flows[0].Send(pli(1, 0xdeadbeef)) }, stats.DropRTCPUnknownSSRC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Stats().Drops[tc.reason]
			require.NoError(t, tc.send())
			require.Eventually(t, func() bool { return r.Stats().Drops[tc.reason] == before+1 }, 2*time.Second, 2*time.Millisecond)
		})
	}
	require.True(t, quiet(b.flows[0], 100*time.Millisecond), "nothing dropped was forwarded")
	ps, err := r.ParticipantStats(a.info.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), ps.Drops[stats.DropUnknownSSRC])
}

// pli builds an RTCP PLI (RFC 4585 §6.3.1) from sender about media ssrc.
func pli(sender, ssrc uint32) []byte {
	b := []byte{0x81, 206, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}
	be32(b[4:], sender)
	be32(b[8:], ssrc)
	return b
}

// sr builds an RTCP sender report (RFC 3550 §6.4.1) with no report blocks.
func sr(ssrc uint32) []byte {
	b := make([]byte, 28)
	b[0], b[1], b[3] = 0x80, 200, 6
	be32(b[4:], ssrc)
	return b
}

func be32(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v) }

func TestRTCPRouting(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b, c := join(t, r, "m", 1), join(t, r, "m", 2), join(t, r, "m", 3)
	v := media.Video.Index()
	// c asks a for a keyframe: only a gets it.
	fb := pli(c.ssrc[v], a.ssrc[v])
	require.NoError(t, c.flows[v].Send(fb))
	require.Equal(t, [][]byte{fb}, recvAll(a.flows[v], 1, 3*time.Second))
	require.True(t, quiet(b.flows[v], 100*time.Millisecond), "feedback goes to the publisher only")
	// a's sender report goes to a's subscribers b and c.
	rep := sr(a.ssrc[v])
	require.NoError(t, a.flows[v].Send(rep))
	require.Equal(t, [][]byte{rep}, recvAll(b.flows[v], 1, 3*time.Second))
	require.Equal(t, [][]byte{rep}, recvAll(c.flows[v], 1, 3*time.Second))
}

func TestKeepaliveAnswered(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a := join(t, r, "m", 1)
	require.NoError(t, a.flows[0].Keepalive())
	got := recvAll(a.flows[0], 1, 3*time.Second)
	for len(got) == 1 && got[0][0] == wire.TypeBindAck {
		// The answer to a bind the client retransmitted (a busy machine)
		// may arrive after the one that completed the bind.
		got = recvAll(a.flows[0], 1, 3*time.Second)
	}
	require.Len(t, got, 1)
	require.Equal(t, byte(7), got[0][0], "keepalive ack")
}

func TestDSCPPerKindOnOnePort(t *testing.T) {
	for _, g := range gsoModes {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				addr string
			}{{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}} {
				t.Run(tc.name, func(t *testing.T) {
					r := newTestRouter(t, func(c *Config) {
						c.UDP = []netip.AddrPort{netip.MustParseAddrPort(tc.addr)}
						c.DSCP = dscp.Config{Audio: 46, Video: 34, Content: 40}
						c.DisableGSO = g.disable
					})
					require.NoError(t, r.CreateMeeting("m"))
					a, b := join(t, r, "m", 1), join(t, r, "m", 2)
					for _, k := range media.Kinds {
						conn := b.flows[k.Index()].Conn()
						require.NoError(t, dscp.EnableRecv(conn))
						require.NoError(t, a.flows[k.Index()].Send(a.rtpPacket(t, k, 200)))
						buf, oob := make([]byte, 2048), make([]byte, 128)
						require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
						_, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
						require.NoError(t, err)
						require.Equal(t, r.UDPAddrs()[0].Port(), from.Port(), "sent from the port the client talks to")
						got, ok := dscp.ParseRecv(oob[:oobn])
						require.True(t, ok, "TOS reported")
						require.Equal(t, map[media.Kind]uint8{media.Audio: 46, media.Video: 34, media.Content: 40}[k], got, k.String())
					}
				})
			}
		})
	}
}

func TestTwoRoutersOneProcessAndCleanClose(t *testing.T) {
	leaktest.Check(t)
	for _, mode := range []string{"blocking", "poll"} {
		t.Run(mode, func(t *testing.T) {
			var rs []*Router
			for i := 0; i < 2; i++ {
				cfg := Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 2}
				if mode == "poll" {
					cfg.ReadMode = 1
				}
				r, err := New(cfg)
				require.NoError(t, err)
				rs = append(rs, r)
				require.NoError(t, r.CreateMeeting("same-id"))
				a, b := join(t, r, "same-id", 1), join(t, r, "same-id", 2)
				p := a.rtpPacket(t, media.Audio, 160)
				require.NoError(t, a.flows[0].Send(p))
				require.Equal(t, [][]byte{p}, recvAll(b.flows[0], 1, 3*time.Second))
			}
			require.NotEqual(t, rs[0].UDPAddrs(), rs[1].UDPAddrs())
			for _, r := range rs {
				start := time.Now()
				require.NoError(t, r.Close())
				require.NoError(t, r.Close(), "idempotent")
				t.Logf("Close took %v", time.Since(start))
				require.ErrorIs(t, r.CreateMeeting("x"), ErrClosed)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"shards", Config{Shards: -1}},
		{"batch", Config{Batch: MaxBatch + 1}},
		{"dscp", Config{DSCP: dscp.Config{Audio: 64}}},
		{"buffer", Config{SocketBuffer: 10}},
		{"mode", Config{ReadMode: 9}},
		{"coalesce", Config{Coalesce: MaxCoalesce + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			require.Error(t, err)
		})
	}
}

// TestFailingDestinationDoesNotHurtOthers puts a subscriber whose every
// send fails (a broadcast address, refused with EACCES because the socket
// has no SO_BROADCAST) between two healthy ones: they receive every packet
// and each failed copy is counted once, against the failing subscriber.
func TestFailingDestinationDoesNotHurtOthers(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.Shards = 1 })
	require.NoError(t, r.CreateMeeting("m"))
	a, b := join(t, r, "m", 1), join(t, r, "m", 2)
	var fixed [media.NumKinds]netip.AddrPort
	fixed[media.Audio.Index()] = netip.MustParseAddrPort("255.255.255.255:9")
	bad, err := r.AddParticipant("m", ParticipantOptions{Name: "broken", Fixed: fixed})
	require.NoError(t, err)
	c := join(t, r, "m", 3)
	const n = 200
	for i := 0; i < n; i++ {
		require.NoError(t, a.flows[0].Send(a.rtpPacket(t, media.Audio, 120)))
	}
	require.Len(t, recvAll(b.flows[0], n, 5*time.Second), n)
	require.Len(t, recvAll(c.flows[0], n, 5*time.Second), n)
	require.Eventually(t, func() bool {
		st, err := r.ParticipantStats(bad.ID)
		return err == nil && st.Drops[stats.DropSendError] == n && st.PacketsOut == 0
	}, 3*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(n), r.Stats().Drops[stats.DropSendError])
}

func TestIdleFlowsExpireKeepalivesHold(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	require.NoError(t, r.CreateMeeting("m"))
	var fixed [media.NumKinds]netip.AddrPort
	fixed[0] = netip.MustParseAddrPort("127.0.0.1:9")
	gw, err := r.AddParticipant("m", ParticipantOptions{Fixed: fixed})
	require.NoError(t, err)
	a := join(t, r, "m", 1)
	stop := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(stop) { // audio keeps alive, video and content fall silent
		require.NoError(t, a.flows[0].Keepalive())
		time.Sleep(50 * time.Millisecond)
	}
	_, ok := r.Bound(a.info.ID, media.Audio)
	require.True(t, ok, "kept alive")
	_, ok = r.Bound(a.info.ID, media.Video)
	require.False(t, ok, "idle flow unbound")
	_, ok = r.Bound(gw.ID, media.Audio)
	require.True(t, ok, "fixed addresses never expire")
	before := r.Stats().Drops[stats.DropUnbound]
	require.NoError(t, a.flows[1].Send(a.rtpPacket(t, media.Video, 100)))
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropUnbound] == before+1 }, 2*time.Second, 5*time.Millisecond)
	require.NoError(t, a.flows[1].Rebind(t.Context()), "binding again restores the flow")
	_, ok = r.Bound(a.info.ID, media.Video)
	require.True(t, ok)
}

// TestSecondRouterOnHeldPort: a second router on the UDP port of a live one
// (SO_REUSEPORT, same user) refuses to start instead of taking part of the
// traffic.
func TestSecondRouterOnHeldPort(t *testing.T) {
	leaktest.Check(t)
	r := newTestRouter(t)
	_, err := New(Config{UDP: r.UDPAddrs(), Shards: 1, DisableTCP: true})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.Contains(t, err.Error(), "already held by another socket")
}
