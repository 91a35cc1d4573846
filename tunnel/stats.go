package tunnel

import "sync/atomic"

// Refusal is why a connection, ping or stream was refused before relaying.
type Refusal uint8

// Refusal reasons; String gives their metric label.
const (
	RefusedServerFull    Refusal = iota // MaxConns connections open: closed at accept
	RefusedStreamsFull                  // MaxStreams streams open
	RefusedBadRequest                   // not GET, not an upgrade, no subprotocol, unknown path
	RefusedBadTarget                    // Openmmr-Target missing or malformed
	RefusedTokenMissing                 // no bearer token
	RefusedTokenInvalid                 // malformed or forged token
	RefusedTokenExpired                 // genuine but expired token
	RefusedNotAllowed                   // destination outside the served zones
	RefusedClientStreams                // StreamsPerClient reached
	RefusedAddrStreams                  // StreamsPerAddr reached
	RefusedDialFailed                   // destination unresolvable or not answering
	RefusedLeaving                      // the server is stopping
	NumRefusals
)

var refusalNames = [NumRefusals]string{
	"server-full", "streams-full", "bad-request", "bad-target", "token-missing", "token-invalid",
	"token-expired", "target-not-allowed", "client-streams", "addr-streams", "dial-failed", "leaving",
}

// String returns the reason's metric label.
func (r Refusal) String() string {
	if r < NumRefusals {
		return refusalNames[r]
	}
	return "unknown"
}

// End is why an open stream ended.
type End uint8

// Stream end reasons; String gives their metric label.
const (
	EndClient   End = iota // the client closed the WebSocket or its connection
	EndUpstream            // the destination closed or failed
	EndIdle                // nothing relayed for IdleTimeout (close 4000)
	EndSlow                // a write to the client took longer than WriteTimeout
	EndLeaving             // Shutdown (close 1012)
	EndClosed              // Close: cut without a close handshake
	NumEnds
)

var endNames = [NumEnds]string{"client", "upstream", "idle", "slow-consumer", "leaving", "closed"}

// String returns the reason's metric label.
func (e End) String() string {
	if e < NumEnds {
		return endNames[e]
	}
	return "unknown"
}

// Stats is a snapshot of a Server's counters. A plain value.
type Stats struct {
	Conns       int64 // TCP connections open now
	Streams     int64 // streams open now
	Accepted    uint64
	Pings       uint64 // answered pings
	Opened      uint64 // streams opened
	BytesUp     uint64 // client → destination
	BytesDown   uint64 // destination → client
	ConnTimeout uint64 // connections closed before a request: handshake/header/keep-alive timeout or bad TLS
	Refused     [NumRefusals]uint64
	Ended       [NumEnds]uint64
	LogDropped  uint64 // refusal log lines suppressed by the log rate limit
	Placements  uint64 // placement lookups at the ZCs (Config.Placer)
	PlaceFailed uint64 // placement lookups that failed
}

type counters struct {
	conns, streams                  atomic.Int64
	accepted, pings, opened         atomic.Uint64
	bytesUp, bytesDown, connTimeout atomic.Uint64
	refused                         [NumRefusals]atomic.Uint64
	ended                           [NumEnds]atomic.Uint64
	logDropped                      atomic.Uint64
	placements, placeFailed         atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Conns: c.conns.Load(), Streams: c.streams.Load(), Accepted: c.accepted.Load(),
		Pings: c.pings.Load(), Opened: c.opened.Load(), BytesUp: c.bytesUp.Load(),
		BytesDown: c.bytesDown.Load(), ConnTimeout: c.connTimeout.Load(), LogDropped: c.logDropped.Load(),
		Placements: c.placements.Load(), PlaceFailed: c.placeFailed.Load(),
	}
	for i := range s.Refused {
		s.Refused[i] = c.refused[i].Load()
	}
	for i := range s.Ended {
		s.Ended[i] = c.ended[i].Load()
	}
	return s
}
