package router

import (
	"testing"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// TestTakeVoice: the audio levels of real packets through the router reach
// TakeVoice per participant, as mean loudness; packets without the
// extension, of another kind, or with another extension ID count nothing,
// and a take starts a new interval.
func TestTakeVoice(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	loud, soft, mute := join(t, r, "m", 1), join(t, r, "m", 2), join(t, r, "m", 3)
	send := func(m *member, k media.Kind, id uint8, level byte) {
		t.Helper()
		m.seq++
		h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: m.seq, Timestamp: uint32(m.seq) * 960, SSRC: m.ssrc[k.Index()]}
		if id != 0 {
			require.NoError(t, h.SetExtension(id, []byte{level}))
		}
		b, err := (&rtp.Packet{Header: h, Payload: make([]byte, 40)}).Marshal()
		require.NoError(t, err)
		require.NoError(t, m.flows[k.Index()].Send(b))
	}
	for i := range 10 {
		send(loud, media.Audio, wire.AudioLevelExtID, 0x80|byte(20+i%2*2)) // V set, -20/-22 dBov
		send(soft, media.Audio, wire.AudioLevelExtID, 60)
		send(mute, media.Audio, 0, 0)                    // no extension
		send(mute, media.Audio, 5, 0)                    // another extension
		send(mute, media.Video, wire.AudioLevelExtID, 0) // not audio
	}
	want := r.ParticipantStats
	require.Eventually(t, func() bool {
		s1, _ := want(loud.info.ID)
		s2, _ := want(soft.info.ID)
		s3, _ := want(mute.info.ID)
		return s1.PacketsIn == 10 && s2.PacketsIn == 10 && s3.PacketsIn == 30
	}, 10*time.Second, 5*time.Millisecond)
	got, err := r.TakeVoice("m", nil)
	require.NoError(t, err)
	require.ElementsMatch(t, []Voice{
		{Participant: uint64(loud.info.ID), Packets: 10, Loudness: 127 - 21},
		{Participant: uint64(soft.info.ID), Packets: 10, Loudness: 127 - 60},
	}, got)
	got, err = r.TakeVoice("m", got[:0])
	require.NoError(t, err)
	require.Empty(t, got, "a take starts a new interval")
	_, err = r.TakeVoice("nope", nil)
	require.ErrorIs(t, err, ErrNoMeeting)
	require.Zero(t, r.Stats().Drops[stats.DropMalformed])
}
