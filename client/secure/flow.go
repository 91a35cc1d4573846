package secure

import (
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// Flow is the protection of one media kind's transport flow: Seal and
// Open classify each packet (wire.Classify) and protect RTP end to end
// (SealRTP, OpenRTP) and RTCP on the kind's client-router flow (SealRTCP,
// OpenRTCP). A plain value: copy it freely; safe for concurrent use as the
// State is. client/udpmedia and client/streammedia take it as their
// Protection.
type Flow struct {
	s *State
	k media.Kind
}

// Flow returns the protection of kind k's flow.
func (s *State) Flow(k media.Kind) Flow { return Flow{s: s, k: k} }

// Kind returns the flow's media kind.
func (f Flow) Kind() media.Kind { return f.k }

// Seal protects an outgoing RTP or RTCP packet into dst (from dst[0];
// allocation-free when cap(dst) >= len(pkt)+protect.Overhead). Anything
// else is ErrNotMedia: binds and keepalives go out as they are.
func (f Flow) Seal(dst, pkt []byte) ([]byte, error) {
	switch wire.Classify(pkt) {
	case wire.ClassRTP:
		return f.s.SealRTP(dst, pkt)
	case wire.ClassRTCP:
		return f.s.SealRTCP(f.k, dst, pkt)
	}
	return nil, ErrNotMedia
}

// Open checks and decrypts an incoming SRTP or SRTCP packet into dst
// (dst may be pkt[:0]). A rejected packet returns a protect sentinel
// error and is counted in Stats by reason; the caller drops it.
// Anything else is ErrNotMedia.
func (f Flow) Open(dst, pkt []byte) ([]byte, error) {
	switch wire.Classify(pkt) {
	case wire.ClassRTP:
		return f.s.OpenRTP(dst, pkt)
	case wire.ClassRTCP:
		return f.s.OpenRTCP(f.k, dst, pkt)
	}
	return nil, ErrNotMedia
}
