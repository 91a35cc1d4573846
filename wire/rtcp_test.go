package wire

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtcp"
	"github.com/stretchr/testify/require"
)

// compound marshals pkts with pion/rtcp into one compound packet.
func compound(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	require.NoError(t, err)
	return b
}

// cat concatenates hand-built sub-packets.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// raw builds one RTCP sub-packet by hand: version 2, the given padding
// bit, count/FMT, type, and body (which must be a multiple of 4 bytes; the
// length field is computed unless lengthWords >= 0 overrides it).
func raw(padding bool, count byte, pt byte, lengthWords int, body ...byte) []byte {
	b0 := byte(0x80) | count&0x1f
	if padding {
		b0 |= 0x20
	}
	if lengthWords < 0 {
		lengthWords = len(body) / 4
	}
	b := []byte{b0, pt, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(lengthWords))
	return append(b, body...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func reports(ssrcs ...uint32) []rtcp.ReceptionReport {
	rr := make([]rtcp.ReceptionReport, len(ssrcs))
	for i, s := range ssrcs {
		rr[i] = rtcp.ReceptionReport{SSRC: s, FractionLost: 1, LastSequenceNumber: 99}
	}
	return rr
}

func sdes(ssrc uint32) *rtcp.SourceDescription {
	return &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
		Source: ssrc,
		Items:  []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "cname@example"}},
	}}}
}

type routeWant struct {
	toSubs  bool
	sender  uint32
	targets []uint32
	kf      uint16 // Keyframe bits
}

