package wire

import (
	"encoding/binary"
	"errors"
)

// MaxRTCPTargets is the most target SSRCs RTCPRoute collects from one
// compound RTCP packet; further distinct SSRCs are ignored. 16 covers any
// sane compound packet (a receiver reports on at most a handful of sources
// per media kind) while keeping RTCPRoute a small fixed-size value that
// needs no allocation. Immutable; safe for concurrent use.
const MaxRTCPTargets = 16

// RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611 §2) and
// payload-specific feedback formats (RFC 4585 §6.3, RFC 5104 §4.3) that
// RTCPRoute looks at.
const (
	rtcpSR    = 200 // sender report, RFC 3550 §6.4.1
	rtcpRR    = 201 // receiver report, RFC 3550 §6.4.2
	rtcpSDES  = 202 // source description, RFC 3550 §6.5 (skipped)
	rtcpBYE   = 203 // goodbye, RFC 3550 §6.6
	rtcpAPP   = 204 // application-defined, RFC 3550 §6.7 (skipped)
	rtcpRTPFB = 205 // transport-layer feedback, RFC 4585 §6.2
	rtcpPSFB  = 206 // payload-specific feedback, RFC 4585 §6.3
	rtcpXR    = 207 // extended reports, RFC 3611 (skipped)

	psfbPLI = 1  // picture loss indication, RFC 4585 §6.3.1
	psfbFIR = 4  // full intra request, RFC 5104 §4.3.1
	psfbAFB = 15 // application layer feedback, RFC 4585 §6.4

	// rtcpVersion is the RTP/RTCP version, the top two bits of byte 0.
	rtcpVersion = 2
	// rtcpPaddingBit is the P bit of byte 0 (RFC 3550 §6.4.1).
	rtcpPaddingBit = 0x20
	// rtcpCountMask extracts the 5-bit RC/SC/FMT field of byte 0.
	rtcpCountMask = 0x1f

	// srBlocksOffset is where SR report blocks start: header and sender
	// SSRC (8 bytes) plus the 20-byte sender info (RFC 3550 §6.4.1).
	srBlocksOffset = 28
	// rrBlocksOffset is where RR report blocks start: header and sender
	// SSRC (RFC 3550 §6.4.2).
	rrBlocksOffset = 8
	// reportBlockSize is the size of one reception report block; its first
	// word is the SSRC of the reported source (RFC 3550 §6.4.1).
	reportBlockSize = 24
	// fbHeaderSize is the common feedback header: header, sender SSRC,
	// media source SSRC at bytes 8..11 (RFC 4585 §6.1). FCI follows.
	fbHeaderSize = 12
	// firEntrySize is one FIR FCI entry: SSRC, sequence number, 3 reserved
	// bytes (RFC 5104 §4.3.1.1).
	firEntrySize = 8
	// rembSSRCOffset is where a REMB's SSRC list starts: after the 12-byte
	// feedback header, the "REMB" identifier (4 bytes) and the Num SSRC,
	// BR Exp, BR Mantissa word (draft-alvestrand-rmcat-remb-03 §2.2). The
	// Num SSRC byte is at fbHeaderSize+4.
	rembSSRCOffset = 20
)

// Sentinel errors returned by RTCPRoute.Parse, returned as is (never
// wrapped). Read-only; safe for concurrent use.
var (
	// ErrRTCPVersion means a sub-packet's version field is not 2.
	ErrRTCPVersion = errors.New("wire: RTCP version is not 2")
	// ErrRTCPLength means the compound packet is empty or not a multiple of
	// 4 bytes, a sub-packet's length field runs past the end, or a
	// sub-packet is too short for what its type and count fields announce.
	ErrRTCPLength = errors.New("wire: RTCP length invalid")
	// ErrRTCPPadding means the padding bit is set on a sub-packet that is
	// not the last of the compound, or the padding count (last byte) is 0
	// or larger than the sub-packet's body (RFC 3550 §6.4.1).
	ErrRTCPPadding = errors.New("wire: RTCP padding invalid")
	// ErrRTCPType means a sub-packet's packet type is outside 192..223, the
	// RTCP range of RFC 5761 §4.
	ErrRTCPType = errors.New("wire: RTCP packet type out of range")
)

