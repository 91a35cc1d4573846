package zone

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// Registry errors.
var (
	// ErrNoCapacity is returned by Lookup when no live MMR has room for a new
	// meeting (all are full, draining, or none is registered).
	ErrNoCapacity = errors.New("zone: no MMR has room for a new meeting")
	// errRegistryFull refuses a new MMR ID when MaxMMRs are registered.
	errRegistryFull = errors.New("zone: registry full")
	// errStaleSession: a newer registration of the same MMR replaced this one.
	errStaleSession = errors.New("zone: session replaced by a newer registration")
)

// mmr is the registry's record of one MMR. Guarded by registry.mu.
type mmr struct {
	id       string
	seed     uint64 // mmrSeed(id)
	session  uint64 // registration that owns the record
	reg      proto.Register
	rep      proto.Report // latest, Hosted always nil
	reported bool         // at least one report in this registration
	lastSeen time.Time    // registration or latest report
	lostAt   time.Time    // connection ended without Bye; zero while connected
	expires  time.Time    // r.expiry(m), kept current by every change of lastSeen or lostAt
	hosted   map[string]int
	load     float64
	weight   float64
	room     bool // reported, not draining, load < 1
}

type pendingPlacement struct {
	mmr     string
	expires time.Time
}

// expiredMMR names a registration the sweeper removed.
type expiredMMR struct {
	id      string
	session uint64
}

// registry is the ZC's view of the zone. It does no I/O and reads no clock:
// callers pass now. Safe for concurrent use.
type registry struct {
	interval   time.Duration
	missed     int
	pendingTTL time.Duration
	maxMMRs    int
	maxPending int

	mu      sync.RWMutex
	mmrs    map[string]*mmr
	list    []*mmr              // the values of mmrs, for fast iteration by chooseLocked
	claims  map[string][]string // meeting → IDs of the MMRs whose reports list it
	pending map[string]pendingPlacement
	session uint64
}

func newRegistry(c Config) *registry {
	return &registry{
		interval: c.ReportInterval, missed: c.MissedReports, pendingTTL: c.PlacementTTL,
		maxMMRs: c.MaxMMRs, maxPending: c.MaxPending,
		mmrs: make(map[string]*mmr), claims: make(map[string][]string), pending: make(map[string]pendingPlacement),
	}
}

// expiry is when m leaves selection: MissedReports intervals after its last
// report, or one interval after its connection ended without Bye (time for
// the agent to reconnect), whichever is first.
func (r *registry) expiry(m *mmr) time.Time {
	e := m.lastSeen.Add(time.Duration(r.missed) * r.interval)
	if !m.lostAt.IsZero() {
		if l := m.lostAt.Add(r.interval); l.Before(e) {
			e = l
		}
	}
	return e
}

func (r *registry) alive(m *mmr, now time.Time) bool { return now.Before(m.expires) }

// register records a registration and returns its session. A registration
// of an ID already present replaces it (old is the replaced session, 0 if
// none) and keeps its hosted meetings until the new session's first report.
func (r *registry) register(id string, reg proto.Register, now time.Time) (session, old uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.mmrs[id]
	if prev == nil && len(r.mmrs) >= r.maxMMRs {
		return 0, 0, errRegistryFull
	}
	r.session++
	m := &mmr{id: id, seed: mmrSeed(id), session: r.session, reg: reg, lastSeen: now, hosted: map[string]int{}}
	m.expires = r.expiry(m)
	if prev != nil {
		m.hosted, old = prev.hosted, prev.session
		r.list[slices.Index(r.list, prev)] = m
	} else {
		r.list = append(r.list, m)
	}
	r.mmrs[id] = m
	return m.session, old, nil
}