func TestRTCPRouteParse(t *testing.T) {
	seventeen := make([]uint32, 17)
	for i := range seventeen {
		seventeen[i] = uint32(1000 + i)
	}
	tests := []struct {
		name string
		in   []byte
		want routeWant
		err  error
	}{
		{
			name: "SR with 2 blocks",
			in:   compound(t, &rtcp.SenderReport{SSRC: 1, NTPTime: 5, RTPTime: 6, PacketCount: 7, OctetCount: 8, Reports: reports(11, 12)}),
			want: routeWant{toSubs: true, sender: 1, targets: []uint32{11, 12}},
		},
		{
			name: "SR without blocks",
			in:   compound(t, &rtcp.SenderReport{SSRC: 1}),
			want: routeWant{toSubs: true, sender: 1},
		},
		{
			name: "RR",
			in:   compound(t, &rtcp.ReceiverReport{SSRC: 2, Reports: reports(21)}),
			want: routeWant{sender: 2, targets: []uint32{21}},
		},
		{
			name: "RR+SDES",
			in:   compound(t, &rtcp.ReceiverReport{SSRC: 2, Reports: reports(21, 22)}, sdes(2)),
			want: routeWant{sender: 2, targets: []uint32{21, 22}},
		},
		{
			name: "SR+SDES+BYE",
			in: compound(t, &rtcp.SenderReport{SSRC: 3, Reports: reports(31)}, sdes(3),
				&rtcp.Goodbye{Sources: []uint32{3}, Reason: "bye"}),
			want: routeWant{toSubs: true, sender: 3, targets: []uint32{31}},
		},
		{
			name: "RR then SR: SR not first does not go to subscribers",
			in:   compound(t, &rtcp.ReceiverReport{SSRC: 4, Reports: reports(41)}, &rtcp.SenderReport{SSRC: 4, Reports: reports(42)}),
			want: routeWant{sender: 4, targets: []uint32{41, 42}},
		},
		{
			name: "RR+BYE goes to subscribers",
			in:   compound(t, &rtcp.ReceiverReport{SSRC: 5}, &rtcp.Goodbye{Sources: []uint32{5}}),
			want: routeWant{toSubs: true, sender: 5},
		},
		{
			name: "NACK",
			in: compound(t, &rtcp.TransportLayerNack{SenderSSRC: 6, MediaSSRC: 61,
				Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 3}}}),
			want: routeWant{sender: 6, targets: []uint32{61}},
		},
		{
			name: "PLI",
			in:   compound(t, &rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: 71}),
			want: routeWant{sender: 7, targets: []uint32{71}, kf: 0b1},
		},
		{
			name: "FIR with 2 entries",
			in: compound(t, &rtcp.FullIntraRequest{SenderSSRC: 8, FIR: []rtcp.FIREntry{
				{SSRC: 81, SequenceNumber: 1}, {SSRC: 82, SequenceNumber: 2}}}),
			want: routeWant{sender: 8, targets: []uint32{81, 82}, kf: 0b11},
		},
		{
			name: "REMB with 2 SSRCs",
			in: compound(t, &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 9, Bitrate: 1.5e6,
				SSRCs: []uint32{91, 92}}),
			want: routeWant{sender: 9, targets: []uint32{91, 92}},
		},
		{
			name: "RR+REMB+NACK+PLI+FIR compound",
			in: compound(t,
				&rtcp.ReceiverReport{SSRC: 10, Reports: reports(101)},
				&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 10, Bitrate: 3e5, SSRCs: []uint32{102}},
				&rtcp.TransportLayerNack{SenderSSRC: 10, MediaSSRC: 103, Nacks: []rtcp.NackPair{{PacketID: 1}}},
				&rtcp.PictureLossIndication{SenderSSRC: 10, MediaSSRC: 104},
				&rtcp.FullIntraRequest{SenderSSRC: 10, FIR: []rtcp.FIREntry{{SSRC: 105}}}),
			want: routeWant{sender: 10, targets: []uint32{101, 102, 103, 104, 105}, kf: 0b11000},
		},
		{
			name: "17 distinct targets capped at 16",
			in:   compound(t, &rtcp.ReceiverReport{SSRC: 11, Reports: reports(seventeen...)}),
			want: routeWant{sender: 11, targets: seventeen[:MaxRTCPTargets]},
		},
		{
			name: "duplicates deduped in order of appearance",
			in: compound(t,
				&rtcp.ReceiverReport{SSRC: 12, Reports: reports(121, 122, 121)},
				&rtcp.TransportLayerNack{SenderSSRC: 12, MediaSSRC: 122, Nacks: []rtcp.NackPair{{PacketID: 1}}},
				&rtcp.PictureLossIndication{SenderSSRC: 12, MediaSSRC: 123},
				&rtcp.FullIntraRequest{SenderSSRC: 12, FIR: []rtcp.FIREntry{{SSRC: 121}, {SSRC: 123}}}),
			want: routeWant{sender: 12, targets: []uint32{121, 122, 123}, kf: 0b101},
		},
		{
			name: "SSRC 0 never a target",
			in: compound(t,
				&rtcp.ReceiverReport{SSRC: 13, Reports: reports(0, 131)},
				&rtcp.PictureLossIndication{SenderSSRC: 13, MediaSSRC: 0}),
			want: routeWant{sender: 13, targets: []uint32{131}},
		},
		{
			name: "SDES alone: no targets",
			in:   compound(t, sdes(14)),
			want: routeWant{sender: 14},
		},
		{
			name: "empty SDES (4 bytes): no sender",
			in:   raw(false, 0, 202, -1),
			want: routeWant{},
		},
		{
			name: "APP and XR skipped",
			in: cat(raw(false, 0, 201, -1, u32(15)...),
				raw(false, 1, 204, -1, cat(u32(15), []byte("TEST"))...),
				raw(false, 0, 207, -1, cat(u32(15), []byte{4, 0, 0, 2}, u32(151), u32(152))...)),
			want: routeWant{sender: 15},
		},
		{
			name: "other type in range skipped",
			in:   cat(raw(false, 0, 201, -1, u32(16)...), raw(false, 0, 210, -1, u32(161)...)),
			want: routeWant{sender: 16},
		},
		{
			name: "application feedback other than REMB: media source",
			in:   raw(false, 15, 206, -1, cat(u32(17), u32(171), []byte("GOOG"), u32(172))...),
			want: routeWant{sender: 17, targets: []uint32{171}},
		},
		{
			name: "SLI: media source",
			in:   raw(false, 2, 206, -1, cat(u32(18), u32(181), u32(0x12345678))...),
			want: routeWant{sender: 18, targets: []uint32{181}},
		},
		{
			name: "padding on last sub-packet",
			in: cat(compound(t, &rtcp.ReceiverReport{SSRC: 19, Reports: reports(191)}),
				raw(true, 15, 206, -1, cat(u32(19), u32(192), []byte{0, 0, 0, 4})...)),
			want: routeWant{sender: 19, targets: []uint32{191, 192}},
		},
		{
			name: "padding on single RR with block",
			in:   raw(true, 1, 201, -1, cat(u32(20), u32(201), make([]byte, 20), []byte{0, 0, 0, 4})...),
			want: routeWant{sender: 20, targets: []uint32{201}},
		},

		// Malformed.
		{name: "empty", in: nil, err: ErrRTCPLength},
		{name: "three bytes", in: []byte{0x80, 201, 0}, err: ErrRTCPLength},
		{name: "not a multiple of 4", in: append(compound(t, &rtcp.ReceiverReport{SSRC: 1}), 0), err: ErrRTCPLength},
		{name: "bad version", in: []byte{0x40, 201, 0, 1, 0, 0, 0, 1}, err: ErrRTCPVersion},
		{
			name: "bad version in second sub-packet",
			in:   cat(compound(t, &rtcp.ReceiverReport{SSRC: 1}), []byte{0xc0, 202, 0, 0}),
			err:  ErrRTCPVersion,
		},
		{name: "type below range", in: []byte{0x80, 191, 0, 0}, err: ErrRTCPType},
		{name: "type above range", in: []byte{0x80, 224, 0, 0}, err: ErrRTCPType},
		{name: "length overflowing", in: raw(false, 0, 201, 2, u32(1)...), err: ErrRTCPLength},
		{
			name: "length overflowing in second sub-packet",
			in:   cat(compound(t, &rtcp.ReceiverReport{SSRC: 1}), raw(false, 0, 202, 5, u32(1)...)),
			err:  ErrRTCPLength,
		},
		{
			name: "padding on a non-last sub-packet",
			in: cat(raw(true, 0, 201, -1, cat(u32(1), []byte{0, 0, 0, 4})...),
				compound(t, sdes(1))),
			err: ErrRTCPPadding,
		},
		{name: "padding count 0", in: raw(true, 0, 201, -1, cat(u32(1), []byte{0, 0, 0, 0})...), err: ErrRTCPPadding},
		{name: "padding count too large", in: raw(true, 0, 201, -1, cat(u32(1), []byte{0, 0, 0, 9})...), err: ErrRTCPPadding},
		{name: "padding eats the blocks", in: raw(true, 1, 201, -1, cat(u32(20), u32(201), make([]byte, 16), []byte{0, 0, 0, 8})...), err: ErrRTCPLength},
		{name: "SR blocks do not fit", in: raw(false, 2, 200, -1, cat(u32(1), make([]byte, 20), u32(11), make([]byte, 20))...), err: ErrRTCPLength},
		{name: "SR shorter than sender info", in: raw(false, 0, 200, -1, cat(u32(1), make([]byte, 16))...), err: ErrRTCPLength},
		{name: "RR blocks do not fit", in: raw(false, 1, 201, -1, cat(u32(1), make([]byte, 20))...), err: ErrRTCPLength},
		{name: "RR without SSRC", in: raw(false, 0, 201, -1), err: ErrRTCPLength},
		{name: "RTPFB too short", in: raw(false, 1, 205, -1, u32(1)...), err: ErrRTCPLength},
		{name: "PSFB too short", in: raw(false, 1, 206, -1, u32(1)...), err: ErrRTCPLength},
		{name: "FIR partial entry", in: raw(false, 4, 206, -1, cat(u32(1), u32(0), u32(81))...), err: ErrRTCPLength},
		{name: "REMB too short", in: raw(false, 15, 206, -1, cat(u32(1), u32(0), []byte("REMB"))...), err: ErrRTCPLength},
		{
			name: "REMB SSRC list does not fit",
			in:   raw(false, 15, 206, -1, cat(u32(1), u32(0), []byte("REMB"), []byte{3, 0, 0, 1}, u32(91), u32(92))...),
			err:  ErrRTCPLength,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Start dirty: Parse must reset the route.
			r := RTCPRoute{ToSubscribers: true, Sender: 99, N: 3, Targets: [MaxRTCPTargets]uint32{1, 2, 3}}
			err := r.Parse(tc.in)
			require.ErrorIs(t, err, tc.err)
			if tc.err != nil {
				return
			}
			require.Equal(t, tc.want.toSubs, r.ToSubscribers, "ToSubscribers")
			require.Equal(t, tc.want.sender, r.Sender, "Sender")
			require.Equal(t, len(tc.want.targets), r.N, "N")
			require.Equal(t, tc.want.kf, r.Keyframe, "Keyframe %b", r.Keyframe)
			if len(tc.want.targets) > 0 {
				require.Equal(t, tc.want.targets, r.Targets[:r.N])
			}
			for _, x := range r.Targets[r.N:] {
				require.Zero(t, x, "unused targets must be zero")
			}
		})
	}
}

