package control

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/protect/keys"
	"github.com/openmmr/mmr/router"
)

// Media protection on the control channel (docs/PROTOCOL.md, "Media
// protection (SRTP AEAD-GCM) and meeting keys"): the Standard-mode re-key
// after joins and leaves, the E2EE join checks, and the relay of E2EE key
// wraps. The server never makes, sees or holds an E2EE meeting key: it
// forwards wraps, which are encrypted to their recipients.

// Bounds on the e2ee-key requests one participant may send to one
// recipient (a token bucket per sender and recipient). An honest leader
// sends each member one wrap per re-key, and re-keys at most once per
// keys.DefaultCoalesce (250 ms) of membership changes, plus once every 5
// minutes: at most 4 per second per recipient. The burst of 8 leaves room
// for a leader handover (the new leader re-keys at once) on top of a
// change. The budget is per pair, so a leader of a full meeting (999 wraps
// per re-key at the default MaxParticipants) is never slowed by it, while
// no member can flood one recipient (fill its send queue, which
// disconnects it) or spend another sender's budget. e2ee-key requests are
// therefore not charged to RequestRate/RequestBurst (one re-key of a large
// meeting is several bursts' worth), except those refused, so that a
// client flooding bad wraps is cut off like any other flood.
const (
	wrapRate  = 4
	wrapBurst = 8
	// maxHeld bounds the wraps kept for a participant in its grace period
	// (sent after its resumed): the latest re-key's wrap is what it needs,
	// and during a leader handover two leaders may each send one.
	maxHeld = 4
)

// modeName names a join token's mode in error messages.
func modeName(e2ee bool) string {
	if e2ee {
		return proto.ProtectionE2EE
	}
	return proto.ProtectionStandard
}

// checkE2EEJoin applies the E2EE rules to a join whose token is verified:
// in an E2EE meeting viewers are refused (a viewer's roster lacks the other
// viewers, so its roster hash could never match the leader's, and the
// leader would have to wrap every key for every attendee) and a valid
// X25519 public key is required. It returns the key as 64 lowercase hex
// digits ("" in a Standard meeting, where the field is ignored).
func checkE2EEJoin(claims token.Claims, pub string) (string, error) {
	if !claims.E2EE {
		return "", nil
	}
	if claims.Role == token.Viewer {
		return "", &joinError{proto.CodeNoViewers, "E2EE meetings have no viewers: join as a participant"}
	}
	if pub == "" {
		return "", &joinError{proto.CodePublicKeyRequired, "an E2EE meeting requires e2ee_public_key in join"}
	}
	b, err := keys.ParsePublicKeyHex(pub)
	if err != nil {
		return "", &joinError{proto.CodePublicKeyRequired, "e2ee_public_key is not a valid X25519 public key"}
	}
	return keys.PublicKeyHex(b), nil
}

// membershipChangedLocked records a join or leave in a Standard meeting:
// its schedule makes the next key keys.DefaultCoalesce later (changes
// meanwhile are merged into that one re-key), on a goroutine that waits
// for the delay or the meeting's end. Holds m.mu.
func (s *Server) membershipChangedLocked(m *meeting) {
	if m.std == nil || m.ctx.Err() != nil {
		return
	}
	m.std.Changed(time.Now())
	if m.rekeying {
		return
	}
	m.rekeying = true
	fire, stop := s.cfg.rekeyTimer(time.Until(m.std.Deadline()))
	s.wg.Add(1) // the caller is a tracked goroutine, so Close has not returned
	go s.rekey(m, fire, stop)
}

