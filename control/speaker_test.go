package control

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

func TestSpeakerDetector(t *testing.T) {
	v := func(p uint64, loud uint8) router.Voice {
		return router.Voice{Participant: p, Packets: 15, Loudness: loud}
	}
	loud, soft, quiet := uint8(127-25), uint8(127-40), uint8(127-70)
	steps := []struct {
		name string
		in   []router.Voice
		want uint64
	}{
		{"nobody speaks yet", []router.Voice{v(1, quiet), v(2, quiet)}, 0},
		{"first speaker at once", []router.Voice{v(1, loud), v(2, quiet)}, 1},
		{"same speaker: no event", []router.Voice{v(1, loud)}, 0},
		{"a slightly louder one does not take over", []router.Voice{v(1, soft), v(2, soft+5)}, 0},
		{"a much louder one must win twice (1)", []router.Voice{v(1, soft), v(2, loud)}, 0},
		{"the speaker wins back: challenge reset", []router.Voice{v(1, loud), v(2, soft)}, 0},
		{"challenger again (1)", []router.Voice{v(1, soft), v(2, loud)}, 0},
		{"challenger again (2): taken over", []router.Voice{v(1, soft), v(2, loud)}, 2},
		{"silence keeps the last speaker", nil, 0},
		{"speaker silent, other speaks (1)", []router.Voice{v(1, soft)}, 0},
		{"speaker silent, other speaks (2)", []router.Voice{v(1, soft)}, 1},
		{"noise never becomes a speaker", []router.Voice{v(3, quiet)}, 0},
		{"noise never becomes a speaker (2)", []router.Voice{v(3, quiet)}, 0},
	}
	var st speakerState
	for _, s := range steps {
		require.Equal(t, s.want, st.next(s.in), s.name)
	}
}

// TestActiveSpeakerEvents: audio with RFC 6464 levels sent over real UDP
// through the real router makes the control server announce the loud
// participant to everyone, a viewer included, then the next one once it
// speaks louder for long enough.
func TestActiveSpeakerEvents(t *testing.T) {
	noLeaks(t)
	_, e := startE2E(t, func(c *Config) { c.SpeakerInterval = 50 * time.Millisecond })
	a := e.join(t, "talk", "ann", token.Host)
	b := e.join(t, "talk", "bob", token.Participant)
	w := e.join(t, "talk", "vic", token.Viewer)
	ctx := ctxT(t)
	ssrcA, ssrcB := uint32(0xa0), uint32(0xb0)
	require.NoError(t, a.c.Publish(ctx, media.Audio, ssrcA))
	require.NoError(t, b.c.Publish(ctx, media.Audio, ssrcB))
	fa, fb := a.flow(t, media.Audio), b.flow(t, media.Audio)
	speaker := func(m *member, want uint64) {
		t.Helper()
		m.ev.waitFor(t, "active-speaker", func(msg proto.Message) bool {
			s, ok := msg.(*proto.ActiveSpeaker)
			return ok && s.Participant == want
		})
	}
	var seq uint16
	send := func(levelA, levelB byte, until func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for !until() {
			require.True(t, time.Now().Before(deadline), "no active-speaker event")
			for _, x := range []struct {
				f     interface{ Send([]byte) error }
				ssrc  uint32
				level byte
			}{{fa, ssrcA, levelA}, {fb, ssrcB, levelB}} {
				seq++
				h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: x.ssrc}
				require.NoError(t, h.SetExtension(wire.AudioLevelExtID, []byte{x.level}))
				pkt, err := (&rtp.Packet{Header: h, Payload: make([]byte, 60)}).Marshal()
				require.NoError(t, err)
				require.NoError(t, x.f.Send(pkt))
			}
			time.Sleep(10 * time.Millisecond) // an audio packet every 10 ms
		}
	}
	has := func(m *member, want uint64) func() bool {
		return func() bool {
			for _, msg := range m.ev.all() {
				if s, ok := msg.(*proto.ActiveSpeaker); ok && s.Participant == want {
					return true
				}
			}
			return false
		}
	}
	send(20, 100, has(w, a.id()))
	speaker(b, a.id())
	speaker(a, a.id())
	send(90, 15, has(w, b.id()))
	speaker(a, b.id())
	speaker(b, b.id())
}
