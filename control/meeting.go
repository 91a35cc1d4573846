package control

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

// meeting is the control-side state of one router meeting: its roster. All
// fields of the meeting and of its participants are guarded by mu, except
// id (immutable).
//
// Webinars: viewers (token.Viewer) are listed to, and announced to, hosts
// and participants only. A viewer's roster and events name the others
// (hosts, participants), never the other viewers, so a viewer's join or
// leave costs O(non-viewers), not O(meeting): 10,000 attendees join in
// linear time, not quadratic.
type meeting struct {
	id     string
	mu     sync.Mutex
	parts  map[router.ParticipantID]*participant
	others map[router.ParticipantID]*participant // the hosts and participants: parts without the viewers
}

// newMeeting returns an empty meeting.
func newMeeting(id string) *meeting {
	return &meeting{id: id, parts: map[router.ParticipantID]*participant{}, others: map[router.ParticipantID]*participant{}}
}

// addLocked and delLocked keep parts and others in step.
func (m *meeting) addLocked(p *participant) {
	m.parts[p.id] = p
	if p.role != token.Viewer {
		m.others[p.id] = p
	}
}

func (m *meeting) delLocked(p *participant) {
	delete(m.parts, p.id)
	delete(m.others, p.id)
}

// viewers returns the number of viewers.
func (m *meeting) viewersLocked() int { return len(m.parts) - len(m.others) }

// participant is one member of a meeting, connected or in its grace period.
type participant struct {
	id       router.ParticipantID // immutable
	m        *meeting             // immutable
	identity string               // immutable
	name     string               // immutable
	role     token.Role           // immutable
	media    wire.Token           // immutable

	cred     [32]byte // current resume credential
	streams  [media.NumKinds][]uint32
	conn     *conn       // nil during the grace period
	grace    *time.Timer // pending grace timer, or nil
	graceGen uint64      // invalidates a grace timer that fired late
	gone     bool        // removed from the meeting
}

func (p *participant) entry() proto.RosterEntry {
	e := proto.RosterEntry{ID: uint64(p.id), Name: p.name, Identity: p.identity, Role: p.role.String()}
	for i, ssrcs := range p.streams {
		if len(ssrcs) > 0 {
			e.Streams = append(e.Streams, proto.Stream{Kind: proto.Kind(media.Kinds[i]), SSRCs: slices.Clone(ssrcs)})
		}
	}
	return e
}

