package wire

import (
	"net/netip"
	"testing"

	"github.com/openmmr/mmr/media"
	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

// The fuzz targets check that no input panics and, for the control
// packets, that whatever Unmarshal accepts survives MarshalTo and a second
// Unmarshal unchanged, with the marshalled bytes equal to the canonical
// prefix of the input.

func FuzzClassify(f *testing.F) {
	for _, s := range [][]byte{nil, {0x80}, {0x80, 96}, {0x80, 200}, {4}, {5}, {6}, {7}, {0, 1}, {22}, {64}, {255, 255}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Classify(b)
		require.LessOrEqual(t, c, ClassKeepaliveAck)
		require.NotEmpty(t, c.String())
		if len(b) == 0 {
			require.Equal(t, ClassUnknown, c)
		}
	})
}

func FuzzBind(f *testing.F) {
	f.Add(validBind())
	f.Add(append(validBind(), 1, 2, 3))
	f.Add(with(validBind(), set(31, 0xff)))
	f.Add(with(validBind(), set(1, 2)))
	f.Add(with(validBind(), set(2, 0)))
	f.Add(with(validBind(), set(3, 1)))
	f.Add(validBind()[:BindSize-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Bind
		if err := m.Unmarshal(b); err != nil {
			require.Equal(t, Bind{}, m)
			return
		}
		var dst [BindSize]byte
		n, err := m.MarshalTo(dst[:])
		require.NoError(t, err)
		require.Equal(t, BindSize, n)
		require.Equal(t, b[:headerSize+TokenSize], dst[:headerSize+TokenSize])
		var back Bind
		require.NoError(t, back.Unmarshal(dst[:n]))
		require.Equal(t, m, back)
	})
}

func FuzzBindAck(f *testing.F) {
	f.Add(bindAck(media.Video, StatusOK, 7, 40000, 4, v4.As16()))
	f.Add(bindAck(media.Audio, 3, 1, 8801, 6, v6.As16()))
	f.Add(bindAck(media.Audio, 0, 1, 8801, 6, v4.As16()))
	f.Add(bindAck(media.Audio, 0, 1, 8801, 4, v6.As16()))
	f.Add(bindAck(media.Content, 0, 1, 1, 5, v6.As16()))
	f.Add(append(bindAck(media.Content, 0, 1, 1, 4, netip.IPv4Unspecified().As16()), 9))
	f.Add([]byte{TypeBindAck, Version, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m BindAck
		if err := m.Unmarshal(b); err != nil {
			require.Equal(t, BindAck{}, m)
			return
		}
		require.Equal(t, m.Mapped.Addr().Is4(), b[10] == 4)
		var dst [BindAckSize]byte
		n, err := m.MarshalTo(dst[:])
		require.NoError(t, err)
		require.Equal(t, BindAckSize, n)
		require.Equal(t, b[:BindAckSize], dst[:n])
		var back BindAck
		require.NoError(t, back.Unmarshal(dst[:n]))
		require.Equal(t, m, back)
	})
}

func FuzzKeepalive(f *testing.F) {
	f.Add(keepalive(TypeKeepalive))
	f.Add(keepalive(TypeKeepaliveAck))
	f.Add(append(keepalive(TypeKeepalive), 0, 0))
	f.Add(with(keepalive(TypeKeepalive), set(3, 1)))
	f.Add(with(keepalive(TypeKeepaliveAck), set(2, 7)))
	f.Add(keepalive(TypeKeepalive)[:5])
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Keepalive
		if err := m.Unmarshal(b); err != nil {
			require.Equal(t, Keepalive{}, m)
			return
		}
		var dst [KeepaliveSize]byte
		n, err := m.MarshalTo(dst[:])
		require.NoError(t, err)
		require.Equal(t, KeepaliveSize, n)
		require.Equal(t, b[:KeepaliveSize], dst[:n])
		var back Keepalive
		require.NoError(t, back.Unmarshal(dst[:n]))
		require.Equal(t, m, back)
	})
}

func FuzzRTCPRoute(f *testing.F) {
	seeds := [][]rtcp.Packet{
		{&rtcp.SenderReport{SSRC: 1, Reports: reports(11, 12)}, sdes(1), &rtcp.Goodbye{Sources: []uint32{1}}},
		{&rtcp.ReceiverReport{SSRC: 2, Reports: reports(21)}, sdes(2)},
		{&rtcp.TransportLayerNack{SenderSSRC: 3, MediaSSRC: 31, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 5}}}},
		{&rtcp.PictureLossIndication{SenderSSRC: 4, MediaSSRC: 41}},
		{&rtcp.FullIntraRequest{SenderSSRC: 5, FIR: []rtcp.FIREntry{{SSRC: 51}, {SSRC: 52}}}},
		{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 6, Bitrate: 1e6, SSRCs: []uint32{61, 62}}},
	}
	for _, s := range seeds {
		f.Add(compound(f, s...))
	}
	f.Add(raw(true, 1, 201, -1, cat(u32(20), u32(201), make([]byte, 20), []byte{0, 0, 0, 4})...))
	f.Add(raw(false, 15, 206, -1, cat(u32(1), u32(0), []byte("REMB"), []byte{3, 0, 0, 1}, u32(91), u32(92))...))
	f.Add([]byte{0x40, 201, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r RTCPRoute
		if err := r.Parse(b); err != nil {
			return
		}
		require.GreaterOrEqual(t, r.N, 0)
		require.LessOrEqual(t, r.N, MaxRTCPTargets)
		seen := make(map[uint32]bool, r.N)
		for _, x := range r.Targets[:r.N] {
			require.NotZero(t, x)
			require.False(t, seen[x], "duplicate target %d", x)
			seen[x] = true
		}
		require.Zero(t, int(r.Keyframe)>>r.N, "keyframe bits only for targets")
		require.Equal(t, ClassRTCP, Classify(b), "a parseable compound must classify as RTCP")
	})
}