// TestRTCPHandVector pins the byte layout pion produces for a NACK to the
// hand-built form, so the pion-built vectors above test what we think.
func TestRTCPHandVector(t *testing.T) {
	pion := compound(t, &rtcp.TransportLayerNack{SenderSSRC: 6, MediaSSRC: 61,
		Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 3}}})
	hand := raw(false, 1, 205, -1, cat(u32(6), u32(61), []byte{0, 100, 0, 3})...)
	require.Equal(t, hand, pion)
}

var routeSink RTCPRoute

func TestRTCPRouteParseAllocs(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"SR+SDES+BYE", compound(t, &rtcp.SenderReport{SSRC: 3, Reports: reports(31, 32)}, sdes(3), &rtcp.Goodbye{Sources: []uint32{3}})},
		{"RR+SDES+REMB+NACK+FIR+PLI", compound(t, &rtcp.ReceiverReport{SSRC: 2, Reports: reports(21)}, sdes(2),
			&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 2, Bitrate: 1e6, SSRCs: []uint32{21, 22}},
			&rtcp.TransportLayerNack{SenderSSRC: 2, MediaSSRC: 21, Nacks: []rtcp.NackPair{{PacketID: 1}}},
			&rtcp.FullIntraRequest{SenderSSRC: 2, FIR: []rtcp.FIREntry{{SSRC: 22}}},
			&rtcp.PictureLossIndication{SenderSSRC: 2, MediaSSRC: 23})},
		{"bad version", []byte{0x40, 201, 0, 1, 0, 0, 0, 1}},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Zero(t, testing.AllocsPerRun(100, func() { _ = routeSink.Parse(tc.in) }))
		})
	}
}
