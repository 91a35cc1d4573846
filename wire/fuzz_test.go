package wire

import (
	"net/netip"
	"testing"
	"time"

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
	valid := func() []byte {
		var dst [BindSize]byte
		b := signedBind()
		_, _ = b.MarshalTo(dst[:])
		return dst[:]
	}
	f.Add(valid())
	f.Add(append(valid(), 1, 2, 3))
	f.Add(with(valid(), set(31, 0xff)))
	f.Add(with(valid(), set(1, 1)))
	f.Add(with(valid(), set(2, 0)))
	f.Add(with(valid(), set(3, 1)))
	f.Add(with(valid(), set(55, 0)))
	f.Add(valid()[:BindSize-1])
	f.Add(valid()[:40])
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
		require.Equal(t, b[:BindSize], dst[:n], "every byte of a Bind is a field")
		var back Bind
		require.NoError(t, back.Unmarshal(dst[:n]))
		require.Equal(t, m, back)
		switch err := m.Check(testToken, vectorTime, 0); err {
		case nil:
			// Only the signer's own packet verifies.
			want := m
			want.Sign(testToken, m.Counter, time.UnixMilli(int64(m.Time)))
			require.Equal(t, want, m)
		case ErrBindMAC, ErrBindStale, ErrBindReplayed:
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzBindTamper signs a Bind of arbitrary fields, changes one byte of
// its packet and checks that the receiver refuses it.
func FuzzBindTamper(f *testing.F) {
	f.Add(uint8(1), uint32(7), uint64(1), uint64(vectorTime.UnixMilli()), uint64(0), uint8(0), uint8(1))
	f.Add(uint8(3), uint32(0), uint64(1<<63), uint64(0), uint64(0xa1b2c3d4e5f60718), uint8(55), uint8(0x80))
	f.Fuzz(func(t *testing.T, kind uint8, txID uint32, counter, ms, nonce uint64, pos, mask uint8) {
		k := media.Kind(kind%3 + 1)
		b := Bind{Kind: k, TxID: txID, Nonce: nonce}
		now := time.UnixMilli(int64(ms >> 1))
		b.Sign(testToken, counter, now)
		var p [BindSize]byte
		_, err := b.MarshalTo(p[:])
		require.NoError(t, err)
		var got Bind
		require.NoError(t, got.Unmarshal(p[:]))
		require.True(t, got.Verify(testToken))
		if mask == 0 {
			mask = 1
		}
		p[int(pos)%BindSize] ^= mask
		if got.Unmarshal(p[:]) != nil {
			return
		}
		require.False(t, got.Verify(testToken), "tampered byte %d accepted", int(pos)%BindSize)
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
