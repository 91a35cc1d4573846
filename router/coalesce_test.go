package router

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
)

func TestCoalescerNext(t *testing.T) {
	const w = int64(500 * time.Microsecond)
	type read = struct {
		n     int
		full  bool
		at    int64 // µs
		pause bool  // the expected answer
	}
	tests := []struct {
		name   string
		window int64
		reads  []read
	}{
		{"off", 0, []read{{1, false, 0, false}, {1, false, 100, false}, {1, false, 200, false}}},
		{"slow rate never pauses", w, []read{{1, false, 0, false}, {1, false, 1000, false}, {1, false, 2000, false}, {1, false, 3000, false}}},
		{"fast rate pauses", w, []read{{1, false, 0, false}, {1, false, 200, true}}},
		{"late wake-up counts per packet", w, []read{{1, false, 0, false}, {4, false, 800, true}}},
		{"keeps pausing at two per window", w, []read{{1, false, 0, false}, {1, false, 200, true}, {3, false, 700, true}, {2, false, 1200, true}}},
		{"stops below two per window", w, []read{{1, false, 0, false}, {1, false, 200, true}, {1, false, 700, false}}},
		{"empty pause stops", w, []read{{1, false, 0, false}, {1, false, 200, true}, {0, false, 700, false}}},
		{"full batch reads at once", w, []read{{1, false, 0, false}, {1, false, 200, true}, {64, true, 700, false}, {64, true, 710, false}}},
		{"one early packet alone does not start", w, []read{{1, false, 0, false}, {1, false, 2000, false}, {1, false, 4000, false}, {1, false, 4010, false}}},
		{"a steady fast rate after a slow one starts", w, slowThenFast()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := coalescer{window: tt.window}
			for i, r := range tt.reads {
				require.Equal(t, r.pause, c.next(r.n, r.full, (1e6+r.at)*1000), "read %d (%+v)", i, r)
			}
		})
	}
}

// slowThenFast is one gap of 2 ms, then gaps of 100 µs: the average falls
// below a quarter window (two packets per window) at the 9th fast packet.
func slowThenFast() []struct {
	n     int
	full  bool
	at    int64
	pause bool
} {
	r := []struct {
		n     int
		full  bool
		at    int64
		pause bool
	}{{1, false, 0, false}, {1, false, 2000, false}}
	for i := 1; i <= 9; i++ {
		r = append(r, struct {
			n     int
			full  bool
			at    int64
			pause bool
		}{1, false, 2000 + int64(i)*100, i == 9})
	}
	return r
}

// TestCoalescedForwarding sends one publisher's packets in frames of 10 every
// 500 µs or so (up to 20,000 packets/s) over real sockets: with coalescing on (the default) the reader
// pauses between reads and forwards what gathered, and every packet still
// reaches the subscriber exactly once, byte for byte and in order, with GSO
// on and off; with it off nothing is coalesced.
func TestCoalescedForwarding(t *testing.T) {
	for _, g := range gsoModes {
		for _, co := range []struct {
			name     string
			coalesce time.Duration
		}{{"coalesce", 0}, {"off", -1}} {
			t.Run(g.name+"/"+co.name, func(t *testing.T) {
				r := newTestRouter(t, func(c *Config) {
					c.DisableGSO = g.disable
					c.Coalesce = co.coalesce
					c.Shards = 1
				})
				require.NoError(t, r.CreateMeeting("m"))
				pub, sub := join(t, r, "m", 1), join(t, r, "m", 2)
				const n = 2000
				const frame = 10                   // packets sent back to back, as a video frame's
				const gap = 500 * time.Microsecond // between frames: about 10,000 packets/s at most
				rx := make(chan [][]byte, 1)
				go func() { rx <- recvAll(sub.flows[media.Video.Index()], n, 10*time.Second) }()
				var sent [][]byte
				for i := range n {
					if i%frame == 0 {
						time.Sleep(gap)
					}
					pkt := pub.rtpPacket(t, media.Video, 200+(i/5%3)*100) // runs of 5 of one size
					sent = append(sent, pkt)
					require.NoError(t, pub.flows[media.Video.Index()].Send(pkt))
				}
				got := <-rx
				st := r.Stats()
				require.Equal(t, n, len(got), "every packet arrives (router: %d in, %d out, drops %v, kernel drops %d)", st.PacketsIn, st.PacketsOut, st.Drops, st.KernelDrops)
				for i := range sent {
					require.True(t, bytes.Equal(sent[i], got[i]), "packet %d byte for byte, in order", i)
				}
				require.Zero(t, st.Dropped())
				if co.coalesce < 0 {
					require.Zero(t, st.Coalesced)
				} else {
					require.NotZero(t, st.Coalesced, "the reader paused and read several packets at once")
				}
				t.Logf("coalesced reads: %d for %d packets; GSO super-packets %d", st.Coalesced, n, st.GSOSent)
			})
		}
	}
}
