// Package session is the router's model of meetings, participants and their
// media flows. Changes (joins, leaves, binds, publications, subscriptions)
// go through a Registry under its mutex, off the packet path; each change
// publishes immutable snapshots through atomic.Pointer that the packet path
// reads without locks: the flow table (remote address → Flow), each flow's
// Route (where its packets go), its published SSRCs, and each meeting's
// SSRC → publisher map for RTCP feedback.
package session

import (
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// MaxSSRCs is the most SSRCs one participant may publish for one media kind:
// three simulcast layers, each with an RTX stream (RFC 4588), plus headroom.
const MaxSSRCs = 8

// Remote is where a bound flow's peer is. Immutable once published.
type Remote struct {
	Key AddrKey
	Dst *egress.Addr
	// Group is the index of the listener (local address) the flow was bound
	// through; replies leave from that listener so the peer's NAT lets them in.
	Group int
	// Fixed marks an address given by the embedding API rather than bound by
	// a client: it never expires.
	Fixed bool
	// Sink, when not nil, is the stream connection (TCP or TLS) the flow is
	// bound to: copies go to its queue instead of a UDP address, and Key is
	// the stream's peer address, which is not in the UDP flow table.
	Sink Sink
}

// Sink is a stream transport's send side. Enqueue copies pkt (the caller
// keeps its buffer) into a bounded queue and never blocks; it is called
// from many goroutines at once.
type Sink interface {
	Enqueue(pkt []byte)
}

// Route is the immutable list of flows a flow's packets are copied to.
type Route struct {
	Dests []*Flow
}

// Has reports whether f is one of the route's destinations: whether f's
// participant receives the route's stream. A linear scan, for the RTCP path
// (a few packets per second per participant), not for every media packet.
func (r *Route) Has(f *Flow) bool {
	for _, d := range r.Dests {
		if d == f {
			return true
		}
	}
	return false
}

// Flow is one participant's transport for one media kind. Its identity
// fields never change; its remote address, route and published SSRCs are
// snapshots read lock-free on the packet path. Safe for concurrent use.
type Flow struct {
	Kind        media.Kind
	Participant *Participant

	remote atomic.Pointer[Remote]
	route  atomic.Pointer[Route]
	ssrcs  atomic.Pointer[[]uint32]
	// seen is when the flow last sent anything (Unix nanoseconds of the
	// read batch that carried it), for idle expiry.
	seen atomic.Int64
	// consent is when the flow's client last proved it receives at its
	// bound UDP address (Unix nanoseconds): a verified bind, or a Keepalive
	// echoing a recent consent nonce (RFC 7675 consent freshness).
	consent atomic.Int64
	// bindCounter is the Counter of the last Bind accepted for this flow
	// (docs/PROTOCOL.md, "Binding a flow"): a Bind must carry a higher one.
	bindCounter atomic.Uint64
	// keyframe[i] is when a keyframe request for the i-th published SSRC
	// was last let through (Unix nanoseconds), for AllowKeyframe.
	keyframe [MaxSSRCs]atomic.Int64
	// rtcp is the flow's SRTCP protection (router side), nil when the
	// participant's RTCP is plain (see RTCP).
	rtcp atomic.Pointer[protect.RTCPFlow]
}

// RTCP returns the flow's SRTCP protection, router side: it opens what the
// client sends (direction 1) and seals what the router sends it (direction
// 2). nil means the participant's RTCP is plain (no RTCP secret: gateways
// and recorders added through the embedding API). Lock-free.
func (f *Flow) RTCP() *protect.RTCPFlow { return f.rtcp.Load() }

// SetRTCP installs (or with nil removes) the flow's SRTCP protection; the
// next RTCP datagram from or to the flow uses it.
func (f *Flow) SetRTCP(c *protect.RTCPFlow) { f.rtcp.Store(c) }

// AllowKeyframe decides whether a keyframe request (PLI, FIR) for ssrc,
// published on this flow, may reach the publisher at now (Unix
// nanoseconds): at most one per interval per SSRC, however many subscribers
// ask at once (a keyframe answers them all). The first caller of an
// interval wins, even among concurrent readers. Safe for concurrent use;
// no allocation.
func (f *Flow) AllowKeyframe(ssrc uint32, now, interval int64) bool {
	p := f.ssrcs.Load()
	if p == nil || interval <= 0 {
		return true
	}
	for i, s := range *p {
		if s != ssrc {
			continue
		}
		last := &f.keyframe[i]
		prev := last.Load()
		if prev != 0 && now-prev < interval && now >= prev {
			return false
		}
		return last.CompareAndSwap(prev, now)
	}
	return true // unpublished meanwhile: nothing to protect
}

// BindCounter returns the Counter of the last Bind accepted for the flow
// (0 before the first). Lock-free.
func (f *Flow) BindCounter() uint64 { return f.bindCounter.Load() }

// AcceptBindCounter records c as the last accepted Bind counter if it is
// above the current one, and reports whether it was: of concurrent callers
// with the same c, exactly one wins, so a Bind replayed to two readers at
// once is accepted at most once. Lock-free, no allocation.
func (f *Flow) AcceptBindCounter(c uint64) bool {
	for {
		last := f.bindCounter.Load()
		if c <= last {
			return false
		}
		if f.bindCounter.CompareAndSwap(last, c) {
			return true
		}
	}
}

// Seen records that the flow sent a packet at now (Unix nanoseconds).
func (f *Flow) Seen(now int64) { f.seen.Store(now) }

// Consent records that the flow's client proved at now (Unix nanoseconds)
// that it receives at its bound address. Safe for concurrent use.
func (f *Flow) Consent(now int64) { f.consent.Store(now) }

// MaySend reports whether media may be sent to rem, the flow's remote, when
// consent older than after (Unix nanoseconds) has lapsed: always for
// streams (TCP proved the path) and fixed addresses (given by the
// embedding API), otherwise only if the client proved since after that
// it receives there. Lock-free, no allocation.
func (f *Flow) MaySend(rem *Remote, after int64) bool {
	return rem.Sink != nil || rem.Fixed || f.consent.Load() >= after
}

// Remote returns the bound remote address, or nil while unbound.
func (f *Flow) Remote() *Remote { return f.remote.Load() }

// Route returns the current destinations of the flow's packets (never nil
// once the participant has joined).
func (f *Flow) Route() *Route { return f.route.Load() }

// Publishes reports whether ssrc is published on this flow.
func (f *Flow) Publishes(ssrc uint32) bool {
	p := f.ssrcs.Load()
	if p == nil {
		return false
	}
	for _, s := range *p {
		if s == ssrc {
			return true
		}
	}
	return false
}

// SSRCs returns the published SSRCs (a copy).
func (f *Flow) SSRCs() []uint32 {
	if p := f.ssrcs.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// Participant is a member of a meeting. ID, Name, Token, Handle, Meeting
// and Flows never change after creation; Stats is live. Safe for
// concurrent use.
type Participant struct {
	ID    uint64
	Name  string
	Token wire.Token
	// Handle is Token.Handle(), the participant's name in its Binds.
	Handle  wire.BindHandle
	Meeting *Meeting
	Flows   [media.NumKinds]*Flow
	Stats   stats.Live
	// Queued is the number of bytes waiting in the participant's stream
	// (TCP/TLS) send queues, all kinds together.
	Queued atomic.Int64
	// BindsQueued is the number of the participant's binds waiting in the
	// router's bind queue (the router caps it for fairness).
	BindsQueued atomic.Int32

	// Guarded by Registry.mu.
	subs    [media.NumKinds]Filter
	removed bool
}

// Flow returns the participant's flow of kind k (k must be valid).
func (p *Participant) Flow(k media.Kind) *Flow { return p.Flows[k.Index()] }

// Meeting is a set of participants who exchange media. ID never changes;
// the SSRC map is a snapshot. Safe for concurrent use.
type Meeting struct {
	ID string

	owners atomic.Pointer[map[uint32]*Flow]

	// Guarded by Registry.mu.
	parts []*Participant
	gone  stats.Counters // totals of participants who left
	// pubs[i] are the meeting's flows of kind index i that publish (have
	// SSRCs): the only flows with a route. Joins, leaves and subscription
	// changes touch these routes alone, so their cost follows the number
	// of publishers, not the meeting's size squared.
	pubs [media.NumKinds][]*Flow
}

// Owner returns the flow that published ssrc in this meeting.
func (m *Meeting) Owner(ssrc uint32) (*Flow, bool) {
	mp := m.owners.Load()
	if mp == nil {
		return nil, false
	}
	f, ok := (*mp)[ssrc]
	return f, ok
}

// addrOf is a convenience for callers holding a netip.AddrPort.
func remoteOf(ap netip.AddrPort, group int) *Remote {
	return &Remote{Key: KeyOf(ap), Dst: egress.AddrOf(ap), Group: group}
}
