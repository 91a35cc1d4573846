package router

import (
	"net/netip"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// ParticipantID identifies a participant within one Router. IDs are assigned
// by AddParticipant, never reused by that Router, and never 0.
type ParticipantID uint64

// Errors returned by the Router's control methods.
var (
	ErrClosed         = errClosed
	ErrNoMeeting      = session.ErrNoMeeting
	ErrMeetingExists  = session.ErrMeetingExists
	ErrMeetingIDEmpty = session.ErrMeetingID
	ErrNoParticipant  = session.ErrNoParticipant
	ErrKind           = session.ErrKind
	ErrSSRCInUse      = session.ErrSSRCInUse
	ErrSSRCZero       = session.ErrSSRCZero
	ErrTooManySSRCs   = session.ErrTooManySSRCs
	ErrAddrInUse      = session.ErrAddrInUse
)

// ParticipantOptions describe a participant being added.
type ParticipantOptions struct {
	// Name labels the participant in logs and stats; it need not be unique.
	Name string
	// Fixed, when set for a kind (index Kind.Index()), binds that kind's flow
	// to the given remote address at once, without a bind packet: for
	// gateways, recorders and tests. Zero entries are bound later by the
	// client's bind packets, signed with the media token.
	Fixed [media.NumKinds]netip.AddrPort
	// RTCPSecret is the participant's 32-byte RTCP secret (docs/PROTOCOL.md
	// "SRTCP transform"), the one its client received in joined: the
	// router opens the participant's RTCP with each flow's direction-1
	// key and protects what it sends the participant with the direction-2
	// key. The router copies it. nil means the participant's RTCP is plain,
	// in both directions: for fixed-address gateways and recorders added
	// through this API that speak no SRTCP. The control server always sets
	// it. Replace it with Router.SetRTCPSecret (after a resume).
	RTCPSecret *[32]byte
}

// ParticipantInfo is what AddParticipant returns.
type ParticipantInfo struct {
	ID ParticipantID
	// Token is the secret media token the participant's client signs its
	// bind packets and consent echoes with (docs/PROTOCOL.md, "Bind"); it
	// never travels on the media ports. Hand it to that client only.
	Token wire.Token
}

// Filter selects which publishers' streams of one media kind a participant
// receives. The zero Filter receives nothing; see All, None and From.
// Filters are immutable values, safe for concurrent use.
type Filter = session.Filter

// All receives the kind from every other participant of the meeting (the default).
func All() Filter { return session.All() }

// None receives nothing of the kind.
func None() Filter { return session.None() }

// From receives the kind only from the listed publishers.
func From(ids ...ParticipantID) Filter {
	raw := make([]uint64, len(ids))
	for i, id := range ids {
		raw[i] = uint64(id)
	}
	return session.From(raw...)
}

// Stats is a snapshot of the whole router: traffic, drops by reason, and
// the number of meetings and participants.
type Stats struct {
	stats.Counters
	Meetings     int
	Participants int
	// Streams is the number of live TCP and TLS media streams; MaxStreams
	// the router-wide cap on them (Config.MaxStreams).
	Streams, MaxStreams int
	// TCPAcceptErrors counts Accept errors on the TCP media listeners
	// (EMFILE and the like), each retried after a back-off.
	TCPAcceptErrors uint64
	// TCPAccepting is false while a TCP media listener's Accept has been
	// failing (within the last 2 s) or after one stopped; true when there
	// are no TCP listeners.
	TCPAccepting bool
	// BindChallenges counts return-routability challenges sent: BindAcks
	// with StatusVerify, answering binds from addresses not yet verified.
	BindChallenges uint64
	// KernelDrops counts datagrams the kernel dropped because a UDP
	// socket's receive buffer was full (the SO_RXQ_OVFL counter, read
	// with SO_MEMINFO): the readers fell behind.
	KernelDrops uint64
}
