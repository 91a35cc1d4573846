package wire

import "strconv"

// DefaultPort is the router's default UDP port for media. The router may be
// configured to listen elsewhere; clients learn the address to use from the
// control channel. Immutable; safe for concurrent use.
const DefaultPort = 8801

// MaxPacketSize is the largest UDP payload, in bytes, the router accepts on
// its media port. It matches the common 1500-byte Ethernet MTU; datagrams
// whose payload is larger are dropped and counted as "oversize". Clients
// should keep RTP packets well below it (about 1200 bytes is customary so
// that the IP and UDP headers and any tunnel overhead still fit in the
// path MTU). Immutable; safe for concurrent use.
const MaxPacketSize = 1500

// AudioLevelExtID is the RTP header extension ID (RFC 8285, one-byte
// form) that carries the audio level of RFC 6464 in audio packets: one
// byte, the voice-activity flag in the top bit and the level in -dBov
// (0 loudest, 127 silence) in the low 7. Senders SHOULD put it in every
// audio packet; the router reads it (it is in the clear SRTP header) to
// find the active speaker. Fixed by the protocol, not negotiated.
const AudioLevelExtID = 1

// Class is what a UDP datagram received on the media port is, judged from
// its first one or two bytes only (see Classify). It is a plain value, safe
// for concurrent use.
type Class uint8

// The classes returned by Classify. ClassUnknown is the zero value.
const (
	// ClassUnknown is anything Classify does not recognise (including an
	// empty datagram, STUN, ZRTP, DTLS and TURN channel data, which this
	// port does not speak).
	ClassUnknown Class = iota
	// ClassRTP is an RTP packet (RFC 3550 §5.1): first byte 128..191.
	ClassRTP
	// ClassRTCP is an RTCP packet (RFC 3550 §6.4): first byte 128..191 and
	// second byte (packet type) 192..223, RFC 5761 §4.
	ClassRTCP
	// ClassBind is a Bind control packet (first byte TypeBind).
	ClassBind
	// ClassBindAck is a BindAck control packet (first byte TypeBindAck).
	ClassBindAck
	// ClassKeepalive is a Keepalive control packet (first byte TypeKeepalive).
	ClassKeepalive
	// ClassKeepaliveAck is a KeepaliveAck control packet (first byte
	// TypeKeepaliveAck).
	ClassKeepaliveAck
)

// String returns a short lowercase name: "unknown", "rtp", "rtcp", "bind",
// "bind-ack", "keepalive", "keepalive-ack", or "class(N)" for values outside
// the defined set. The defined names are constants (no allocation). Safe for
// concurrent use.
func (c Class) String() string {
	switch c {
	case ClassUnknown:
		return "unknown"
	case ClassRTP:
		return "rtp"
	case ClassRTCP:
		return "rtcp"
	case ClassBind:
		return "bind"
	case ClassBindAck:
		return "bind-ack"
	case ClassKeepalive:
		return "keepalive"
	case ClassKeepaliveAck:
		return "keepalive-ack"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// First-byte and second-byte ranges used by Classify.
const (
	// rtpFirstMin..rtpFirstMax is the RFC 7983 §7 range for RTP and RTCP:
	// the two top bits are the RTP/RTCP version 2 (0b10xxxxxx).
	rtpFirstMin = 128
	rtpFirstMax = 191
	// rtcpTypeMin..rtcpTypeMax is the RFC 5761 §4 range of RTCP packet
	// types (the second byte); RTP payload types with the marker bit that
	// would fall here are not allowed when RTP and RTCP share a port.
	rtcpTypeMin = 192
	rtcpTypeMax = 223
)

// Classify tells what the datagram b is from its first byte, following the
// ranges of RFC 7983 §7 and RFC 5761 §4:
//
//	b[0] 128..191, b[1] 192..223  ClassRTCP
//	b[0] 128..191, otherwise      ClassRTP (also when len(b) == 1)
//	b[0] == 4                     ClassBind
//	b[0] == 5                     ClassBindAck
//	b[0] == 6                     ClassKeepalive
//	b[0] == 7                     ClassKeepaliveAck
//	anything else, or empty b     ClassUnknown
//
// Classify validates nothing beyond those bytes; the matching Unmarshal or
// parser does. It reads b only during the call (b stays the caller's), does
// not allocate, never panics, and is safe for concurrent use.
func Classify(b []byte) Class {
	if len(b) == 0 {
		return ClassUnknown
	}
	switch b0 := b[0]; {
	case b0 >= rtpFirstMin && b0 <= rtpFirstMax:
		if len(b) >= 2 && b[1] >= rtcpTypeMin && b[1] <= rtcpTypeMax {
			return ClassRTCP
		}
		return ClassRTP
	case b0 == TypeBind:
		return ClassBind
	case b0 == TypeBindAck:
		return ClassBindAck
	case b0 == TypeKeepalive:
		return ClassKeepalive
	case b0 == TypeKeepaliveAck:
		return ClassKeepaliveAck
	}
	return ClassUnknown
}