// report applies a Report of session.
func (r *registry) report(id string, session uint64, rep proto.Report, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.mmrs[id]
	if m == nil || m.session != session {
		return errStaleSession
	}
	if rep.Hosted != nil {
		r.setHostedLocked(m, *rep.Hosted)
		rep.Hosted = nil
	}
	m.rep, m.reported, m.lastSeen = rep, true, now
	m.expires = r.expiry(m)
	m.load = loadScore(m.reg.Capacity, &m.rep)
	m.weight = weightOf(m.load)
	m.room = !rep.Draining && !rep.NotAccepting && m.load < 1
	return nil
}

func (r *registry) setHostedLocked(m *mmr, list []proto.Hosted) {
	next := make(map[string]int, len(list))
	for _, h := range list {
		next[h.ID] = h.Participants
		if _, had := m.hosted[h.ID]; !had {
			r.claims[h.ID] = append(r.claims[h.ID], m.id)
			delete(r.pending, h.ID) // an MMR's report is authoritative
		}
	}
	for id := range m.hosted {
		if _, keep := next[id]; !keep {
			r.dropClaimLocked(id, m.id)
		}
	}
	m.hosted = next
}

func (r *registry) dropClaimLocked(meeting, mmrID string) {
	c := slices.DeleteFunc(r.claims[meeting], func(s string) bool { return s == mmrID })
	if len(c) == 0 {
		delete(r.claims, meeting)
	} else {
		r.claims[meeting] = c
	}
}

func (r *registry) deleteLocked(m *mmr) {
	for id := range m.hosted {
		r.dropClaimLocked(id, m.id)
	}
	delete(r.mmrs, m.id)
	i := slices.Index(r.list, m)
	r.list[i] = r.list[len(r.list)-1]
	r.list[len(r.list)-1] = nil
	r.list = r.list[:len(r.list)-1]
}

// lost notes that session's connection ended without Bye.
func (r *registry) lost(id string, session uint64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.mmrs[id]; m != nil && m.session == session && m.lostAt.IsZero() {
		m.lostAt = now
		m.expires = r.expiry(m)
	}
}

// remove deletes session's MMR at once (Bye). It reports whether it did.
func (r *registry) remove(id string, session uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.mmrs[id]
	if m == nil || m.session != session {
		return false
	}
	r.deleteLocked(m)
	return true
}

// sweep deletes expired MMRs and placements and returns the MMRs removed.
// Selection already ignores expired MMRs; sweeping frees their memory and
// lets the server close their connections.
func (r *registry) sweep(now time.Time) []expiredMMR {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []expiredMMR
	for _, m := range r.mmrs {
		if !r.alive(m, now) {
			r.deleteLocked(m)
			out = append(out, expiredMMR{m.id, m.session})
		}
	}
	for id, p := range r.pending {
		if m := r.mmrs[p.mmr]; m == nil || !now.Before(p.expires) {
			delete(r.pending, id)
		}
	}
	return out
}

// lookup answers "which MMR for meeting": the live MMR whose reports list
// it; else the MMR this ZC placed it on within PlacementTTL if still live;
// else a new placement (choose) remembered for PlacementTTL.
func (r *registry) lookup(meeting string, now time.Time) (proto.Placement, error) {
	r.mu.RLock()
	m, existing := r.existingLocked(meeting, now), true
	if m == nil {
		m, existing = r.chooseLocked(meeting, now), false
	}
	var p proto.Placement
	if m != nil {
		p = m.placement(meeting, existing)
	}
	record := m != nil && !existing && len(r.pending) < r.maxPending
	r.mu.RUnlock()
	switch {
	case m == nil:
		return proto.Placement{}, ErrNoCapacity
	case !record:
		return p, nil
	}
	// Remember the new placement. Another lookup of the same meeting may
	// have placed it (or a report claimed it) since the read lock was
	// released: then that answer wins, so this ZC never gives two answers.
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev := r.existingLocked(meeting, now); prev != nil {
		return prev.placement(meeting, true), nil
	}
	if len(r.pending) < r.maxPending {
		r.pending[meeting] = pendingPlacement{mmr: m.id, expires: now.Add(r.pendingTTL)}
	}
	return p, nil
}