// rekey waits for the re-key delay (fire) and then makes the meeting's next
// key and sends it to every connected participant in one media-key event
// (those in their grace period get it in resumed). It returns at once when
// the meeting ends or the server closes.
func (s *Server) rekey(m *meeting, fire <-chan time.Time, stop func() bool) {
	defer s.wg.Done()
	defer stop()
	select {
	case <-m.ctx.Done():
		return
	case <-fire:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rekeying = false
	if m.ctx.Err() != nil {
		return
	}
	// The delay has passed: the key is due at its deadline.
	k, ok, err := m.std.Due(m.std.Deadline())
	if err != nil {
		s.log.Error("control: new meeting key", "meeting", m.id, "err", err)
		return
	}
	if !ok {
		return
	}
	mk := keys.NewMediaKey(k)
	frame, err := proto.Encode(0, &proto.MediaKey{KeyID: mk.KeyID, Key: mk.Key})
	if err != nil {
		s.log.Error("control: encode media-key", "err", err)
		return
	}
	s.stats.mediaKeys.Add(1)
	for _, p := range m.parts {
		if p.conn != nil {
			p.conn.send(frame)
		}
	}
}

// wrapBudget is a participant's token buckets of e2ee-key requests, one per
// recipient (wrapRate, wrapBurst). Guarded by the meeting's mu.
type wrapBudget map[router.ParticipantID]*limiter

// take charges one wrap to recipient to at now; false: over the budget.
// Buckets of recipients that left are pruned once the map holds twice the
// meeting's size.
func (b *wrapBudget) take(m *meeting, to router.ParticipantID, now time.Time) bool {
	if *b == nil {
		*b = wrapBudget{}
	}
	l := (*b)[to]
	if l == nil {
		if len(*b) >= 2*len(m.parts)+16 {
			for id := range *b {
				if _, ok := m.parts[id]; !ok {
					delete(*b, id)
				}
			}
		}
		nl := newLimiter(wrapRate, wrapBurst, now)
		l = &nl
		(*b)[to] = l
	}
	return l.take(now) == allow
}

// relayWrap checks an e2ee-key request of p and relays it to its recipient
// as an e2ee-key event {from: p, wrap}, or keeps it for a recipient in its
// grace period. The wrap must decode (keys.E2EEKey.KeyWrap: size, version,
// key ID, and its to equal to the request's), name p as its from, and go
// to another participant of p's E2EE meeting. The error is a *proto.Error
// (not fatal) to answer with; the wrap's content is never logged.
func (s *Server) relayWrap(p *participant, req *proto.E2EEKey) error {
	err := s.relayWrapChecked(p, req)
	if err != nil {
		s.stats.wrapsRefused.Add(1)
	} else {
		s.stats.wrapsRelayed.Add(1)
	}
	return err
}

func (s *Server) relayWrapChecked(p *participant, req *proto.E2EEKey) error {
	if req.From != 0 {
		return &proto.Error{Code: proto.CodeBadKeyWrap, Message: `an e2ee-key request names its recipient in "to"; "from" is the server's`}
	}
	w, err := keys.E2EEKey{To: req.To, Wrap: req.Wrap}.KeyWrap()
	if err != nil {
		return &proto.Error{Code: proto.CodeBadKeyWrap, Message: "the wrap does not decode: " + err.Error()}
	}
	if w.From != uint64(p.id) {
		return &proto.Error{Code: proto.CodeBadKeyWrap, Message: fmt.Sprintf("the wrap is from participant %d, not from you (%d)", w.From, p.id)}
	}
	if w.To == w.From {
		return &proto.Error{Code: proto.CodeBadKeyWrap, Message: "a wrap to yourself"}
	}
	var raw [keys.WrapSize]byte
	if _, err := w.MarshalTo(raw[:]); err != nil {
		return &proto.Error{Code: proto.CodeBadKeyWrap, Message: err.Error()}
	}
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.gone {
		return errGone
	}
	if !m.e2ee {
		return &proto.Error{Code: proto.CodeWrongMode, Message: "e2ee-key in a standard meeting"}
	}
	to := m.parts[router.ParticipantID(w.To)]
	if to == nil {
		return &proto.Error{Code: proto.CodeUnknownRecipient, Message: fmt.Sprintf("participant %d is not in the meeting", w.To)}
	}
	if !p.wraps.take(m, to.id, time.Now()) {
		return &proto.Error{Code: proto.CodeRateLimited, Message: fmt.Sprintf("more than %d key wraps per second to participant %d: not relayed", wrapRate, w.To)}
	}
	frame, err := proto.Encode(0, &proto.E2EEKey{From: uint64(p.id), Wrap: hex.EncodeToString(raw[:])})
	if err != nil {
		return err
	}
	if to.conn != nil {
		to.conn.send(frame)
		return nil
	}
	if len(to.held) == maxHeld {
		to.held = append(to.held[:0], to.held[1:]...)
	}
	to.held = append(to.held, frame)
	return nil
}
