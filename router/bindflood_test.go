package router

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// TestBindFloodFairness: one participant floods authentic binds (signed
// with its token) from 256 source ports; every other participant still binds, with the
// protocol's retransmissions (on main the bind queue was full ~80% of the
// time: 19 of 30 single binds went unanswered).
func TestBindFloodFairness(t *testing.T) {
	leaktest.Check(t)
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	flooder, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)

	// Each flood Bind is authentic (the flooder holds its token): a new
	// counter each, so that readers pass it on to the bind queue, whose
	// fair shares are under test. (A copy of one Bind is refused before
	// the queue as bind_replayed.)
	var ctr wire.BindCounter
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
			var pkt [wire.BindSize]byte
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := wire.Bind{Kind: media.Video, TxID: uint32(i)}
				now := time.Now()
				b.Sign(flooder.Token, ctr.Next(now), now)
				_, _ = b.MarshalTo(pkt[:])
				_, _ = socks[i%len(socks)].Write(pkt[:])
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
	for range 30 {
		p, err := r.AddParticipant("m", ParticipantOptions{})
		require.NoError(t, err)
		// A real client: the protocol's 5 transmissions over 3.1 s, and
		// the challenge echo. Under the flood the kernel may drop one
		// datagram; only a router that keeps refusing loses the bind.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		f, err := udpmedia.Dial(ctx, dialAddr(r), media.Audio, p.Token)
		cancel()
		if err != nil {
			lost++
			continue
		}
		f.Close()
	}
	d := r.Stats().Drops
	t.Logf("flood sent %d binds; drops %v; challenges %d", sent.Load(), d, r.Stats().BindChallenges)
	require.Zero(t, lost, "binds of other participants lost during the flood")
}
