package proto

import (
	"encoding/binary"
	"fmt"
)

// Probe sizes. A probe body is Seq (4 bytes, big-endian), Stamp (8 bytes,
// big-endian), then 0..MaxProbePad zero bytes of padding.
const (
	ProbeHeaderSize = 12
	// MaxProbePad lets a client probe with packets the size of its media
	// (an RTP packet is about 1200 bytes) rather than only tiny ones.
	MaxProbePad = 1200
)

// Probe is the body of TypeProbe and TypeProbeEcho. The ZC sends every
// probe back unchanged as a ProbeEcho (same size: no amplification); Stamp
// is opaque to it, so a client puts its own monotonic clock there and times
// the round trip with its clock alone. Binary, not JSON, so the echo costs
// no parsing and every probe of a series has the same size.
type Probe struct {
	Seq   uint32
	Stamp uint64
	Pad   int // padding bytes, 0..MaxProbePad
}

// AppendProbe appends the frame of p with type t (TypeProbe or
// TypeProbeEcho) to dst.
func AppendProbe(dst []byte, t Type, p Probe) ([]byte, error) {
	if t != TypeProbe && t != TypeProbeEcho {
		return dst, fmt.Errorf("zone/proto: %s is not a probe type", t)
	}
	if p.Pad < 0 || p.Pad > MaxProbePad {
		return dst, fmt.Errorf("zone/proto: probe padding must be within 0..%d", MaxProbePad)
	}
	var h [ProbeHeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], p.Seq)
	binary.BigEndian.PutUint64(h[4:], p.Stamp)
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+ProbeHeaderSize+p.Pad))
	dst = append(dst, byte(t))
	dst = append(dst, h[:]...)
	return append(dst, make([]byte, p.Pad)...), nil
}

// DecodeProbe decodes a probe body (of either probe type). It checks the
// size only: padding content is ignored.
func DecodeProbe(body []byte) (Probe, error) {
	if len(body) < ProbeHeaderSize || len(body) > ProbeHeaderSize+MaxProbePad {
		return Probe{}, fmt.Errorf("zone/proto: probe body of %d bytes, want %d..%d",
			len(body), ProbeHeaderSize, ProbeHeaderSize+MaxProbePad)
	}
	return Probe{
		Seq:   binary.BigEndian.Uint32(body[0:]),
		Stamp: binary.BigEndian.Uint64(body[4:]),
		Pad:   len(body) - ProbeHeaderSize,
	}, nil
}
