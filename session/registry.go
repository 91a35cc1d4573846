package session

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// Errors returned by Registry methods.
var (
	ErrNoMeeting     = errors.New("session: no such meeting")
	ErrMeetingExists = errors.New("session: meeting already exists")
	ErrMeetingID     = errors.New("session: empty meeting ID")
	ErrNoParticipant = errors.New("session: no such participant")
	ErrKind          = errors.New("session: invalid media kind")
	ErrSSRCInUse     = errors.New("session: SSRC already published in this meeting")
	ErrSSRCZero      = errors.New("session: SSRC 0 cannot be published")
	ErrTooManySSRCs  = errors.New("session: too many SSRCs for one media kind")
	ErrAddrInUse     = errors.New("session: address already bound to another flow")
)

// GroupFunc picks the listener group a fixed remote address is served from.
type GroupFunc func(netip.AddrPort) int

// Registry owns every meeting, participant and flow of one router. Its
// methods are safe for concurrent use and serialise on one mutex; the packet
// path never takes it: it reads Flows and Handles, and the snapshots each
// Flow and Meeting expose.
type Registry struct {
	// Flows maps a bound remote address to its flow. Read lock-free.
	Flows *Table[AddrKey, *Flow]
	// Handles maps a media token's public BindHandle (wire.Token.Handle)
	// to its participant: how a Bind, which carries the handle and not
	// the token, finds the token that verifies it. Read lock-free. No two
	// participants share a handle (Add draws another token on a clash).
	Handles *Table[wire.BindHandle, *Participant]

	mu       sync.Mutex
	meetings map[string]*Meeting
	parts    map[uint64]*Participant
	nextID   uint64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		Flows:    NewTable[AddrKey, *Flow](hashKey),
		Handles:  NewTable[wire.BindHandle, *Participant](func(h wire.BindHandle) uint64 { return uint64(h[0]) | uint64(h[1])<<8 }),
		meetings: make(map[string]*Meeting),
		parts:    make(map[uint64]*Participant),
	}
}

