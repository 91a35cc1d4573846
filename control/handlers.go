package control

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
)

// software is announced in welcome.
const software = "openmmr"

// handle processes one decoded message on the reader goroutine. It returns
// false when the connection must close.
func (c *conn) handle(id uint32, msg proto.Message) bool {
	switch c.state {
	case stateNew:
		if h, ok := msg.(*proto.Hello); ok {
			return c.hello(id, h)
		}
	case stateHello:
		switch m := msg.(type) {
		case *proto.Join:
			return c.join(id, m)
		case *proto.Resume:
			return c.resume(id, m)
		case *proto.Ping:
			c.sendMsg(id, &proto.Pong{})
			return true
		}
	case stateJoined:
		return c.handleJoined(id, msg)
	}
	c.fatal(id, proto.CodeUnexpected, fmt.Sprintf("%s not allowed here", msg.Type()))
	return false
}

func (c *conn) hello(id uint32, h *proto.Hello) bool {
	if !slices.Contains(h.Versions, proto.Version) {
		c.fatal(id, proto.CodeVersion, fmt.Sprintf("this server speaks version %d only", proto.Version))
		return false
	}
	cfg := &c.s.cfg
	c.sendMsg(id, &proto.Welcome{
		Version: proto.Version, Software: software,
		Capabilities:   []string{proto.CapResume, proto.CapRTT},
		MaxFrame:       cfg.MaxFrame,
		IdleTimeoutMS:  cfg.IdleTimeout.Milliseconds(),
		PingIntervalMS: cfg.PingInterval.Milliseconds(),
		GraceMS:        max(cfg.Grace, 0).Milliseconds(),
	})
	c.state = stateHello
	return true
}

func (c *conn) join(id uint32, j *proto.Join) bool {
	claims, err := c.s.verifier.Verify(j.Token, time.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		return c.refuse(id, proto.CodeTokenExpired, "join token expired at "+claims.Expiry.UTC().Format(time.RFC3339))
	case err != nil:
		return c.refuse(id, proto.CodeTokenInvalid, "join token does not verify")
	case claims.Meeting != j.Meeting:
		return c.refuse(id, proto.CodeWrongMeeting, "join token is for another meeting")
	}
	p, err := c.s.join(c, id, claims, j.Name, j.E2EEPublicKey)
	if err != nil {
		return c.joinFailed(id, err)
	}
	c.s.stats.joins.Add(1)
	if o := c.s.cfg.Observe; o != nil {
		o.JoinLatency(time.Since(c.started))
	}
	c.s.log.Debug("control: joined", "meeting", j.Meeting, "participant", p.id, "role", claims.Role)
	c.becomeJoined(p)
	return true
}

func (c *conn) resume(id uint32, r *proto.Resume) bool {
	cred, _ := hex.DecodeString(r.Credential) // validated by Decode
	p, err := c.s.resume(c, id, router.ParticipantID(r.Participant), cred)
	if err != nil {
		var je *joinError
		if errors.As(err, &je) && je.code == proto.CodeResumeFailed {
			return c.refuse(id, je.code, je.msg)
		}
		return c.joinFailed(id, err)
	}
	c.s.stats.resumes.Add(1)
	c.s.log.Debug("control: resumed", "meeting", p.m.id, "participant", p.id)
	c.becomeJoined(p)
	return true
}

// refuse answers a failed authentication; nothing else happens. Past a
// few recent failures from the connection's address the answer waits,
// longer with each (authFails), or until the server closes.
func (c *conn) refuse(id uint32, code, msg string) bool {
	c.s.stats.authFailures.Add(1)
	if d := c.s.fails.fail(c.ip, time.Now()); d > 0 {
		c.s.stats.authDelayed.Add(1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.s.done:
			t.Stop()
		}
	}
	c.sendError(id, code, msg, true)
	c.linger = true
	return false
}

func (c *conn) joinFailed(id uint32, err error) bool {
	var je *joinError
	if errors.As(err, &je) {
		c.sendError(id, je.code, je.msg, true)
	} else {
		c.s.log.Error("control: join", "err", err)
		c.sendError(id, proto.CodeInternal, "join failed", true)
	}
	c.linger = true
	return false
}

func (c *conn) becomeJoined(p *participant) {
	c.p = p
	c.state = stateJoined
	c.joined.Store(true)
	c.s.pingNow(c)
}