// RTCPRoute is where one compound RTCP packet received from a client must
// go, as computed by Parse. The router forwards the whole compound packet,
// unchanged, to the publisher of each SSRC in Targets[:N] and, if
// ToSubscribers, to the subscribers of the stream whose SSRC is Sender.
// RTCPRoute is a fixed-size value with no pointers; Parse fills it without
// allocating. Not safe for concurrent use on the same value.
type RTCPRoute struct {
	// ToSubscribers is set when the compound starts with a sender report
	// (SR) or contains a BYE: those describe the sender's own stream and go
	// to its subscribers.
	ToSubscribers bool
	// Sender is the SSRC in bytes 4..7 of the first sub-packet (the
	// packet sender's SSRC for SR, RR, RTPFB, PSFB, APP and XR; the first
	// chunk or source for SDES and BYE), or 0 if that sub-packet is
	// shorter than 8 bytes.
	Sender uint32
	// N is the number of valid entries in Targets.
	N int
	// Targets holds, in order of first appearance and without duplicates,
	// the media SSRCs whose publisher must receive this feedback: sources
	// of SR/RR report blocks, media sources of RTPFB and PSFB packets, FIR
	// entries and REMB SSRCs. SSRC 0 is never included. Only Targets[:N]
	// is meaningful.
	Targets [MaxRTCPTargets]uint32
	// Keyframe has bit i set when Targets[i] is named by a keyframe request:
	// a PLI (RFC 4585 §6.3.1) or a FIR entry (RFC 5104 §4.3.1). The router
	// throttles those per publisher.
	Keyframe uint16
}

// IsKeyframe reports whether Targets[i] is named by a keyframe request.
func (r *RTCPRoute) IsKeyframe(i int) bool { return r.Keyframe&(1<<i) != 0 }

// add appends ssrc to the targets unless it is 0, already present, or the
// array is full, and returns its index (-1 if not a target).
func (r *RTCPRoute) add(ssrc uint32) int {
	if ssrc == 0 {
		return -1
	}
	for i, t := range r.Targets[:r.N] {
		if t == ssrc {
			return i
		}
	}
	if r.N < MaxRTCPTargets {
		r.Targets[r.N] = ssrc
		r.N++
		return r.N - 1
	}
	return -1
}

// addKeyframe adds ssrc as a target of a keyframe request.
func (r *RTCPRoute) addKeyframe(ssrc uint32) {
	if i := r.add(ssrc); i >= 0 {
		r.Keyframe |= 1 << i
	}
}