// CreateMeeting adds an empty meeting.
func (r *Registry) CreateMeeting(id string) error {
	if id == "" {
		return ErrMeetingID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.meetings[id]; ok {
		return ErrMeetingExists
	}
	m := &Meeting{ID: id}
	m.owners.Store(&map[uint32]*Flow{})
	r.meetings[id] = m
	return nil
}

// EndMeeting removes a meeting and all its participants.
func (r *Registry) EndMeeting(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.meetings[id]
	if !ok {
		return ErrNoMeeting
	}
	// Everyone leaves at once: no route or SSRC map is rebuilt per
	// participant (that made ending a meeting of n O(n²)); each flow is
	// unlinked and emptied once. O(n).
	for _, p := range m.parts {
		p.removed = true
		delete(r.parts, p.ID)
		r.Handles.Delete(p.Handle)
		for _, f := range p.Flows {
			if rem := f.remote.Swap(nil); rem != nil {
				r.unlinkLocked(rem)
			}
			f.route.Store(&Route{})
			f.ssrcs.Store(nil)
		}
		m.gone.Add(p.Stats.Snapshot())
	}
	m.parts = nil
	m.pubs = [media.NumKinds][]*Flow{}
	m.owners.Store(&map[uint32]*Flow{})
	delete(r.meetings, id)
	return nil
}

// maxTokenDraws bounds the tokens Add draws for one participant: a
// second is needed only when the first one's 64-bit handle is taken
// (about n/2^64 for n participants), so 4 clashes in a row mean the random
// source is broken.
const maxTokenDraws = 4

// ErrTokenDraw means Add drew maxTokenDraws media tokens whose handles
// were all taken: the random source is not random.
var ErrTokenDraw = errors.New("session: no media token with a free handle")

// Add creates a participant in meeting id that receives everything by
// default. fixed[k] binds that kind's flow at once (zero: bind by token
// later); group picks the listener for a fixed address.
func (r *Registry) Add(meeting, name string, fixed [media.NumKinds]netip.AddrPort, group GroupFunc) (*Participant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var tok wire.Token
	var h wire.BindHandle
	for i := 0; ; i++ {
		if i == maxTokenDraws {
			return nil, ErrTokenDraw
		}
		var err error
		if tok, err = wire.NewToken(); err != nil {
			return nil, err
		}
		h = tok.Handle()
		if _, taken := r.Handles.Get(h); !taken {
			break
		}
	}
	m, ok := r.meetings[meeting]
	if !ok {
		return nil, ErrNoMeeting
	}
	for _, ap := range fixed {
		if ap.IsValid() {
			if _, taken := r.Flows.Get(KeyOf(ap)); taken {
				return nil, ErrAddrInUse
			}
		}
	}
	r.nextID++
	p := &Participant{ID: r.nextID, Name: name, Token: tok, Handle: h, Meeting: m}
	for i, k := range media.Kinds {
		f := &Flow{Kind: k, Participant: p}
		f.route.Store(&Route{})
		p.Flows[i] = f
		p.subs[i] = All()
		if ap := fixed[i]; ap.IsValid() {
			rem := remoteOf(ap, group(ap))
			rem.Fixed = true
			f.remote.Store(rem)
			r.Flows.Put(rem.Key, f)
		}
	}
	r.parts[p.ID] = p
	r.Handles.Put(h, p)
	m.parts = append(m.parts, p)
	// The newcomer receives every publisher (All): it joins their routes.
	for i := range media.NumKinds {
		for _, pub := range m.pubs[i] {
			addDest(pub, p.Flows[i])
		}
	}
	return p, nil
}

// Remove takes a participant out of its meeting: its flows stop receiving
// and sending at once.
func (r *Registry) Remove(id uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.parts[id]
	if !ok {
		return ErrNoParticipant
	}
	r.removeLocked(p)
	return nil
}

func (r *Registry) removeLocked(p *Participant) {
	m := p.Meeting
	p.removed = true
	delete(r.parts, p.ID)
	r.Handles.Delete(p.Handle)
	for _, f := range p.Flows {
		if rem := f.remote.Swap(nil); rem != nil {
			r.unlinkLocked(rem)
		}
		f.route.Store(&Route{})
		f.ssrcs.Store(nil)
	}
	m.parts = slices.DeleteFunc(m.parts, func(q *Participant) bool { return q == p })
	m.gone.Add(p.Stats.Snapshot())
	published := false
	for i := range media.NumKinds {
		if slices.Contains(m.pubs[i], p.Flows[i]) {
			published = true
			m.pubs[i] = slices.DeleteFunc(m.pubs[i], func(f *Flow) bool { return f == p.Flows[i] })
		}
		for _, pub := range m.pubs[i] {
			removeDest(pub, p.Flows[i])
		}
	}
	if published {
		r.rebuildOwners(m)
	}
}

// Get returns a participant by ID.
func (r *Registry) Get(id uint64) (*Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.parts[id]
	return p, ok
}

// Bind points p's flow of kind k at remote address ap, which the caller has
// verified receives (return routability): the flow's consent starts now.
// The flow is served by listener
// group, its copies leaving from src (the local address the bind arrived
// at; zero: the kernel's choice). A flow already bound elsewhere moves (NAT
// rebinding): its old address stops matching at once. An address bound to
// another flow is taken from it. It reports false when p has left.
func (r *Registry) Bind(p *Participant, k media.Kind, ap netip.AddrPort, group int, src egress.Src) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.removed || !k.Valid() {
		return false
	}
	f := p.Flow(k)
	key := KeyOf(ap)
	if other, ok := r.Flows.Get(key); ok && other != f {
		// The latest valid bind wins: a NAT may hand a port that an earlier
		// flow used (now stale) to a new one. The old flow becomes unbound.
		other.remote.Store(nil)
	}
	if old := f.remote.Load(); old != nil {
		if old.Key == key && old.Group == group && old.Sink == nil && old.Dst.Src() == src {
			f.consent.Store(time.Now().UnixNano())
			return true
		}
		r.unlinkLocked(old)
	}
	rem := &Remote{Key: key, Dst: egress.AddrFrom(ap, src), Group: group}
	now := time.Now().UnixNano()
	f.seen.Store(now)
	f.consent.Store(now)
	f.remote.Store(rem)
	r.Flows.Put(key, f)
	return true
}

