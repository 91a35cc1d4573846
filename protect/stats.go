package protect

import "sync/atomic"

// Stats counts what an Opener or RTCPFlow did with the packets given to
// it: one counter per outcome, every rejected packet in exactly one
// reason. It is a plain snapshot (see Opener.Stats, RTCPFlow.Stats).
type Stats struct {
	// Opened is the number of packets that passed every check.
	Opened uint64
	// Malformed: too short, or the RTP/RTCP header does not parse.
	Malformed uint64
	// UnknownSender: RTP from an SSRC the Opener was not told about
	// (AddSender), or, on RTCP, a new sender SSRC beyond the flow's limit.
	UnknownSender uint64
	// UnknownKey: the MKI names no live key (never installed, or dropped).
	UnknownKey uint64
	// Auth: the AEAD tag does not verify: the packet was changed on the
	// way (any bit of header, payload or tag) or sealed under another key.
	Auth uint64
	// Replayed: the packet index was already accepted (inside the window).
	Replayed uint64
	// TooOld: the packet index is older than the replay window.
	TooOld uint64
	// Sealed is the number of packets protected; SealErrors those refused.
	Sealed     uint64
	SealErrors uint64
}

// Rejected returns the number of rejected packets, all reasons together.
func (s Stats) Rejected() uint64 {
	return s.Malformed + s.UnknownSender + s.UnknownKey + s.Auth + s.Replayed + s.TooOld
}

// counters is the live form of Stats, typed atomics so Stats can be read
// without the owner's mutex.
type counters struct {
	opened, malformed, unknownSender, unknownKey, auth, replayed, tooOld atomic.Uint64
	sealed, sealErrors                                                   atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Opened: c.opened.Load(), Malformed: c.malformed.Load(), UnknownSender: c.unknownSender.Load(),
		UnknownKey: c.unknownKey.Load(), Auth: c.auth.Load(), Replayed: c.replayed.Load(),
		TooOld: c.tooOld.Load(), Sealed: c.sealed.Load(), SealErrors: c.sealErrors.Load(),
	}
}