// rosterLocked lists every participant but except, in join order; for a
// viewer, the hosts and participants only.
func (m *meeting) rosterLocked(except *participant) []proto.RosterEntry {
	from := m.parts
	if except.role == token.Viewer {
		from = m.others
	}
	ids := make([]router.ParticipantID, 0, len(from))
	for id := range from {
		if id != except.id {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // router IDs grow with every AddParticipant
	r := make([]proto.RosterEntry, 0, len(ids))
	for _, id := range ids {
		r = append(r, m.parts[id].entry())
	}
	return r
}

// broadcastLocked sends msg, an event about subject, to every connected
// participant but subject; events about a viewer go to the hosts and
// participants only.
func (m *meeting) broadcastLocked(s *Server, msg proto.Message, subject *participant) {
	frame, err := proto.Encode(0, msg)
	if err != nil {
		s.log.Error("control: encode event", "type", msg.Type(), "err", err)
		return
	}
	to := m.parts
	if subject != nil && subject.role == token.Viewer {
		to = m.others
	}
	for _, p := range to {
		if p != subject && p.conn != nil {
			p.conn.send(frame)
		}
	}
}

// joinError is a refused join or resume: the error code to send.
type joinError struct{ code, msg string }

func (e *joinError) Error() string { return e.code + ": " + e.msg }

// join adds a participant for verified claims to its meeting and queues the
// joined answer (message ID id) on c. It holds s.mu and the meeting's mu.
func (s *Server) join(c *conn, id uint32, claims token.Claims, name string) (*participant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, &joinError{proto.CodeShuttingDown, "server closing"}
	}
	m := s.meetings[claims.Meeting]
	created := false
	if m == nil {
		if len(s.meetings) >= s.cfg.MaxMeetings {
			return nil, &joinError{proto.CodeServerFull, "no room for another meeting on this MMR"}
		}
		if err := s.rt.CreateMeeting(claims.Meeting); err != nil && !errors.Is(err, router.ErrMeetingExists) {
			return nil, err
		}
		m = newMeeting(claims.Meeting)
		s.meetings[m.id] = m
		created = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if claims.Role == token.Viewer && m.viewersLocked() >= s.cfg.MaxViewers {
		return nil, &joinError{proto.CodeMeetingFull, "the webinar has reached its viewer limit"}
	}
	if claims.Role != token.Viewer && len(m.others) >= s.cfg.MaxParticipants {
		return nil, &joinError{proto.CodeMeetingFull, "the meeting has reached its participant limit"}
	}
	switch {
	case claims.Name != "": // a version 2 token names the participant: the signed name wins
		name = claims.Name
	case name == "":
		name = claims.Identity
	}
	info, err := s.rt.AddParticipant(m.id, router.ParticipantOptions{Name: name})
	if err == nil {
		var p *participant
		if p, err = s.admitLocked(c, id, m, info, claims, name); err == nil {
			return p, nil
		}
		_ = s.rt.RemoveParticipant(info.ID)
	}
	if created {
		delete(s.meetings, m.id)
		_ = s.rt.EndMeeting(m.id)
	}
	return nil, err
}

// admitLocked registers the new participant, announces it, and queues
// joined. Holds s.mu and m.mu.
func (s *Server) admitLocked(c *conn, id uint32, m *meeting, info router.ParticipantInfo, claims token.Claims, name string) (*participant, error) {
	p := &participant{id: info.ID, m: m, identity: claims.Identity, name: name, role: claims.Role, media: info.Token}
	if _, err := rand.Read(p.cred[:]); err != nil {
		return nil, err
	}
	m.broadcastLocked(s, &proto.ParticipantJoined{Participant: p.entry()}, p)
	m.addLocked(p)
	s.parts[p.id] = p
	p.conn = c
	c.sendMsg(id, s.joinedLocked(c, p))
	return p, nil
}

// joinedLocked builds the joined body for p as seen from c.
func (s *Server) joinedLocked(c *conn, p *participant) *proto.Joined {
	return &proto.Joined{
		Meeting:     p.m.id,
		Participant: uint64(p.id),
		Role:        p.role.String(),
		MediaToken:  p.media.String(),
		Resume:      hex.EncodeToString(p.cred[:]),
		GraceMS:     max(s.cfg.Grace, 0).Milliseconds(),
		Endpoints:   endpointsFor(s.cfg.Endpoints, c.local),
		Roster:      p.m.rosterLocked(p),
	}
}

// resume moves participant pid to c if cred is its credential, with a fresh
// credential, and queues resumed (message ID id). The previous connection,
// if still open, is told it was replaced and closed.
func (s *Server) resume(c *conn, id uint32, pid router.ParticipantID, cred []byte) (*participant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	failed := &joinError{proto.CodeResumeFailed, "no participant with that ID and credential (grace period over?)"}
	if s.closed.Load() {
		return nil, &joinError{proto.CodeShuttingDown, "server closing"}
	}
	p := s.parts[pid]
	if p == nil || len(cred) != len(p.cred) {
		return nil, failed
	}
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone || subtle.ConstantTimeCompare(cred, p.cred[:]) != 1 {
		return nil, failed
	}
	var fresh [32]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return nil, err
	}
	p.cred = fresh
	s.stopGrace(p)
	if old := p.conn; old != nil {
		frame, err := proto.Encode(0, &proto.Error{Code: proto.CodeReplaced, Message: "resumed on another connection", Fatal: true})
		if err == nil {
			old.closeAfter(frame)
		} else {
			old.kill()
		}
	}
	p.conn = c
	c.sendMsg(id, &proto.Resumed{Joined: *s.joinedLocked(c, p)})
	return p, nil
}

// detach runs when c, the connection of p, ends: p enters its grace period
// (or leaves at once when Grace is negative).
func (s *Server) detach(c *conn, p *participant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone || p.conn != c {
		return // left, or taken over by a resume
	}
	p.conn = nil
	if s.closed.Load() {
		return // Close removes everyone
	}
	if s.cfg.Grace < 0 {
		s.removeLocked(p, proto.ReasonTimeout)
		return
	}
	p.graceGen++
	gen := p.graceGen
	s.wg.Add(1) // done by graceExpired, or by stopGrace when it stops the timer
	p.grace = time.AfterFunc(s.cfg.Grace, func() { s.graceExpired(p, gen) })
}

// stopGrace cancels p's pending grace timer. Holds m.mu.
func (s *Server) stopGrace(p *participant) {
	p.graceGen++
	if p.grace != nil && p.grace.Stop() {
		s.wg.Done() // the callback will not run
	}
	p.grace = nil
}

func (s *Server) graceExpired(p *participant, gen uint64) {
	defer s.wg.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.closed.Load() || p.gone || p.conn != nil || p.graceGen != gen {
		return
	}
	p.grace = nil
	s.stats.graceExpired.Add(1)
	s.removeLocked(p, proto.ReasonTimeout)
}

// removeLocked takes p out of its meeting and the router, tells the others
// (stream-removed for what it published, then participant-left), and ends
// the meeting if it is now empty. Holds s.mu and p.m.mu.
func (s *Server) removeLocked(p *participant, reason string) {
	m := p.m
	p.gone = true
	s.stopGrace(p)
	m.delLocked(p)
	delete(s.parts, p.id)
	if err := s.rt.RemoveParticipant(p.id); err != nil && !errors.Is(err, router.ErrNoParticipant) {
		s.log.Warn("control: remove participant", "participant", p.id, "err", err)
	}
	for i, ssrcs := range p.streams {
		if len(ssrcs) > 0 {
			m.broadcastLocked(s, &proto.StreamRemoved{Participant: uint64(p.id), Kind: proto.Kind(media.Kinds[i]), SSRCs: ssrcs}, p)
		}
	}
	m.broadcastLocked(s, &proto.ParticipantLeft{Participant: uint64(p.id), Reason: reason}, p)
	s.log.Info("control: left", "meeting", m.id, "participant", p.id, "reason", reason)
	if len(m.parts) == 0 {
		s.endLocked(m)
	}
}

// endMeeting answers request id of host (on connection c) with ok, removes
// everyone from its meeting, sends each connected participant meeting-ended
// and closes its connection after it. Holds neither lock.
func (s *Server) endMeeting(c *conn, id uint32, host *participant) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, by := host.m, host.id
	m.mu.Lock()
	defer m.mu.Unlock()
	if host.gone {
		return errGone // ended or left meanwhile; the ID may name a new meeting now
	}
	c.sendMsg(id, &proto.OK{}) // queued before meeting-ended
	frame, err := proto.Encode(0, &proto.MeetingEnded{Reason: proto.ReasonEnded, By: uint64(by)})
	for _, p := range m.parts {
		p.gone = true
		s.stopGrace(p)
		delete(s.parts, p.id)
		if p.conn != nil {
			if err == nil {
				p.conn.closeAfter(frame)
			} else {
				p.conn.kill()
			}
		}
	}
	clear(m.parts)
	clear(m.others)
	s.endLocked(m)
	return nil
}

// endLocked forgets m and ends it on the router (which removes any
// participant left). Holds s.mu and m.mu.
func (s *Server) endLocked(m *meeting) {
	if s.meetings[m.id] != m {
		return // already ended; the ID may name a new meeting now
	}
	delete(s.meetings, m.id)
	if err := s.rt.EndMeeting(m.id); err != nil && !errors.Is(err, router.ErrNoMeeting) {
		s.log.Warn("control: end meeting", "meeting", m.id, "err", err)
	}
}