// Expire unbinds every client-bound flow that has sent nothing since
// before (Unix nanoseconds) and returns how many it unbound. Their clients
// must bind again; fixed addresses never expire.
func (r *Registry) Expire(before int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.parts {
		for _, f := range p.Flows {
			rem := f.remote.Load()
			if rem == nil || rem.Fixed || rem.Sink != nil || f.seen.Load() >= before {
				continue
			}
			r.Flows.Delete(rem.Key)
			f.remote.Store(nil)
			n++
		}
	}
	return n
}

// Publish adds SSRCs to p's flow of kind k.
func (r *Registry) Publish(id uint64, k media.Kind, ssrcs ...uint32) error {
	return r.withParticipant(id, k, func(p *Participant) error {
		return r.publishLocked(p, k, ssrcs)
	})
}

func (r *Registry) publishLocked(p *Participant, k media.Kind, ssrcs []uint32) error {
	f := p.Flow(k)
	cur := f.SSRCs()
	owners := p.Meeting.owners.Load()
	for _, s := range ssrcs {
		if s == 0 {
			return ErrSSRCZero
		}
		if o, taken := (*owners)[s]; taken && o != f {
			return ErrSSRCInUse
		}
		if !slices.Contains(cur, s) {
			cur = append(cur, s)
		}
	}
	if len(cur) > MaxSSRCs {
		return ErrTooManySSRCs
	}
	// The route first: once the SSRCs are visible the packet path forwards
	// along it (routes of flows that published nothing are kept empty).
	m := p.Meeting
	if !slices.Contains(m.pubs[k.Index()], f) {
		f.route.Store(routeOf(m, p, k.Index()))
		m.pubs[k.Index()] = append(m.pubs[k.Index()], f)
	}
	f.ssrcs.Store(&cur)
	r.rebuildOwners(m)
	return nil
}

// Unpublish removes SSRCs from p's flow of kind k (unknown ones are ignored).
func (r *Registry) Unpublish(id uint64, k media.Kind, ssrcs ...uint32) error {
	return r.withParticipant(id, k, func(p *Participant) error {
		f := p.Flow(k)
		cur := slices.DeleteFunc(f.SSRCs(), func(s uint32) bool { return slices.Contains(ssrcs, s) })
		f.ssrcs.Store(&cur)
		if len(cur) == 0 {
			f.route.Store(&Route{}) // publishes nothing: routes nowhere
			m := p.Meeting
			m.pubs[k.Index()] = slices.DeleteFunc(m.pubs[k.Index()], func(g *Flow) bool { return g == f })
		}
		r.rebuildOwners(p.Meeting)
		return nil
	})
}

// Subscribe sets which publishers' streams of kind k participant id receives.
func (r *Registry) Subscribe(id uint64, k media.Kind, f Filter) error {
	return r.withParticipant(id, k, func(p *Participant) error {
		i := k.Index()
		old := p.subs[i]
		p.subs[i] = f
		// Only the routes of publishers whose inclusion changed are
		// rebuilt: From(a) → From(b) touches two routes, whatever the
		// meeting's size.
		for _, pub := range p.Meeting.pubs[i] {
			id := pub.Participant.ID
			if pub.Participant == p {
				continue
			}
			switch was, now := old.Includes(id), f.Includes(id); {
			case now && !was:
				addDest(pub, p.Flows[i])
			case was && !now:
				removeDest(pub, p.Flows[i])
			}
		}
		return nil
	})
}

