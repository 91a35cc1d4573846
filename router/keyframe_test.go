package router

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
)

// TestKeyframeThrottle: when every subscriber asks a publisher for a
// keyframe at once, one request per SSRC and interval reaches it; other
// feedback and other SSRCs pass; the next interval gets through again.
func TestKeyframeThrottle(t *testing.T) {
	const interval = 2 * time.Second
	v := media.Video.Index()
	fir := func(sender, ssrc uint32) []byte {
		b, err := rtcp.Marshal([]rtcp.Packet{&rtcp.FullIntraRequest{SenderSSRC: sender, FIR: []rtcp.FIREntry{{SSRC: ssrc, SequenceNumber: 1}}}})
		require.NoError(t, err)
		return b
	}

	t.Run("throttled", func(t *testing.T) {
		r := newTestRouter(t, func(c *Config) { c.KeyframeInterval = interval })
		require.NoError(t, r.CreateMeeting("m"))
		a := join(t, r, "m", 1)
		subs := []*member{join(t, r, "m", 2), join(t, r, "m", 3), join(t, r, "m", 4)}
		layer2 := a.ssrc[v] + 0x10000 // a second simulcast layer
		require.NoError(t, r.Publish(a.info.ID, media.Video, layer2))
		before := r.Stats().Drops[stats.DropKeyframeThrottled]

		start := time.Now()
		for _, s := range subs {
			require.NoError(t, s.flows[v].Send(pli(s.ssrc[v], a.ssrc[v])))
		}
		require.NoError(t, subs[0].flows[v].Send(fir(subs[0].ssrc[v], a.ssrc[v])))
		got := recvAll(a.flows[v], 1, 3*time.Second)
		require.Len(t, got, 1)
		var asked []string // whichever request the readers saw first wins
		for _, s := range subs {
			asked = append(asked, string(pli(s.ssrc[v], a.ssrc[v])))
		}
		asked = append(asked, string(fir(subs[0].ssrc[v], a.ssrc[v])))
		require.Contains(t, asked, string(got[0]))
		// Other feedback for the same SSRC and a request for the other
		// layer are not held back.
		n := nack(t, subs[1].ssrc[v], a.ssrc[v], 7, 0)
		require.NoError(t, subs[1].flows[v].Send(n))
		require.Equal(t, [][]byte{n}, recvAll(a.flows[v], 1, 3*time.Second))
		p2 := pli(subs[2].ssrc[v], layer2)
		require.NoError(t, subs[2].flows[v].Send(p2))
		require.Equal(t, [][]byte{p2}, recvAll(a.flows[v], 1, 3*time.Second))
		require.Less(t, time.Since(start), interval, "the machine was too slow for this check")
		require.True(t, quiet(a.flows[v], 50*time.Millisecond), "the other requests were held back")
		require.Equal(t, before+3, r.Stats().Drops[stats.DropKeyframeThrottled])
		var charged uint64
		for _, s := range subs {
			ps, err := r.ParticipantStats(s.info.ID)
			require.NoError(t, err)
			charged += ps.Drops[stats.DropKeyframeThrottled]
		}
		require.Equal(t, uint64(3), charged, "charged to the senders")

		time.Sleep(time.Until(start.Add(interval + 50*time.Millisecond)))
		again := pli(subs[1].ssrc[v], a.ssrc[v])
		require.NoError(t, subs[1].flows[v].Send(again))
		require.Equal(t, [][]byte{again}, recvAll(a.flows[v], 1, 3*time.Second), "a new interval")
	})

	t.Run("disabled", func(t *testing.T) {
		r := newTestRouter(t, func(c *Config) { c.KeyframeInterval = -1 })
		require.NoError(t, r.CreateMeeting("m"))
		a := join(t, r, "m", 1)
		subs := []*member{join(t, r, "m", 2), join(t, r, "m", 3), join(t, r, "m", 4)}
		for _, s := range subs {
			require.NoError(t, s.flows[v].Send(pli(s.ssrc[v], a.ssrc[v])))
		}
		require.Len(t, recvAll(a.flows[v], 3, 3*time.Second), 3)
		require.Zero(t, r.Stats().Drops[stats.DropKeyframeThrottled])
	})
}