// placement builds the answer for m. The endpoint slices are shared with
// the registry record, which never mutates them: callers must not either.
func (m *mmr) placement(meeting string, existing bool) proto.Placement {
	return proto.Placement{Meeting: meeting, MMR: m.id, Endpoints: m.reg.Endpoints, Fingerprint: m.reg.Fingerprint, Existing: existing}
}

// existingLocked returns the MMR already hosting meeting, or nil. When
// several live MMRs report it (two ZCs placed it differently during a view
// disagreement), the one with the most participants there wins, then the
// highest unweighted rendezvous hash: every ZC with the same reports agrees.
func (r *registry) existingLocked(meeting string, now time.Time) *mmr {
	var best *mmr
	var bestP int
	var bestH uint64
	claims := r.claims[meeting]
	if len(claims) > 0 {
		mh := meetingHash(meeting)
		for _, id := range claims {
			m := r.mmrs[id]
			if m == nil || !r.alive(m, now) {
				continue
			}
			p, h := m.hosted[meeting], mix(mh^m.seed)
			if best == nil || p > bestP || (p == bestP && h > bestH) {
				best, bestP, bestH = m, p, h
			}
		}
	}
	if best != nil {
		return best
	}
	if p, ok := r.pending[meeting]; ok && now.Before(p.expires) {
		if m := r.mmrs[p.mmr]; m != nil && r.alive(m, now) {
			return m
		}
	}
	return nil
}

// chooseLocked places a new meeting: among live MMRs with room, the one
// with the highest hrwScore(weight, mix(meetingHash ^ mmrSeed)); equal
// scores go to the smaller MMR ID. nil when no MMR has room.
func (r *registry) chooseLocked(meeting string, now time.Time) *mmr {
	mh := meetingHash(meeting)
	var best *mmr
	bestS := -1.0
	for _, m := range r.list {
		if !m.room || !r.alive(m, now) {
			continue
		}
		s := hrwScore(m.weight, mix(mh^m.seed))
		if best == nil || s > bestS || (s == bestS && m.id < best.id) {
			best, bestS = m, s
		}
	}
	return best
}

// MMRStatus is a snapshot of one registered MMR, for operators and tests.
// It is a copy: the caller owns it.
type MMRStatus struct {
	ID          string
	Endpoints   proto.Endpoints
	Capacity    proto.Capacity
	Fingerprint string
	// Report is the latest load report (Hosted is nil: see Hosted).
	Report proto.Report
	// Hosted lists the meetings the MMR reports, sorted.
	Hosted []string
	// Load is the load score (0 idle, ≥ 1 full).
	Load float64
	// Selectable: live, reported, not draining, load < 1.
	Selectable bool
	// Connected is false after the connection ended without Bye (the MMR
	// stays until it expires or registers again).
	Connected  bool
	LastReport time.Time
}

// snapshot returns the live MMRs sorted by ID.
func (r *registry) snapshot(now time.Time) []MMRStatus {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]MMRStatus, 0, len(r.mmrs))
	for _, m := range r.mmrs {
		if !r.alive(m, now) {
			continue
		}
		s := MMRStatus{
			ID: m.id, Endpoints: m.reg.Endpoints, Capacity: m.reg.Capacity, Fingerprint: m.reg.Fingerprint,
			Report: m.rep, Load: m.load, Selectable: m.room, Connected: m.lostAt.IsZero(),
		}
		if m.reported {
			s.LastReport = m.lastSeen
		}
		for id := range m.hosted {
			s.Hosted = append(s.Hosted, id)
		}
		slices.Sort(s.Hosted)
		s.Endpoints = proto.Endpoints{UDP: slices.Clone(s.Endpoints.UDP), TCP: slices.Clone(s.Endpoints.TCP), TLS: slices.Clone(s.Endpoints.TLS)}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b MMRStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}