// withParticipant runs fn with the registry locked on participant id,
// after checking k.
func (r *Registry) withParticipant(id uint64, k media.Kind, fn func(*Participant) error) error {
	if !k.Valid() {
		return ErrKind
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.parts[id]
	if !ok {
		return ErrNoParticipant
	}
	return fn(p)
}

// Routes: a publishing flow of kind k goes to the kind-k flow of every
// other participant whose filter admits the publisher; a flow that
// publishes nothing forwards nothing (the packet path checks Publishes
// first) and keeps an empty route. routeOf computes a route when a flow
// starts publishing; afterwards joins, leaves and subscription changes
// edit only the routes they affect (addDest, removeDest), each a copy of
// one destination list (the snapshot the packet path reads), so a
// subscription change costs O(1) routes and a join or leave O(publishers).

// addDest publishes pub's route with d added (if absent).
func addDest(pub, d *Flow) {
	old := pub.route.Load().Dests
	if slices.Contains(old, d) {
		return
	}
	dests := make([]*Flow, len(old), len(old)+1)
	copy(dests, old)
	pub.route.Store(&Route{Dests: append(dests, d)})
}

// removeDest publishes pub's route without d.
func removeDest(pub, d *Flow) {
	old := pub.route.Load().Dests
	i := slices.Index(old, d)
	if i < 0 {
		return
	}
	dests := make([]*Flow, 0, len(old)-1)
	dests = append(append(dests, old[:i]...), old[i+1:]...)
	pub.route.Store(&Route{Dests: dests})
}

// routeOf computes the route of pub's flow of kind index i.
func routeOf(m *Meeting, pub *Participant, i int) *Route {
	var dests []*Flow
	for _, sub := range m.parts {
		if sub != pub && sub.subs[i].Includes(pub.ID) {
			dests = append(dests, sub.Flows[i])
		}
	}
	return &Route{Dests: dests}
}

func (r *Registry) rebuildOwners(m *Meeting) {
	owners := make(map[uint32]*Flow)
	for _, p := range m.parts {
		for _, f := range p.Flows {
			if s := f.ssrcs.Load(); s != nil {
				for _, x := range *s {
					owners[x] = f
				}
			}
		}
	}
	m.owners.Store(&owners)
}

// Counts returns the number of meetings and participants.
func (r *Registry) Counts() (meetings, participants int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.meetings), len(r.parts)
}

// MeetingStats sums the counters of a meeting's present and past participants.
func (r *Registry) MeetingStats(id string) (stats.Counters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.meetings[id]
	if !ok {
		return stats.Counters{}, ErrNoMeeting
	}
	c := m.gone
	for _, p := range m.parts {
		c.Add(p.Stats.Snapshot())
	}
	return c, nil
}

// unlinkLocked removes a remote's UDP address from the flow table (stream
// remotes are not in it).
func (r *Registry) unlinkLocked(rem *Remote) {
	if rem.Sink == nil {
		r.Flows.Delete(rem.Key)
	}
}

// BindStream binds p's flow of kind k to a stream connection whose peer is
// ap. Like Bind it moves the flow from any earlier address. It reports
// false when p has left.
func (r *Registry) BindStream(p *Participant, k media.Kind, ap netip.AddrPort, sink Sink) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.removed || !k.Valid() {
		return false
	}
	f := p.Flow(k)
	if old := f.remote.Load(); old != nil {
		r.unlinkLocked(old)
	}
	rem := remoteOf(ap, 0)
	rem.Sink = sink
	f.remote.Store(rem)
	return true
}

// UnbindStream unbinds p's flow of kind k if it is still bound to sink.
func (r *Registry) UnbindStream(p *Participant, k media.Kind, sink Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !k.Valid() {
		return
	}
	f := p.Flow(k)
	if rem := f.remote.Load(); rem != nil && rem.Sink == sink {
		f.remote.Store(nil)
	}
}

// MeetingInfo is one meeting's ID and size.
type MeetingInfo struct {
	ID           string
	Participants int
}

// Meetings lists every meeting with its number of participants.
func (r *Registry) Meetings() []MeetingInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]MeetingInfo, 0, len(r.meetings))
	for id, m := range r.meetings {
		out = append(out, MeetingInfo{ID: id, Participants: len(m.parts)})
	}
	return out
}

// BindFixed binds p's flows to the fixed addresses (zero entries are left
// alone), as Add does for its fixed argument: addresses given by the
// embedding API, which never expire. It is for a caller that must prepare
// the flows (their RTCP protection) before any packet can reach them. It
// fails with ErrAddrInUse, binding nothing, if an address is another
// flow's, and with ErrNoParticipant if p has left.
func (r *Registry) BindFixed(p *Participant, fixed [media.NumKinds]netip.AddrPort, group GroupFunc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.removed {
		return ErrNoParticipant
	}
	for i, ap := range fixed {
		if ap.IsValid() {
			if other, taken := r.Flows.Get(KeyOf(ap)); taken && other != p.Flows[i] {
				return ErrAddrInUse
			}
		}
	}
	for i, ap := range fixed {
		if !ap.IsValid() {
			continue
		}
		f := p.Flows[i]
		if old := f.remote.Load(); old != nil {
			r.unlinkLocked(old)
		}
		rem := remoteOf(ap, group(ap))
		rem.Fixed = true
		f.remote.Store(rem)
		r.Flows.Put(rem.Key, f)
	}
	return nil
}
