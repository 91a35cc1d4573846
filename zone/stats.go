package zone

import "sync/atomic"

// Stats counts what a Server did since New. It is a snapshot: the caller
// owns it.
type Stats struct {
	Accepted          uint64 // connections taken into service
	Refused           uint64 // connections closed at once: MaxConns or MaxConnsPerIP
	HandshakeFailures uint64 // TLS handshakes that failed or timed out (garbage, wrong ALPN, scanners)
	BadRequests       uint64 // malformed, oversize or unexpected frames (connection closed)
	AuthFailures      uint64 // registrations whose zone-secret proof did not verify
	RateLimited       uint64 // registrations, lookups, probes or reports over their rate (connection closed)
	Registrations     uint64 // successful MMR registrations
	Reports           uint64 // reports applied
	Lookups           uint64 // lookups answered (network and in-process)
	Probes            uint64 // probes echoed
	Expired           uint64 // MMRs removed for missed reports or a lost connection
	MMRs              int    // live MMRs now
}

type liveStats struct {
	accepted, refused, handshakeFailures, badRequests, authFailures, rateLimited,
	registrations, reports, lookups, probes, expired atomic.Uint64
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Accepted: s.st.accepted.Load(), Refused: s.st.refused.Load(),
		HandshakeFailures: s.st.handshakeFailures.Load(), BadRequests: s.st.badRequests.Load(),
		AuthFailures: s.st.authFailures.Load(), RateLimited: s.st.rateLimited.Load(),
		Registrations: s.st.registrations.Load(), Reports: s.st.reports.Load(),
		Lookups: s.st.lookups.Load(), Probes: s.st.probes.Load(), Expired: s.st.expired.Load(),
		MMRs: len(s.MMRs()),
	}
}
