package control

import (
	"context"
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
	"github.com/openmmr/mmr/protect/keys"
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
//
// Media protection (docs/PROTOCOL.md "Media protection"): the mode is fixed
// by the join that creates the meeting. A Standard meeting owns its key
// schedule (std): the current key goes into every joined and resumed, and
// every join and leave starts (or joins) a re-key wait of
// keys.DefaultCoalesce, after which the new key goes to everyone present
// in a media-key event (rekey.go). An E2EE meeting holds no media key: it
// only relays key wraps.
type meeting struct {
	id     string
	e2ee   bool               // immutable: the first join's token said E2EE
	ctx    context.Context    // immutable: done when the meeting ends or the server closes
	cancel context.CancelFunc // immutable
	mu     sync.Mutex
	parts  map[router.ParticipantID]*participant
	others map[router.ParticipantID]*participant // the hosts and participants: parts without the viewers

	std      *keys.Standard // Standard mode's key schedule; nil in an E2EE meeting
	rekeying bool           // a re-key wait (goroutine) is running
}

// newMeeting returns an empty meeting in the given mode, whose context is
// a child of base. A Standard meeting gets its first key (ID 1).
func newMeeting(base context.Context, id string, e2ee bool) (*meeting, error) {
	m := &meeting{id: id, e2ee: e2ee, parts: map[router.ParticipantID]*participant{}, others: map[router.ParticipantID]*participant{}}
	if !e2ee {
		std, err := keys.NewStandard(nil, keys.DefaultCoalesce)
		if err != nil {
			return nil, err
		}
		m.std = std
	}
	m.ctx, m.cancel = context.WithCancel(base)
	return m, nil
}

// mode returns the meeting's media_protection value.
func (m *meeting) mode() string {
	if m.e2ee {
		return proto.ProtectionE2EE
	}
	return proto.ProtectionStandard
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
	pub      string               // immutable: E2EE public key, 64 lowercase hex digits ("" in Standard meetings)

	cred     [32]byte   // current resume credential
	rtcp     [32]byte   // current RTCP secret (of the latest joined or resumed)
	wraps    wrapBudget // e2ee-key requests it may still send, per recipient
	held     [][]byte   // e2ee-key events that arrived during its grace period, sent after resumed
	streams  [media.NumKinds][]uint32
	conn     *conn       // nil during the grace period
	grace    *time.Timer // pending grace timer, or nil
	graceGen uint64      // invalidates a grace timer that fired late
	gone     bool        // removed from the meeting
}

func (p *participant) entry() proto.RosterEntry {
	e := proto.RosterEntry{ID: uint64(p.id), Name: p.name, Identity: p.identity, Role: p.role.String(), E2EEPublicKey: p.pub}
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
// joined answer (message ID id) on c; pub is the join's e2ee_public_key. It
// holds s.mu and the meeting's mu.
func (s *Server) join(c *conn, id uint32, claims token.Claims, name, pub string) (*participant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return nil, &joinError{proto.CodeShuttingDown, "server closing"}
	}
	m := s.meetings[claims.Meeting]
	if m != nil && m.e2ee != claims.E2EE {
		return nil, &joinError{proto.CodeWrongMode, "the join token says " + modeName(claims.E2EE) + " but the meeting is " + m.mode()}
	}
	pub, err := checkE2EEJoin(claims, pub)
	if err != nil {
		return nil, err
	}
	created := false
	if m == nil {
		if len(s.meetings) >= s.cfg.MaxMeetings {
			return nil, &joinError{proto.CodeServerFull, "no room for another meeting on this MMR"}
		}
		if m, err = newMeeting(s.ctx, claims.Meeting, claims.E2EE); err != nil {
			return nil, err
		}
		if err := s.rt.CreateMeeting(claims.Meeting); err != nil && !errors.Is(err, router.ErrMeetingExists) {
			m.cancel()
			return nil, err
		}
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
	var rtcp [32]byte
	if _, err = rand.Read(rtcp[:]); err == nil {
		var info router.ParticipantInfo
		info, err = s.rt.AddParticipant(m.id, router.ParticipantOptions{Name: name, RTCPSecret: &rtcp})
		if err == nil {
			var p *participant
			if p, err = s.admitLocked(c, id, m, info, claims, name, pub, rtcp); err == nil {
				if !created {
					s.membershipChangedLocked(m)
				}
				return p, nil
			}
			_ = s.rt.RemoveParticipant(info.ID)
		}
	}
	if created {
		delete(s.meetings, m.id)
		m.cancel()
		_ = s.rt.EndMeeting(m.id)
	}
	return nil, err
}

// admitLocked registers the new participant, announces it, and queues
// joined. Holds s.mu and m.mu.
func (s *Server) admitLocked(c *conn, id uint32, m *meeting, info router.ParticipantInfo, claims token.Claims, name, pub string, rtcp [32]byte) (*participant, error) {
	p := &participant{id: info.ID, m: m, identity: claims.Identity, name: name, role: claims.Role, media: info.Token, pub: pub, rtcp: rtcp}
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

// joinedLocked builds the joined body for p as seen from c: with the
// meeting's mode, p's current RTCP secret, its identity and, in a Standard
// meeting, the current meeting key.
func (s *Server) joinedLocked(c *conn, p *participant) *proto.Joined {
	j := &proto.Joined{
		Meeting:         p.m.id,
		Participant:     uint64(p.id),
		Role:            p.role.String(),
		MediaToken:      p.media.String(),
		Resume:          hex.EncodeToString(p.cred[:]),
		GraceMS:         max(s.cfg.Grace, 0).Milliseconds(),
		Endpoints:       endpointsFor(s.cfg.Endpoints, c.local),
		Roster:          p.m.rosterLocked(p),
		MediaProtection: p.m.mode(),
		RTCPSecret:      hex.EncodeToString(p.rtcp[:]),
		Identity:        p.identity,
	}
	if std := p.m.std; std != nil {
		k := keys.NewMediaKey(std.Current())
		j.MediaKey = &proto.MediaKey{KeyID: k.KeyID, Key: k.Key}
	}
	return j
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
	var fresh, rtcp [32]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(rtcp[:]); err != nil {
		return nil, err
	}
	// The router switches to the new RTCP secret now; RTCP the client
	// still seals under the old one is dropped until it reads resumed.
	if err := s.rt.SetRTCPSecret(p.id, &rtcp); err != nil {
		return nil, routerError(err)
	}
	p.cred, p.rtcp = fresh, rtcp
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
	for _, f := range p.held { // key wraps of the gap, after resumed
		c.send(f)
	}
	p.held = nil
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
	if len(m.parts) == 0 {
		s.endLocked(m)
		return
	}
	s.membershipChangedLocked(m)
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
	m.cancel() // its re-key wait, if any, ends
	delete(s.meetings, m.id)
	if err := s.rt.EndMeeting(m.id); err != nil && !errors.Is(err, router.ErrNoMeeting) {
		s.log.Warn("control: end meeting", "meeting", m.id, "err", err)
	}
}
