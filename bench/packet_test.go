package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RTP packets of the benchmarks (RFC 3550 §5.1): a fixed 12-byte header
// (V=2, P=0, X=0, CC=0, M=0, PT=96, sequence number, timestamp, SSRC) and a
// payload whose every byte is derived from the sequence number and the
// timestamp, so that a receiver can check a copy byte for byte without
// keeping the original.
const (
	rtpHeaderLen = 12
	// rtpVersionByte is the first header byte: version 2 in the top two bits,
	// no padding, no extension, no CSRC.
	rtpVersionByte = 0x80
	// benchPT is the payload type: 96 is the first dynamic type (RFC 3551
	// §6) and, without the marker bit, outside the RTCP range of RFC 5761
	// §4, so the router classifies the packets as RTP.
	benchPT = 96
	// benchSSRC is the SSRC the publisher sends and the mmr child publishes.
	benchSSRC uint32 = 0x0be4c401
)

// errPacket is returned by verifyPacket for a copy that is not exactly what
// makePacket would have built.
var errPacket = errors.New("bench: packet differs from the one sent")

// makePacket fills all of dst (at least rtpHeaderLen bytes) with the RTP
// packet of sequence number seq in round epoch (carried as the RTP
// timestamp) from ssrc. It keeps no reference to dst.
func makePacket(dst []byte, seq uint16, epoch, ssrc uint32) {
	dst[0] = rtpVersionByte
	dst[1] = benchPT
	binary.BigEndian.PutUint16(dst[2:], seq)
	binary.BigEndian.PutUint32(dst[4:], epoch)
	binary.BigEndian.PutUint32(dst[8:], ssrc)
	for i := rtpHeaderLen; i < len(dst); i++ {
		dst[i] = payloadByte(i, seq, epoch)
	}
}

// payloadByte is the payload byte at offset i of packet (seq, epoch): it
// changes with the offset, the sequence number and the round so that a
// shifted, reordered or stale payload is caught.
func payloadByte(i int, seq uint16, epoch uint32) byte {
	return byte(i*31) ^ byte(seq) ^ byte(seq>>8)*7 ^ byte(epoch)*13
}

// parseHeader returns the sequence number and epoch of a benchmark packet
// and ok=false when b does not carry the benchmark's RTP header for ssrc. It
// checks the header only: the cheap test the receivers run per copy while
// measuring.
func parseHeader(b []byte, ssrc uint32) (seq uint16, epoch uint32, ok bool) {
	if len(b) < rtpHeaderLen || b[0] != rtpVersionByte || b[1] != benchPT ||
		binary.BigEndian.Uint32(b[8:]) != ssrc {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:]), true
}

// verifyPacket checks b byte for byte against the packet makePacket builds
// for the sequence number and epoch in b's header, of length size. It
// returns them, or an error saying what differs.
func verifyPacket(b []byte, size int, ssrc uint32) (seq uint16, epoch uint32, err error) {
	seq, epoch, ok := parseHeader(b, ssrc)
	if !ok {
		return 0, 0, fmt.Errorf("%w: bad RTP header", errPacket)
	}
	if len(b) != size {
		return 0, 0, fmt.Errorf("%w: %d bytes, want %d", errPacket, len(b), size)
	}
	for i := rtpHeaderLen; i < len(b); i++ {
		if b[i] != payloadByte(i, seq, epoch) {
			return 0, 0, fmt.Errorf("%w: payload byte %d of seq %d", errPacket, i, seq)
		}
	}
	return seq, epoch, nil
}
