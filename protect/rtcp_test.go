package protect

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

func secret(t testing.TB) []byte {
	b := make([]byte, SecretSize)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func marshalRTCP(t testing.TB, pkts ...rtcp.Packet) []byte {
	b, err := rtcp.Marshal(pkts)
	require.NoError(t, err)
	return b
}

// A receiver report from a subscriber travels client -> router (opened,
// routed by the SSRCs inside) -> publisher (re-protected for that flow).
func TestRTCPThroughRouter(t *testing.T) {
	leaktest.Check(t)
	pubSecret, subSecret := secret(t), secret(t)
	pub, err := NewRTCPFlow(pubSecret, 1, media.Video, ClientSide, 0)
	require.NoError(t, err)
	sub, err := NewRTCPFlow(subSecret, 2, media.Video, ClientSide, 0)
	require.NoError(t, err)
	tr := NewRTCPTranslator(0)
	require.NoError(t, tr.Add(FlowKey{1, media.Video}, pubSecret))
	require.NoError(t, tr.Add(FlowKey{2, media.Video}, subSecret))

	plain := marshalRTCP(t,
		&rtcp.ReceiverReport{SSRC: 0x5555, Reports: []rtcp.ReceptionReport{{SSRC: 0xabcd, FractionLost: 3}}},
		&rtcp.PictureLossIndication{SenderSSRC: 0x5555, MediaSSRC: 0xabcd})
	for i := range 3 {
		sp, err := sub.Seal(nil, plain)
		require.NoError(t, err)
		require.Len(t, sp, len(plain)+RTCPOverhead)
		require.Equal(t, wire.ClassRTCP, wire.Classify(sp), "first bytes stay RTCP")
		require.False(t, bytes.Contains(sp[8:], plain[8:20]), "report blocks not in clear")

		got, err := tr.Open(FlowKey{2, media.Video}, nil, sp)
		require.NoError(t, err)
		require.Equal(t, plain, got)
		var route wire.RTCPRoute
		require.NoError(t, route.Parse(got))
		require.Equal(t, []uint32{0xabcd}, route.Targets[:route.N])

		out, err := tr.Seal(FlowKey{1, media.Video}, nil, got)
		require.NoError(t, err)
		fin, err := pub.Open(nil, out)
		require.NoError(t, err, "round %d", i)
		require.Equal(t, plain, fin)

		// The subscriber's own packet cannot be reflected back to it, nor
		// opened on another flow (the replay check runs before the tag
		// check, so an index already seen there reports ErrReplayed).
		_, err = sub.Open(nil, sp)
		require.ErrorIs(t, err, ErrAuth)
		_, err = pub.Open(nil, sp)
		require.Error(t, err)
	}
	st := tr.Flow(FlowKey{2, media.Video}).Stats()
	require.Equal(t, uint64(3), st.Opened)
	require.Zero(t, st.Rejected())

	tr.Remove(FlowKey{2, media.Video})
	_, err = tr.Open(FlowKey{2, media.Video}, nil, plain)
	require.ErrorIs(t, err, ErrUnknownSender)
}

func TestRTCPRejections(t *testing.T) {
	leaktest.Check(t)
	sec := secret(t)
	c, err := NewRTCPFlow(sec, 3, media.Audio, ClientSide, 0)
	require.NoError(t, err)
	r, err := NewRTCPFlow(sec, 3, media.Audio, RouterSide, 0)
	require.NoError(t, err)
	plain := marshalRTCP(t, &rtcp.SenderReport{SSRC: 7, NTPTime: 1, RTPTime: 2, PacketCount: 3, OctetCount: 4})
	sp, err := c.Seal(nil, plain)
	require.NoError(t, err)
	for bit := range len(sp) * 8 {
		bad := bytes.Clone(sp)
		bad[bit/8] ^= 1 << (bit % 8)
		before := r.Stats().Rejected()
		_, err := r.Open(nil, bad)
		require.Error(t, err, "bit %d", bit)
		require.Equal(t, before+1, r.Stats().Rejected())
	}
	_, err = r.Open(nil, sp)
	require.NoError(t, err)
	_, err = r.Open(nil, sp)
	require.ErrorIs(t, err, ErrReplayed)
	require.Equal(t, uint64(1), r.Stats().Replayed)

	old, err := c.Seal(nil, plain)
	require.NoError(t, err)
	for range DefaultReplayWindow {
		sp, err = c.Seal(nil, plain)
		require.NoError(t, err)
	}
	_, err = r.Open(nil, sp)
	require.NoError(t, err)
	_, err = r.Open(nil, old)
	require.ErrorIs(t, err, ErrTooOld)
	require.Equal(t, uint64(1), r.Stats().TooOld)

	// A flow accepts at most MaxRTCPSenders sender SSRCs.
	for ssrc := uint32(100); ssrc < 100+MaxRTCPSenders; ssrc++ {
		p, err := c.Seal(nil, marshalRTCP(t, &rtcp.ReceiverReport{SSRC: ssrc}))
		require.NoError(t, err)
		_, err = r.Open(nil, p)
		if ssrc < 100+MaxRTCPSenders-1 { // SSRC 7 is already one of them
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, ErrUnknownSender)
		}
	}
	// A client opens the RTCP of a whole meeting's senders from the router
	// (a webinar publisher: every viewer's receiver reports).
	for ssrc := uint32(1000); ssrc < 1000+4*MaxRTCPSenders; ssrc++ {
		p, err := r.Seal(nil, marshalRTCP(t, &rtcp.ReceiverReport{SSRC: ssrc}))
		require.NoError(t, err)
		_, err = c.Open(nil, p)
		require.NoError(t, err, "sender %d", ssrc-1000)
	}
	_, err = r.Open(nil, sp[:8+RTCPOverhead-1])
	require.ErrorIs(t, err, ErrMalformed)
	_, err = NewRTCPFlow(sec[:16], 3, media.Audio, ClientSide, 0)
	require.ErrorIs(t, err, ErrSecret)
	_, err = NewRTCPFlow(sec, 3, 0, ClientSide, 0)
	require.ErrorIs(t, err, ErrKind)
	_, err = NewRTCPFlow(sec, 3, media.Audio, 0, 0)
	require.ErrorIs(t, err, ErrSide)
}

func TestRTCPZeroAllocs(t *testing.T) {
	leaktest.Check(t)
	sec := secret(t)
	c, err := NewRTCPFlow(sec, 3, media.Audio, ClientSide, 0)
	require.NoError(t, err)
	tr := NewRTCPTranslator(0)
	require.NoError(t, tr.Add(FlowKey{3, media.Audio}, sec))
	plain := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}})
	b1 := make([]byte, 0, 256)
	b2 := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		sp, err := c.Seal(b1, plain)
		if err != nil {
			panic(err)
		}
		got, err := tr.Open(FlowKey{3, media.Audio}, b2, sp)
		if err != nil {
			panic(err)
		}
		if _, err := tr.Seal(FlowKey{3, media.Audio}, b1, got); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func ExampleRTCPTranslator() {
	sec := bytes.Repeat([]byte{1}, SecretSize) // from the control channel
	client, _ := NewRTCPFlow(sec, 17, media.Audio, ClientSide, 0)
	router := NewRTCPTranslator(0)
	_ = router.Add(FlowKey{17, media.Audio}, sec)
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 9} // empty RR from SSRC 9
	sp, _ := client.Seal(nil, rr)
	plain, err := router.Open(FlowKey{17, media.Audio}, nil, sp)
	fmt.Println(len(sp)-len(rr), bytes.Equal(plain, rr), err)
	// Output: 20 true <nil>
}
