package router

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// TestStreamQueuePolicy drives a stream subscriber's queue through a
// net.Pipe whose far end the test drains by hand, and checks the
// congestion policy: video is dropped from the packet that does not fit to
// the end of its frame (the RTP marker) even when room frees up, the next
// frame is delivered, the publisher is asked for a keyframe, and audio may
// use the quarter of the budget that video may not.
func TestStreamQueuePolicy(t *testing.T) {
	const budget = 64 << 10
	r := newTestRouter(t, func(c *Config) { c.StreamQueue = budget; c.StallTimeout = time.Minute })
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1) // UDP publisher of audio and video
	info, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)
	p, ok := r.reg.Get(uint64(info.ID))
	require.True(t, ok)
	sink := func(k media.Kind) (*streamSink, net.Conn) {
		near, far := net.Pipe() // writes block until the far end reads
		s := newStreamSink(r, near, false, p, k)
		done := make(chan struct{})
		go func() { defer close(done); s.writeLoop() }()
		t.Cleanup(func() { s.close(); far.Close(); <-done })
		return s, far
	}
	video, videoFar := sink(media.Video)
	audio, _ := sink(media.Audio)
	drops := func() uint64 { return p.Stats.Snapshot().Drops[stats.DropQueueFull] }
	var seq uint16
	pkt := func(k media.Kind, size int, marker bool) []byte {
		seq++
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: pub.ssrc[k.Index()], Marker: marker}, Payload: make([]byte, size-12)}).Marshal()
		require.NoError(t, err)
		return b
	}

	// Video fills its three quarters of the budget; the first packet that
	// does not fit is dropped.
	for drops() == 0 {
		video.Enqueue(pkt(media.Video, 1000, false))
	}
	require.LessOrEqual(t, p.Queued.Load(), int64(budget*3/4))

	// The publisher is asked for a keyframe: an RTCP PLI naming its stream.
	v := media.Video.Index()
	buf := make([]byte, 2048)
	n, err := pub.flows[v].Recv(buf, time.Now().Add(3*time.Second))
	require.NoError(t, err)
	require.Equal(t, []byte{0x81, 206}, buf[:2], "PLI (RFC 4585 §6.3.1)")
	require.Equal(t, pub.ssrc[v], binary.BigEndian.Uint32(buf[8:n]), "media SSRC")

	// Free room by reading from the far end: the rest of the frame is still
	// dropped, the packet carrying the marker too.
	// (The writer credits a batch of up to 64 frames back just after all of
	// it is written, so read in small steps, and when nothing more comes,
	// look again: the credit may still be on its way.)
	chunk := make([]byte, 1<<10)
	giveUp := time.Now().Add(5 * time.Second)
	for p.Queued.Load() >= budget/2 {
		require.True(t, time.Now().Before(giveUp), "queue never drained below half")
		_ = videoFar.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := videoFar.Read(chunk); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			require.NoError(t, err)
		}
	}
	before := drops()
	video.Enqueue(pkt(media.Video, 1000, false))
	video.Enqueue(pkt(media.Video, 1000, true))
	require.Equal(t, before+2, drops(), "the rest of the broken frame is dropped")
	queued := p.Queued.Load()
	video.Enqueue(pkt(media.Video, 1000, false))
	require.Equal(t, before+2, drops(), "the next frame is delivered")
	require.Equal(t, queued+1002, p.Queued.Load())

	// Video over its share again; audio still fits up to the whole budget.
	for drops() == before+2 {
		video.Enqueue(pkt(media.Video, 1000, false))
	}
	before = drops()
	accepted := 0
	for p.Queued.Load()+202 <= budget {
		audio.Enqueue(pkt(media.Audio, 200, false))
		accepted++
	}
	require.Equal(t, before, drops(), "audio is not dropped while the budget has room")
	require.Greater(t, accepted, 10, "audio had the last quarter")
	audio.Enqueue(pkt(media.Audio, 200, false))
	require.Equal(t, before+1, drops(), "audio beyond the whole budget is dropped")
}
