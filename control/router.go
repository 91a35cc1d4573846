package control

import (
	"net/netip"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
)

// Meetings creates and ends router meetings.
type Meetings interface {
	CreateMeeting(id string) error
	EndMeeting(id string) error
}

// Participants adds and removes router participants, and replaces a
// participant's RTCP secret (ParticipantOptions.RTCPSecret) when a resume
// hands its client a fresh one.
type Participants interface {
	AddParticipant(meeting string, o router.ParticipantOptions) (router.ParticipantInfo, error)
	RemoveParticipant(id router.ParticipantID) error
	SetRTCPSecret(id router.ParticipantID, secret *[32]byte) error
}

// Streams changes what a participant publishes and receives.
type Streams interface {
	Publish(id router.ParticipantID, k media.Kind, ssrcs ...uint32) error
	Unpublish(id router.ParticipantID, k media.Kind, ssrcs ...uint32) error
	Subscribe(id router.ParticipantID, k media.Kind, f router.Filter) error
}

// Router is the part of *router.Router the control server uses, and all it
// uses. Implementations must be safe for concurrent use and return the
// router package's sentinel errors (router.ErrMeetingExists, ...).
type Router interface {
	Meetings
	Participants
	Streams
}

// UDPEndpoints returns one UDP endpoint per media kind for each address,
// for Config.Endpoints; pass router.UDPAddrs(). The result is new.
func UDPEndpoints(addrs []netip.AddrPort) []proto.Endpoint {
	var eps []proto.Endpoint
	for _, a := range addrs {
		for _, k := range media.Kinds {
			eps = append(eps, proto.Endpoint{Kind: proto.Kind(k), Transport: proto.TransportUDP, Addr: a})
		}
	}
	return eps
}

// endpointsFor resolves unspecified endpoint addresses to local, the address
// the client reached the control listener on, dropping those of the other
// IP family.
func endpointsFor(eps []proto.Endpoint, local netip.Addr) []proto.Endpoint {
	out := make([]proto.Endpoint, 0, len(eps))
	local = local.Unmap()
	for _, e := range eps {
		a := e.Addr.Addr()
		if a.IsUnspecified() {
			if !local.IsValid() || a.Is4() != local.Is4() {
				continue
			}
			e.Addr = netip.AddrPortFrom(local, e.Addr.Port())
		}
		out = append(out, e)
	}
	return out
}

// The real router provides everything the control server uses.
var _ Router = (*router.Router)(nil)
