package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVideoFrames checks the video traffic's shape: frames of 5 to 10
// packets in a cycle, every packet of a frame full-size but the last,
// which is shorter and at least a header; burstLimit ends bursts at frame
// boundaries.
func TestVideoFrames(t *testing.T) {
	var lens []int
	frame := 0
	for seq := range uint16(3 * videoCycle) {
		idx, n := videoFrame(seq)
		require.Equal(t, videoMinFrame+frame%6, n, "frame %d", frame)
		l := videoLen(seq, 1200)
		if idx == n-1 {
			require.Less(t, l, 1200)
			require.GreaterOrEqual(t, l, rtpHeaderLen)
			lens = append(lens, l)
			frame++
		} else {
			require.Equal(t, 1200, l)
		}
	}
	require.Len(t, lens, 18)
	p := &publisher{video: true, bufs: [pubBurst][]byte{}}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, 1200)
	}
	p.seq = 5 // second frame: 6 packets
	require.Equal(t, 6, p.burstLimit())
	p.seq = 7
	require.Equal(t, 4, p.burstLimit())
	require.Equal(t, 1200, p.next(0))
}
