package router

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// bindOnce sends one Bind (no retransmission) from a fresh socket and
// reports whether its BindAck came within d.
func bindOnce(t *testing.T, r *Router, tok wire.Token, txID uint32, d time.Duration) bool {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dialAddr(r)))
	require.NoError(t, err)
	defer c.Close()
	var b [wire.BindSize]byte
	n, err := (&wire.Bind{Kind: media.Audio, TxID: txID, Token: tok}).MarshalTo(b[:])
	require.NoError(t, err)
	_, err = c.Write(b[:n])
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		var ack wire.BindAck
		if ack.Unmarshal(buf[:n]) == nil && ack.TxID == txID {
			return true
		}
	}
}

// TestBindFloodFairness: one participant floods binds with its valid token
// from 256 source ports; every other participant's single bind (no
// retransmission) is still answered.
func TestBindFloodFairness(t *testing.T) {
	leaktest.Check(t)
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	flooder, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)

	var b [wire.BindSize]byte
	n, err := (&wire.Bind{Kind: media.Video, TxID: 1, Token: flooder.Token}).MarshalTo(b[:])
	require.NoError(t, err)
	pkt := b[:n]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Uint64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var socks []*net.UDPConn
			defer func() {
				for _, c := range socks {
					c.Close()
				}
			}()
			for range 64 {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dialAddr(r)))
				if err != nil {
					return
				}
				socks = append(socks, c)
			}
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = socks[i%len(socks)].Write(pkt)
				sent.Add(1)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Wait until the flood fills the router's bind path.
	require.Eventually(t, func() bool {
		d := r.Stats().Drops
		return d[stats.DropBindBusy]+d[stats.DropBindLimited] > 1000
	}, 20*time.Second, 5*time.Millisecond)

	lost := 0
	for i := range 15 {
		p, err := r.AddParticipant("m", ParticipantOptions{})
		require.NoError(t, err)
		if !bindOnce(t, r, p.Token, uint32(100+i), 5*time.Second) {
			lost++
		}
	}
	d := r.Stats().Drops
	t.Logf("flood sent %d binds; drops %v; challenges %d", sent.Load(), d, r.Stats().BindChallenges)
	require.Zero(t, lost, "binds of other participants lost during the flood")
}
