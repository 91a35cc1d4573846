package router

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
)

// TestZeroAllocsPerForwardedPacket measures the whole process's allocations
// while one RTP packet and one RTCP report go in and are fanned out to 5
// subscribers over real sockets (the send and receive calls used on the
// client side do not allocate either), in both read modes, and on a
// wildcard address (every copy then carries a source address).
func TestZeroAllocsPerForwardedPacket(t *testing.T) {
	for _, mode := range []string{"blocking", "poll", "wildcard"} {
		t.Run(mode, func(t *testing.T) {
			r := newTestRouter(t, func(c *Config) {
				c.Shards = 1
				// The subscribers send no keepalives: under -race beside a CPU
				// hog the test ran past the default 30 s and their consent
				// lapsed (DropNoConsent, a receive timed out).
				c.ConsentTimeout = 10 * time.Minute
				// Likewise a datagram the reader took up after a 500 ms stall
				// was dropped as stale (DropStale); the age check stays on.
				c.MaxPacketAge = time.Minute
				switch mode {
				case "poll":
					c.ReadMode = 1
				case "wildcard":
					c.UDP = []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}
				}
			})
			require.NoError(t, r.CreateMeeting("m"))
			pub := join(t, r, "m", 1)
			var subs []*member
			for i := 0; i < 5; i++ {
				subs = append(subs, join(t, r, "m", 2+i))
			}
			v := media.Video.Index()
			pkt := pub.rtpPacket(t, media.Video, 1200)
			report := sr(pub.ssrc[v])
			buf := make([]byte, 2048)
			roundTrip := func(p []byte) {
				// A deadline per round trip, not per test: 400 round trips
				// under the race detector on a loaded machine took over 30 s.
				deadline := time.Now().Add(30 * time.Second)
				if err := pub.flows[v].Send(p); err != nil {
					panic(err)
				}
				for _, s := range subs {
					if _, err := s.flows[v].Recv(buf, deadline); err != nil {
						panic(err)
					}
				}
			}
			roundTrip(pkt)        // warm up: the reused RTP header grows its slices once
			keepalive := func() { // consent nonce checked and renewed by the reader
				if err := pub.flows[v].Keepalive(); err != nil {
					panic(err)
				}
				if _, err := pub.flows[v].Recv(buf, time.Now().Add(30*time.Second)); err != nil {
					panic(err)
				}
			}
			keepalive()
			allocs := testing.AllocsPerRun(200, func() {
				roundTrip(pkt)
				roundTrip(report)
				keepalive()
			})
			require.Zero(t, allocs, "allocations per forwarded packet")
			// Counted after the send returns: the last copy may be read first.
			require.Eventually(t, func() bool {
				st, err := r.ParticipantStats(subs[0].info.ID)
				return err == nil && st.PacketsOut == uint64(2*201+1)
			}, 5*time.Second, time.Millisecond, "copies counted")
		})
	}
}

// TestZeroAllocsTCP: a packet from a TCP publisher to a TCP and a UDP
// subscriber, and back, allocates nothing in the whole process.
func TestZeroAllocsTCP(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.Shards = 1 })
	require.NoError(t, r.CreateMeeting("m"))
	tp, tflows := joinStream(t, r, "m", 1, r.TCPAddrs()[0], nil)
	_, tsub := joinStream(t, r, "m", 2, r.TCPAddrs()[0], nil)
	usub := join(t, r, "m", 3)
	v := media.Video.Index()
	pkt := tp.rtpPacket(t, media.Video, 1200)
	buf := make([]byte, 2048)
	deadline := time.Now().Add(30 * time.Second)
	roundTrip := func() {
		if err := tflows[v].Send(pkt); err != nil {
			panic(err)
		}
		if _, err := tsub[v].Recv(buf, deadline); err != nil {
			panic(err)
		}
		if _, err := usub.flows[v].Recv(buf, deadline); err != nil {
			panic(err)
		}
	}
	for i := 0; i < 10; i++ {
		roundTrip() // warm the frame pool and the writer's buffers
	}
	require.Zero(t, testing.AllocsPerRun(200, roundTrip), "allocations per packet over TCP")
}