func (c *conn) handleJoined(id uint32, msg proto.Message) bool {
	switch m := msg.(type) {
	case *proto.Ping:
		c.sendMsg(id, &proto.Pong{RTTMicros: c.rttMicros()})
		return true
	case *proto.Pong:
		c.pong(id)
		return true
	case *proto.Publish:
		c.reply(id, c.s.publish(c.p, m.Kind.Media(), m.SSRCs))
		return true
	case *proto.Unpublish:
		c.reply(id, c.s.unpublish(c.p, m.Kind.Media(), m.SSRCs))
		return true
	case *proto.Subscribe:
		c.reply(id, c.s.subscribe(c.p, m.Kind.Media(), m.Publishers, false))
		return true
	case *proto.Unsubscribe:
		c.reply(id, c.s.subscribe(c.p, m.Kind.Media(), nil, true))
		return true
	case *proto.E2EEKey:
		err := c.s.relayWrap(c.p, m)
		if err != nil && c.limit.take(time.Now()) == cutOff {
			// Refused wraps count against the request rate (accepted
			// ones have their own budget, protection.go).
			c.s.stats.rateLimited.Add(1)
			c.s.stats.rateCutOff.Add(1)
			c.fatal(id, proto.CodeRateLimited, "kept sending refused key wraps")
			return false
		}
		c.reply(id, err)
		return true
	case *proto.Leave:
		c.s.leave(c.p)
		c.sendMsg(id, &proto.OK{})
		c.p = nil
		c.linger = true
		return false
	case *proto.EndMeeting:
		if !c.p.role.CanEndMeeting() {
			c.sendError(id, proto.CodeForbidden, "only a host may end the meeting", false)
			return true
		}
		if err := c.s.endMeeting(c, id, c.p); err != nil {
			c.reply(id, err)
		} else {
			c.s.log.Info("control: meeting ended by host", "meeting", c.p.m.id, "host", c.p.id)
		}
		c.p = nil
		c.linger = true
		return false
	}
	c.fatal(id, proto.CodeUnexpected, fmt.Sprintf("%s not allowed after join", msg.Type()))
	return false
}

// reply answers a request with ok, or with the error (a *proto.Error, sent
// as is, or anything else as internal).
func (c *conn) reply(id uint32, err error) {
	var pe *proto.Error
	switch {
	case err == nil:
		c.sendMsg(id, &proto.OK{})
	case errors.As(err, &pe):
		c.sendMsg(id, pe)
	default:
		c.s.log.Error("control: request failed", "participant", c.p.id, "err", err)
		c.sendError(id, proto.CodeInternal, "request failed", false)
	}
}

// errGone answers requests of a participant removed meanwhile (meeting
// ended by the host while its request was in flight).
var errGone = &proto.Error{Code: proto.CodeUnexpected, Message: "no longer in the meeting"}

func (s *Server) publish(p *participant, k media.Kind, ssrcs []uint32) error {
	if !p.role.CanPublish() {
		return &proto.Error{Code: proto.CodeForbidden, Message: p.role.String() + "s cannot publish"}
	}
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone {
		return errGone
	}
	cur := &p.streams[k.Index()]
	var add []uint32
	for _, x := range ssrcs {
		if !slices.Contains(*cur, x) {
			add = append(add, x)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := s.rt.Publish(p.id, k, add...); err != nil {
		return routerError(err)
	}
	*cur = append(*cur, add...)
	m.broadcastLocked(s, &proto.StreamAdded{Participant: uint64(p.id), Kind: proto.Kind(k), SSRCs: add}, p)
	return nil
}

func (s *Server) unpublish(p *participant, k media.Kind, ssrcs []uint32) error {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone {
		return errGone
	}
	cur := &p.streams[k.Index()]
	var del []uint32
	for _, x := range *cur {
		if len(ssrcs) == 0 || slices.Contains(ssrcs, x) {
			del = append(del, x)
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := s.rt.Unpublish(p.id, k, del...); err != nil {
		return routerError(err)
	}
	*cur = slices.DeleteFunc(*cur, func(x uint32) bool { return slices.Contains(del, x) })
	if len(*cur) == 0 {
		*cur = nil
	}
	m.broadcastLocked(s, &proto.StreamRemoved{Participant: uint64(p.id), Kind: proto.Kind(k), SSRCs: del}, p)
	return nil
}

// subscribe sets p's filter for k: none, every publisher (empty list), or
// the listed ones, which must be in the meeting.
func (s *Server) subscribe(p *participant, k media.Kind, from []uint64, none bool) error {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone {
		return errGone
	}
	f := router.All()
	switch {
	case none:
		f = router.None()
	case len(from) > 0:
		ids := make([]router.ParticipantID, 0, len(from))
		for _, x := range from {
			if _, ok := m.parts[router.ParticipantID(x)]; !ok {
				return &proto.Error{Code: proto.CodeUnknownPublisher, Message: fmt.Sprintf("participant %d is not in the meeting", x)}
			}
			ids = append(ids, router.ParticipantID(x))
		}
		f = router.From(ids...)
	}
	if err := s.rt.Subscribe(p.id, k, f); err != nil {
		return routerError(err)
	}
	return nil
}

func (s *Server) leave(p *participant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !p.gone {
		s.removeLocked(p, proto.ReasonLeft)
	}
}

// routerError maps the router's errors to protocol errors.
func routerError(err error) error {
	switch {
	case errors.Is(err, router.ErrSSRCInUse):
		return &proto.Error{Code: proto.CodeSSRCInUse, Message: "SSRC already published in this meeting"}
	case errors.Is(err, router.ErrTooManySSRCs):
		return &proto.Error{Code: proto.CodeTooManySSRCs, Message: "too many SSRCs for this media kind"}
	case errors.Is(err, router.ErrNoParticipant):
		return errGone
	}
	return err
}

func toValidUTF8(s string) string { return strings.ToValidUTF8(s, "?") }