// Parse resets r and walks the compound RTCP packet b (RFC 3550 §6.1),
// validating every sub-packet header and filling r as documented on
// RTCPRoute:
//
//   - b must be at least 4 bytes and a multiple of 4 (ErrRTCPLength);
//   - each sub-packet must have version 2 (ErrRTCPVersion), a packet type
//     in 192..223 (ErrRTCPType) and a length field (L+1)*4 that fits in
//     what remains of b (ErrRTCPLength);
//   - only the last sub-packet may have the padding bit set, and then its
//     last byte (the padding count) must be 1..(size-4) (ErrRTCPPadding);
//     the padding is excluded from the checks below;
//   - SR (200): at least 28 + RC*24 bytes; report block sources become
//     targets; ToSubscribers if the SR is the first sub-packet;
//   - RR (201): at least 8 + RC*24 bytes; report block sources become
//     targets;
//   - BYE (203): ToSubscribers;
//   - RTPFB (205, RFC 4585 §6.2, e.g. generic NACK): at least 12 bytes;
//     the media source SSRC (bytes 8..11) becomes a target;
//   - PSFB (206): at least 12 bytes. FMT 4, FIR (RFC 5104 §4.3.1): the FCI
//     from byte 12 must be whole 8-byte entries and each entry's SSRC
//     becomes a target (the media source field is 0 by definition).
//     FMT 15 whose FCI starts with "REMB" (draft-alvestrand-rmcat-remb):
//     byte 16 is the number of SSRCs, which start at byte 20 and must fit
//     (ErrRTCPLength), and become targets. FMT 1, PLI: the media source
//     SSRC becomes a target. FIR and PLI targets are marked in Keyframe.
//     Any other FMT (SLI 2, RPSI 3, non-REMB application feedback, ...):
//     the media source SSRC becomes a target;
//   - SDES (202), APP (204), XR (207) and the other types in 192..223 are
//     skipped.
//
// Targets are deduplicated, capped at MaxRTCPTargets (extra ones are
// ignored, not an error) and never 0. On error the contents of r are
// unspecified. b stays the caller's and is only read during the call; no
// allocation; never panics. Not safe for concurrent use on the same r.
func (r *RTCPRoute) Parse(b []byte) error {
	*r = RTCPRoute{}
	if len(b) < 4 || len(b)%4 != 0 {
		return ErrRTCPLength
	}
	for off := 0; off < len(b); {
		// Every sub-packet starts on a 4-byte boundary of b, so at least
		// its 4-byte header is present.
		p := b[off:]
		if p[0]>>6 != rtcpVersion {
			return ErrRTCPVersion
		}
		pt := p[1]
		if pt < rtcpTypeMin || pt > rtcpTypeMax {
			return ErrRTCPType
		}
		size := (int(binary.BigEndian.Uint16(p[2:4])) + 1) * 4
		if size > len(p) {
			return ErrRTCPLength
		}
		p = p[:size]
		if p[0]&rtcpPaddingBit != 0 {
			if off+size != len(b) {
				return ErrRTCPPadding
			}
			pad := int(p[size-1])
			if pad == 0 || pad > size-4 {
				return ErrRTCPPadding
			}
			p = p[:size-pad]
		}
		first := off == 0
		if first && len(p) >= 8 {
			r.Sender = binary.BigEndian.Uint32(p[4:8])
		}
		count := int(p[0] & rtcpCountMask)
		var err error
		switch pt {
		case rtcpSR:
			err = r.addReportBlocks(p, srBlocksOffset, count)
			if first {
				r.ToSubscribers = true
			}
		case rtcpRR:
			err = r.addReportBlocks(p, rrBlocksOffset, count)
		case rtcpBYE:
			r.ToSubscribers = true
		case rtcpRTPFB:
			if len(p) < fbHeaderSize {
				return ErrRTCPLength
			}
			r.add(binary.BigEndian.Uint32(p[8:12]))
		case rtcpPSFB:
			err = r.addPSFB(p, count)
		case rtcpSDES, rtcpAPP, rtcpXR:
			// Nothing to route on: the compound still goes wherever the
			// other sub-packets send it.
		default:
			// Other types in 192..223 (RFC 5761 §4) are skipped too.
		}
		if err != nil {
			return err
		}
		off += size
	}
	return nil
}

// addReportBlocks adds the sources of the count report blocks of p that
// start at offset start.
func (r *RTCPRoute) addReportBlocks(p []byte, start, count int) error {
	if len(p) < start+count*reportBlockSize {
		return ErrRTCPLength
	}
	for i := range count {
		o := start + i*reportBlockSize
		r.add(binary.BigEndian.Uint32(p[o : o+4]))
	}
	return nil
}

// addPSFB adds the targets of the payload-specific feedback packet p with
// feedback message type format.
func (r *RTCPRoute) addPSFB(p []byte, format int) error {
	if len(p) < fbHeaderSize {
		return ErrRTCPLength
	}
	fci := p[fbHeaderSize:]
	switch {
	case format == psfbFIR:
		if len(fci)%firEntrySize != 0 {
			return ErrRTCPLength
		}
		for o := 0; o+firEntrySize <= len(fci); o += firEntrySize {
			r.addKeyframe(binary.BigEndian.Uint32(fci[o : o+4]))
		}
		return nil
	case format == psfbPLI:
		r.addKeyframe(binary.BigEndian.Uint32(p[8:12]))
		return nil
	case format == psfbAFB && len(fci) >= 4 && string(fci[:4]) == "REMB":
		if len(p) < rembSSRCOffset {
			return ErrRTCPLength
		}
		n := int(p[fbHeaderSize+4])
		if len(p) < rembSSRCOffset+n*4 {
			return ErrRTCPLength
		}
		for i := range n {
			o := rembSSRCOffset + i*4
			r.add(binary.BigEndian.Uint32(p[o : o+4]))
		}
		return nil
	}
	r.add(binary.BigEndian.Uint32(p[8:12]))
	return nil
}