// TestRTCPFeedbackOnlyFromSubscribers: feedback about a stream goes to its
// publisher only from participants who receive that stream.
func TestRTCPFeedbackOnlyFromSubscribers(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.KeyframeInterval = -1 })
	require.NoError(t, r.CreateMeeting("m"))
	a, b, c := join(t, r, "m", 1), join(t, r, "m", 2), join(t, r, "m", 3)
	v := media.Video.Index()
	// c receives video from b only.
	require.NoError(t, r.Subscribe(c.info.ID, media.Video, From(b.info.ID)))
	before := r.Stats().Drops[stats.DropRTCPNotSubscribed]
	for _, p := range [][]byte{pli(c.ssrc[v], a.ssrc[v]), nack(t, c.ssrc[v], a.ssrc[v], 1, 0xffff)} {
		require.NoError(t, c.flows[v].Send(p))
	}
	// An RR naming both: it still reaches b, the stream c receives.
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: c.ssrc[v], Reports: []rtcp.ReceptionReport{
		{SSRC: a.ssrc[v]}, {SSRC: b.ssrc[v]}}}})
	require.NoError(t, err)
	require.NoError(t, c.flows[v].Send(rr))
	require.Equal(t, [][]byte{rr}, recvAll(b.flows[v], 1, 3*time.Second))
	require.True(t, quiet(a.flows[v], 100*time.Millisecond), "a gets no feedback from a non-subscriber")
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropRTCPNotSubscribed] == before+3 },
		2*time.Second, 5*time.Millisecond)
	// b, who receives a's video, still reaches a.
	fb := pli(b.ssrc[v], a.ssrc[v])
	require.NoError(t, b.flows[v].Send(fb))
	require.Equal(t, [][]byte{fb}, recvAll(a.flows[v], 1, 3*time.Second))
}

// nack builds an RTCP generic NACK (RFC 4585 §6.2.1) from sender about
// media ssrc for packet id and the bitmask of the 16 after it.
func nack(t *testing.T, sender, ssrc uint32, id, lost uint16) []byte {
	t.Helper()
	p, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: sender, MediaSSRC: ssrc,
		Nacks: []rtcp.NackPair{{PacketID: id, LostPackets: rtcp.PacketBitmap(lost)}}}})
	require.NoError(t, err)
	return p
}

// TestSlowStreamSubscriberKeyframeBackoff: a stream subscriber that stays
// congested (dropping a frame every 10 ms for 20 s) asks its publisher for
// keyframes ever more rarely, not every 300 ms; once it has recovered, a new
// drop asks at once again.
func TestSlowStreamSubscriberKeyframeBackoff(t *testing.T) {
	r := &Router{keyframes: make(chan keyframeReq, 1000)}
	s := &streamSink{rt: r, p: &session.Participant{}}
	start := int64(1e12)
	for now := start; now < start+int64(20*time.Second); now += int64(10 * time.Millisecond) {
		s.requestKeyframe(7, now)
	}
	got := len(r.keyframes)
	// 0.3+0.6+1.2+2.4+4.8 s, then every 5 s: 8 requests in 20 s (main: 67).
	require.LessOrEqual(t, got, 8, "keyframe requests in 20 s of congestion")
	require.GreaterOrEqual(t, got, 5, "still asks now and then: a keyframe may get through")
	for len(r.keyframes) > 0 {
		<-r.keyframes
	}
	s.requestKeyframe(7, start+int64(40*time.Second)) // after 20 s without drops
	require.Len(t, r.keyframes, 1, "a recovered subscriber asks at once")
	s.requestKeyframe(7, start+int64(40*time.Second+100*time.Millisecond))
	require.Len(t, r.keyframes, 1, "and no more than once per 300 ms")
}
