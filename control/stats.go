package control

import "sync/atomic"

// Stats is a snapshot of the server's state and counters. The counters only
// grow; each is read atomically, not all at one instant.
type Stats struct {
	Conns        int // open connections, joined or not
	Meetings     int // meetings with at least one participant
	Participants int // participants, those in their grace period included

	Accepted        uint64 // connections accepted
	Rejected        uint64 // connections refused by MaxConns or MaxConnsPerIP, before TLS
	HandshakeFailed uint64 // TLS handshakes that failed or timed out
	ProtocolErrors  uint64 // connections closed for bad frames or messages
	AuthFailures    uint64 // joins refused: bad, expired or other-meeting token; failed resumes
	AuthDelayed     uint64 // of those, refusals held back because their address failed repeatedly
	Joins           uint64 // successful joins
	Resumes         uint64 // successful resumes
	GraceExpired    uint64 // participants removed because their grace period ran out
	Timeouts        uint64 // connections closed by the handshake or idle timeout
	SlowConsumers   uint64 // connections closed because their send queue was full
	RateLimited     uint64 // messages refused by the request rate limit
	RateCutOff      uint64 // connections closed for sending on while rate limited
	MediaKeys       uint64 // Standard-mode meeting keys made after a membership change (each sent in one media-key event to the meeting)
	WrapsRelayed    uint64 // e2ee-key requests relayed to their recipient (or kept for it during its grace period)
	WrapsRefused    uint64 // e2ee-key requests refused: bad wrap, forged from, unknown recipient, Standard meeting, over the per-recipient rate
}

// counters are the live counters behind Stats.
type counters struct {
	accepted, rejected, handshakeFailed, protocolErrors, authFailures atomic.Uint64
	authDelayed                                                       atomic.Uint64
	joins, resumes, graceExpired, timeouts, slowConsumers             atomic.Uint64
	rateLimited, rateCutOff                                           atomic.Uint64
	mediaKeys, wrapsRelayed, wrapsRefused                             atomic.Uint64
}

// Stats returns a snapshot. Safe for concurrent use.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Conns: len(s.conns), Meetings: len(s.meetings), Participants: len(s.parts)}
	s.mu.Unlock()
	c := &s.stats
	st.Accepted, st.Rejected, st.HandshakeFailed = c.accepted.Load(), c.rejected.Load(), c.handshakeFailed.Load()
	st.ProtocolErrors, st.AuthFailures, st.AuthDelayed = c.protocolErrors.Load(), c.authFailures.Load(), c.authDelayed.Load()
	st.Joins, st.Resumes, st.GraceExpired = c.joins.Load(), c.resumes.Load(), c.graceExpired.Load()
	st.Timeouts, st.SlowConsumers = c.timeouts.Load(), c.slowConsumers.Load()
	st.RateLimited, st.RateCutOff = c.rateLimited.Load(), c.rateCutOff.Load()
	st.MediaKeys, st.WrapsRelayed, st.WrapsRefused = c.mediaKeys.Load(), c.wrapsRelayed.Load(), c.wrapsRefused.Load()
	return st
}
