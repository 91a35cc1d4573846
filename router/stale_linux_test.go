package router

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// TestStaleMediaDroppedAfterStall: a reader that gets to its socket late
// (stalled longer than MaxPacketAge) drops the media that waited, by the
// kernel's receive timestamps, instead of forwarding it in a burst; what
// arrives after the stall is forwarded. The stall is real: the test
// drives a reader of its own on a socket nobody reads meanwhile.
func TestStaleMediaDroppedAfterStall(t *testing.T) {
	leaktest.Check(t)
	const maxAge = 200 * time.Millisecond
	r := newTestRouter(t, func(c *Config) { c.MaxPacketAge = maxAge; c.Shards = 1 })
	require.NoError(t, r.CreateMeeting("m"))
	pub, sub := join(t, r, "m", 1), join(t, r, "m", 2)

	socks, err := ingress.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 1, ingress.Blocking, 1<<20)
	require.NoError(t, err)
	defer socks[0].Close()
	rd := newReader(r, -1, 0, socks[0]) // group -1: copies leave from the router's own socket
	to := socks[0].LocalAddr()
	send := func(n int) {
		for range n {
			_, err := pub.flows[0].Conn().WriteToUDPAddrPort(pub.rtpPacket(t, media.Audio, 200), to)
			require.NoError(t, err)
		}
	}
	read := func() int {
		n, err := socks[0].Read(rd.in)
		require.NoError(t, err)
		rd.process(n)
		return n
	}

	// The kernel turns receive timestamping on asynchronously the first
	// time a socket asks (a static key flipped from a workqueue); until
	// then datagrams are stamped when read. Wait until a probe that waits
	// 20 ms in the buffer shows its real age.
	probe := make([]byte, 4) // unknown first byte: dropped, never forwarded
	require.Eventually(t, func() bool {
		_, err := pub.flows[0].Conn().WriteToUDPAddrPort(probe, to)
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond) // the wait whose length the timestamp must show
		n, err := socks[0].Read(rd.in)
		require.NoError(t, err)
		return n == 1 && time.Now().UnixNano()-rd.in.Received(0) >= int64(15*time.Millisecond)
	}, 10*time.Second, time.Millisecond)

	send(10)
	time.Sleep(2 * maxAge) // the stall under test, not synchronisation
	send(1)                // arrives after the stall: fresh
	got := 0
	for got < 11 {
		got += read()
	}
	require.Equal(t, uint64(10), rd.live.Snapshot().Drops[stats.DropStale], "the 10 packets that waited")
	pkts := recvAll(sub.flows[0], 2, 2*time.Second)
	require.Len(t, pkts, 1, "only the fresh packet is forwarded")
}
