package secure

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

// sendRetry is how long Run waits before sending a key wrap again after a
// failed send (the control connection is down and resuming: the server's
// grace period is 10 s or more, so a try a second keeps up without
// flooding a connection that is not there).
const sendRetry = time.Second

// DefaultMaxKeys is how many meeting keys a State holds live at once
// (Config.Ring.MaxKeys 0). The protocol asks for at least 4; 8 is chosen
// because during a join storm the server (and an E2EE leader) makes a new
// key every 250 ms (keys.DefaultCoalesce) while senders switch to a key
// only 1 s after receiving it (keys.DefaultSwitchDelay): a sender's
// current key is then 4 keys behind the newest, and a receiver holding
// only 4 would have evicted it (measured: a 1,000-viewer webinar joining
// at 500/s rejected 23% of its first seconds of media as unknown_key with
// 4). 8 covers 2 s of such churn; the retire delay, not this cap, bounds
// how long a replaced key stays usable, so it weakens nothing. Each live
// key costs one AES-GCM context per known sender stream.
const DefaultMaxKeys = 8

// Errors of New and Resume.
var (
	// ErrUnprotected: the joined body names no media protection (a server
	// that predates it) or lacks the fields its mode needs.
	ErrUnprotected = errors.New("secure: the server does not protect media")
	// ErrDowngrade: the meeting was announced end-to-end encrypted (the
	// lookup's e2ee) but the joined or resumed body says another mode.
	ErrDowngrade = errors.New("secure: meeting announced end-to-end encrypted, but the server's joined says it is not")
	// ErrMode: an unknown media_protection value, or a resume that changed
	// the mode or the participant.
	ErrMode = errors.New("secure: unexpected media protection mode")
	// ErrNotMedia is returned by Flow for a packet that is neither RTP nor
	// RTCP (binds and keepalives are not protected).
	ErrNotMedia = errors.New("secure: not an RTP or RTCP packet")
)

// Config configures New. Zero fields take the defaults.
type Config struct {
	// RequireE2EE refuses (ErrDowngrade) a joined or resumed body that does
	// not say "e2ee": set it when the lookup said the meeting is E2EE.
	RequireE2EE bool
	// Private is the X25519 key pair of this join, whose public key the
	// join request announced (e2ee_public_key). Required in E2EE mode.
	Private *ecdh.PrivateKey
	// Ring tunes the key ring (switch and retire delays, live keys:
	// MaxKeys 0 means DefaultMaxKeys); the Opener holds as many keys.
	Ring keys.RingConfig
	// RekeyInterval and Coalesce tune the E2EE leader (keys.GroupConfig).
	RekeyInterval, Coalesce time.Duration
	// Rand is the source of meeting keys and wrap nonces. nil: crypto/rand.
	Rand io.Reader
	// ReplayWindow is the SRTP and SRTCP replay window (0: the default).
	ReplayWindow int
	// OnChange is told, from the Run goroutine, when the send key, the
	// E2EE roster or the leader changed (to show the security code).
	OnChange func(Info)
	// Logger logs key changes (IDs only, never secrets). Default: none.
	Logger *slog.Logger
	// KeyLog, if set, receives one line "MEETINGKEY <id> <64 hex digits>"
	// for every meeting key the State holds (received or made), in the
	// spirit of TLS's key log (crypto/tls Config.KeyLogWriter): for
	// debugging and for tests that must prove what a participant could
	// decrypt. It discloses every key: never set it in production.
	KeyLog io.Writer
}

// Info is what a participant can show of its media protection. Plain value.
type Info struct {
	Mode    string        // proto.ProtectionStandard or proto.ProtectionE2EE
	SendKey protect.KeyID // the key this client seals with (0: none yet)
	// E2EE only: the roster's security code for SendKey ("" before a send
	// key), the leader and the number of members (this client included).
	Code    string
	Leader  uint64
	Members int
}

// Stats counts what the State did. Plain snapshot.
type Stats struct {
	// RTP: packets opened and rejected by reason (Opener), Sealed and
	// SealErrors (Sealer; SealErrors counts ErrNoKey before the first key).
	RTP protect.Stats
	// RTCP: all kinds' flows summed, those replaced by a resume included.
	RTCP protect.Stats
	// Keys installed into the ring (media_key, media-key, wraps accepted,
	// the leader's own).
	KeysInstalled uint64
	// Key messages refused: a media-key or e2ee-key event that did not
	// parse or was not accepted (not for this client, not from the
	// leader, another roster, an old key ID, a failed decryption).
	KeysRejected uint64
	// WrapsSent and WrapSendErrors count the leader's e2ee-key requests.
	WrapsSent, WrapSendErrors uint64
}

// Sender sends one e2ee-key request on the control channel and waits for
// its ok (client/control.Client.SendE2EEKey).
type Sender interface {
	SendE2EEKey(ctx context.Context, m *proto.E2EEKey) error
}

// State is one participant's media protection; see the package doc.
type State struct {
	cfg    Config
	log    *slog.Logger
	mode   string
	self   uint64
	sealer *protect.Sealer
	opener *protect.Opener
	rtcp   atomic.Pointer[rtcpFlows]
	wake   chan struct{} // buffered 1: Run has something to look at

	installed, rejected, sent, sendErrs atomic.Uint64

	mu       sync.Mutex
	identity string
	host     bool
	ring     *keys.Ring  // Standard mode
	group    *keys.Group // E2EE mode
	peers    map[uint64]*peer
	owner    map[uint32]uint64         // registered SSRC -> participant
	out      map[uint64]*proto.E2EEKey // wraps to send, the newest per recipient
	retryAt  time.Time                 // no send before (a send failed)
	rtcpBase protect.Stats             // counters of the replaced RTCP flows
	running  bool
}

// peer is another participant as the roster and events show it.
type peer struct {
	identity string
	host     bool
	pub      []byte // usable X25519 public key, nil if none or refused
	ssrcs    map[uint32]struct{}
}

type rtcpFlows [media.NumKinds]*protect.RTCPFlow

// New builds the State of a participant from its joined body (a resumed
// body's Joined works too). The mode must be Standard with a media_key, or
// E2EE with cfg.Private; the rtcp_secret is required in both.
func New(j *proto.Joined, cfg Config) (*State, error) {
	if j == nil {
		return nil, errors.New("secure: no joined body")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ring.MaxKeys < 2 {
		cfg.Ring.MaxKeys = DefaultMaxKeys
	}
	s := &State{cfg: cfg, log: cfg.Logger, self: j.Participant, wake: make(chan struct{}, 1),
		peers: map[uint64]*peer{}, owner: map[uint32]uint64{}, out: map[uint64]*proto.E2EEKey{}}
	if err := s.checkMode(j); err != nil {
		return nil, err
	}
	s.mode = j.MediaProtection
	maxKeys := cfg.Ring.MaxKeys
	var err error
	if s.opener, err = protect.NewOpener(protect.OpenerConfig{ReplayWindow: cfg.ReplayWindow, MaxKeys: maxKeys}); err != nil {
		return nil, err
	}
	s.sealer = protect.NewSealer(j.Participant, 0)
	if s.mode == proto.ProtectionE2EE {
		if cfg.Private == nil {
			return nil, fmt.Errorf("%w: E2EE meeting but no X25519 key pair for this join", ErrUnprotected)
		}
		s.group, err = keys.NewGroup(keys.GroupConfig{Self: j.Participant, Private: cfg.Private, Rand: cfg.Rand,
			RekeyInterval: cfg.RekeyInterval, Coalesce: cfg.Coalesce, Ring: cfg.Ring})
		if err != nil {
			return nil, err
		}
	} else {
		s.ring = keys.NewRing(cfg.Ring)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(j, time.Now()); err != nil {
		return nil, err
	}
	return s, nil
}

// checkMode checks the mode and the fields it needs.
func (s *State) checkMode(j *proto.Joined) error {
	switch j.MediaProtection {
	case proto.ProtectionE2EE:
	case proto.ProtectionStandard:
		if s.cfg.RequireE2EE {
			return ErrDowngrade
		}
		if j.MediaKey == nil {
			return fmt.Errorf("%w: standard mode without media_key", ErrUnprotected)
		}
	case "":
		if s.cfg.RequireE2EE {
			return ErrDowngrade
		}
		return fmt.Errorf("%w: no media_protection in joined", ErrUnprotected)
	default:
		if s.cfg.RequireE2EE {
			return ErrDowngrade
		}
		return fmt.Errorf("%w: %.32q", ErrMode, j.MediaProtection)
	}
	if j.RTCPSecret == "" {
		return fmt.Errorf("%w: no rtcp_secret in joined", ErrUnprotected)
	}
	return nil
}

// load applies a joined or resumed body: RTCP flows from its secret, the
// Standard key, the roster. Called with mu held.
func (s *State) load(j *proto.Joined, now time.Time) error {
	secret, err := hex.DecodeString(j.RTCPSecret)
	if err != nil || len(secret) != protect.SecretSize {
		return fmt.Errorf("%w: bad rtcp_secret", ErrUnprotected)
	}
	var flows rtcpFlows
	for i, k := range media.Kinds {
		if flows[i], err = protect.NewRTCPFlow(secret, j.Participant, k, protect.ClientSide, s.cfg.ReplayWindow); err != nil {
			return err
		}
	}
	clear(secret)
	if old := s.rtcp.Swap(&flows); old != nil {
		for _, f := range old {
			s.rtcpBase = addStats(s.rtcpBase, f.Stats())
		}
	}
	s.identity, s.host = j.Identity, j.Role == proto.RoleHost
	if s.ring != nil {
		k, err := keys.MediaKey{KeyID: j.MediaKey.KeyID, Key: j.MediaKey.Key}.MeetingKey()
		if err != nil {
			return fmt.Errorf("%w: bad media_key", ErrUnprotected)
		}
		if err := s.install(k, now); err != nil {
			return err
		}
	}
	// The roster replaces what was known: participants missing from it
	// left while the connection was down.
	seen := map[uint64]bool{}
	for i := range j.Roster {
		e := &j.Roster[i]
		seen[e.ID] = true
		s.addPeer(e)
	}
	for id := range s.peers {
		if !seen[id] {
			s.removePeer(id)
		}
	}
	return s.setRoster(now)
}

// Resume applies the body of a resumed reply: a fresh RTCP secret (new
// SRTCP contexts for every kind), the current Standard key and the roster
// as of now. The mode and participant must not change.
func (s *State) Resume(j *proto.Joined) error {
	if j == nil || j.Participant != s.self {
		return fmt.Errorf("%w: resumed as another participant", ErrMode)
	}
	if err := s.checkMode(j); err != nil {
		return err
	}
	if j.MediaProtection != s.mode {
		return fmt.Errorf("%w: resumed in mode %q, joined in %q", ErrMode, j.MediaProtection, s.mode)
	}
	s.mu.Lock()
	err := s.load(j, time.Now())
	s.mu.Unlock()
	s.poke()
	return err
}

// Handle feeds one control-channel event: media-key (Standard),
// e2ee-key (E2EE), participant-joined, participant-left, stream-added,
// stream-removed; other messages are ignored. An error says the event was
// refused (a bad or unacceptable key message, counted in
// Stats.KeysRejected); the State stays usable.
func (s *State) Handle(m proto.Message) error {
	now := time.Now()
	s.mu.Lock()
	err := s.handle(m, now)
	s.mu.Unlock()
	s.poke()
	return err
}

func (s *State) handle(m proto.Message, now time.Time) error {
	switch m := m.(type) {
	case *proto.MediaKey:
		if s.ring == nil {
			s.rejected.Add(1)
			return errors.New("secure: media-key in an E2EE meeting (refused: the server must not know E2EE keys)")
		}
		k, err := keys.MediaKey{KeyID: m.KeyID, Key: m.Key}.MeetingKey()
		if err == nil {
			err = s.install(k, now)
		}
		if err != nil {
			s.rejected.Add(1)
			return fmt.Errorf("secure: media-key %d: %w", m.KeyID, err)
		}
		return nil
	case *proto.E2EEKey:
		if s.group == nil {
			s.rejected.Add(1)
			return errors.New("secure: e2ee-key in a Standard meeting")
		}
		return s.receiveWrap(m, now)
	case *proto.ParticipantJoined:
		s.addPeer(&m.Participant)
		return s.setRoster(now)
	case *proto.ParticipantLeft:
		s.removePeer(m.Participant)
		return s.setRoster(now)
	case *proto.StreamAdded:
		if m.Participant == s.self {
			return nil
		}
		p := s.peer(m.Participant)
		for _, ssrc := range m.SSRCs {
			s.addSender(m.Participant, p, ssrc)
		}
	case *proto.StreamRemoved:
		p := s.peers[m.Participant]
		for _, ssrc := range m.SSRCs {
			if s.owner[ssrc] == m.Participant {
				delete(s.owner, ssrc)
				s.opener.RemoveSender(ssrc)
			}
			if p != nil {
				delete(p.ssrcs, ssrc)
			}
		}
	}
	return nil
}

func (s *State) receiveWrap(m *proto.E2EEKey, now time.Time) error {
	w, err := keys.E2EEKey{From: m.From, To: m.To, Wrap: m.Wrap}.KeyWrap()
	if err != nil {
		s.rejected.Add(1)
		return fmt.Errorf("secure: e2ee-key from %d: %w", m.From, err)
	}
	acts, err := s.group.Receive(w, now)
	if err != nil {
		s.rejected.Add(1)
		return fmt.Errorf("secure: e2ee-key from %d, key %d: %w", m.From, w.KeyID, err)
	}
	s.installed.Add(1)
	s.log.Debug("secure: meeting key received", "key", w.KeyID, "from", m.From)
	return s.apply(acts)
}

// install puts a Standard key into the ring. Called with mu held.
func (s *State) install(k protect.MeetingKey, now time.Time) error {
	acts, err := s.ring.Install(k, now)
	if err != nil || len(acts) == 0 {
		return err // a conflict, or the key again (a resumed body repeats it)
	}
	s.installed.Add(1)
	s.log.Debug("secure: meeting key received", "key", k.ID)
	return s.apply(acts)
}

func (s *State) apply(acts []keys.Action) error {
	if s.cfg.KeyLog != nil {
		for _, a := range acts {
			if a.Kind == keys.AddKey {
				fmt.Fprintf(s.cfg.KeyLog, "MEETINGKEY %d %x\n", a.Key.ID, a.Key.Secret)
			}
		}
	}
	return keys.Apply(acts, s.sealer, s.opener)
}

func (s *State) peer(id uint64) *peer {
	p := s.peers[id]
	if p == nil {
		p = &peer{ssrcs: map[uint32]struct{}{}}
		s.peers[id] = p
	}
	return p
}

// addPeer records a roster entry: identity, host flag, public key (kept
// only if usable for ECDH) and streams.
func (s *State) addPeer(e *proto.RosterEntry) {
	if e.ID == s.self || e.ID == 0 {
		return
	}
	p := s.peer(e.ID)
	p.identity, p.host, p.pub = e.Identity, e.Role == proto.RoleHost, nil
	if s.group != nil && e.E2EEPublicKey != "" {
		p.pub = s.usableKey(e.ID, e.E2EEPublicKey)
	}
	streams := map[uint32]struct{}{}
	for _, st := range e.Streams {
		for _, ssrc := range st.SSRCs {
			streams[ssrc] = struct{}{}
			s.addSender(e.ID, p, ssrc)
		}
	}
	for ssrc := range p.ssrcs {
		if _, ok := streams[ssrc]; !ok {
			s.dropSender(e.ID, p, ssrc)
		}
	}
}

// usableKey returns the decoded public key, or nil if it is malformed or
// a low-order point (its shared secret with any key is all zero, RFC 7748
// §6.1). Every client refuses the same keys, so every roster leaves the
// same members out and the hashes still agree.
func (s *State) usableKey(id uint64, h string) []byte {
	b, err := keys.ParsePublicKeyHex(h)
	if err == nil {
		var pub *ecdh.PublicKey
		if pub, err = keys.ParsePublicKey(b); err == nil {
			_, err = s.cfg.Private.ECDH(pub)
		}
	}
	if err != nil {
		s.log.Warn("secure: participant's E2EE public key refused; it gets no meeting key", "participant", id, "err", err)
		return nil
	}
	return b
}

func (s *State) addSender(id uint64, p *peer, ssrc uint32) {
	if ssrc == 0 {
		return
	}
	if prev, ok := s.owner[ssrc]; ok && prev != id {
		if pp := s.peers[prev]; pp != nil {
			delete(pp.ssrcs, ssrc)
		}
	}
	if err := s.opener.AddSender(protect.Sender{Participant: id, SSRC: ssrc}); err != nil {
		s.log.Warn("secure: stream not registered", "participant", id, "ssrc", ssrc, "err", err)
		return
	}
	s.owner[ssrc] = id
	p.ssrcs[ssrc] = struct{}{}
}

func (s *State) dropSender(id uint64, p *peer, ssrc uint32) {
	delete(p.ssrcs, ssrc)
	if s.owner[ssrc] == id {
		delete(s.owner, ssrc)
		s.opener.RemoveSender(ssrc)
	}
}

func (s *State) removePeer(id uint64) {
	p := s.peers[id]
	if p == nil {
		return
	}
	for ssrc := range p.ssrcs {
		s.dropSender(id, p, ssrc)
	}
	delete(s.peers, id)
	delete(s.out, id)
}

// setRoster gives the E2EE group the members with a usable public key,
// this client included. Called with mu held; no-op in Standard mode.
func (s *State) setRoster(now time.Time) error {
	if s.group == nil {
		return nil
	}
	ms := []keys.Member{{Participant: s.self, Identity: s.identity, Host: s.host, PublicKey: s.cfg.Private.PublicKey().Bytes()}}
	for id, p := range s.peers {
		if p.pub != nil {
			ms = append(ms, keys.Member{Participant: id, Identity: p.identity, Host: p.host, PublicKey: p.pub})
		}
	}
	return s.group.SetRoster(ms, now)
}

// advance does what is due at now and queues the leader's wraps. Called
// with mu held.
func (s *State) advance(now time.Time) error {
	if s.ring != nil {
		return s.apply(s.ring.Advance(now))
	}
	before, _ := s.group.Ring().Newest()
	out, acts, err := s.group.Advance(now)
	if err != nil {
		return err
	}
	if k, ok := s.group.Ring().Newest(); ok && k.ID != before.ID {
		s.installed.Add(1)
		s.log.Debug("secure: new meeting key made (leader)", "key", k.ID, "members", len(out)+1)
	}
	for _, o := range out {
		m := keys.NewE2EEKey(o.Wrap)
		s.out[o.To] = &proto.E2EEKey{To: m.To, Wrap: m.Wrap}
	}
	return s.apply(acts)
}

func (s *State) deadline() time.Time {
	var d time.Time
	if s.ring != nil {
		d = s.ring.Deadline()
	} else {
		d = s.group.Deadline()
	}
	if len(s.out) > 0 && (d.IsZero() || s.retryAt.Before(d)) {
		d = s.retryAt // the zero time when nothing failed: at once
	}
	return d
}

func (s *State) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run drives the State's timers and sends the E2EE leader's key wraps
// through send until ctx ends (it returns ctx's error). Call it once, on
// its own goroutine, for the life of the State. A wrap whose send fails is
// sent again (every sendRetry) until it is sent or superseded by a newer
// wrap for the same participant.
func (s *State) Run(ctx context.Context, send Sender) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("secure: Run called twice")
	}
	s.running = true
	s.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last Info
	for {
		now := time.Now()
		s.mu.Lock()
		if err := s.advance(now); err != nil {
			s.log.Warn("secure: key schedule", "err", err)
		}
		var batch []*proto.E2EEKey
		if !now.Before(s.retryAt) {
			for _, m := range s.out {
				batch = append(batch, m)
			}
		}
		info := s.info()
		s.mu.Unlock()
		if info != last {
			last = info
			s.log.Info("secure: media protection", "mode", info.Mode, "send_key", info.SendKey, "code", info.Code, "leader", info.Leader, "members", info.Members)
			if s.cfg.OnChange != nil {
				s.cfg.OnChange(info)
			}
		}
		for _, m := range batch {
			err := send.SendE2EEKey(ctx, m)
			s.mu.Lock()
			if err == nil {
				s.sent.Add(1)
				if s.out[m.To] == m {
					delete(s.out, m.To)
				}
			} else {
				s.sendErrs.Add(1)
				s.retryAt = time.Now().Add(sendRetry)
			}
			s.mu.Unlock()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.log.Info("secure: sending a key wrap failed; retrying", "to", m.To, "err", err)
				break
			}
		}
		s.mu.Lock()
		d := s.deadline()
		s.mu.Unlock()
		wait := time.Hour // nothing pending: only events wake Run
		if !d.IsZero() {
			wait = max(time.Until(d), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// info is Info now. Called with mu held.
func (s *State) info() Info {
	i := Info{Mode: s.mode}
	if s.ring != nil {
		i.SendKey = s.ring.SendKey()
		return i
	}
	i.SendKey = s.group.Ring().SendKey()
	if r := s.group.Roster(); r != nil {
		i.Leader, i.Members = r.Leader(), len(r.Members())
		if i.SendKey != 0 {
			i.Code = s.group.SecurityCode()
		}
	}
	return i
}

// Info returns the current mode, send key and (E2EE) security code.
func (s *State) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info()
}

// Mode returns proto.ProtectionStandard or proto.ProtectionE2EE.
func (s *State) Mode() string { return s.mode }

// Participant returns this client's participant ID.
func (s *State) Participant() uint64 { return s.self }

// PublicKey returns this join's X25519 public key (nil in Standard mode).
func (s *State) PublicKey() []byte {
	if s.group == nil {
		return nil
	}
	return s.group.PublicKey()
}

// LiveKeys returns the IDs of the keys packets open under now.
func (s *State) LiveKeys() []protect.KeyID { return s.opener.Keys() }

// Stats returns the State's counters.
func (s *State) Stats() Stats {
	rtp := s.opener.Stats()
	ss := s.sealer.Stats()
	rtp.Sealed, rtp.SealErrors = ss.Sealed, ss.SealErrors
	s.mu.Lock()
	rtcp := s.rtcpBase
	s.mu.Unlock()
	for _, f := range s.rtcp.Load() {
		rtcp = addStats(rtcp, f.Stats())
	}
	return Stats{RTP: rtp, RTCP: rtcp, KeysInstalled: s.installed.Load(), KeysRejected: s.rejected.Load(),
		WrapsSent: s.sent.Load(), WrapSendErrors: s.sendErrs.Load()}
}

func addStats(a, b protect.Stats) protect.Stats {
	return protect.Stats{Opened: a.Opened + b.Opened, Malformed: a.Malformed + b.Malformed,
		UnknownSender: a.UnknownSender + b.UnknownSender, UnknownKey: a.UnknownKey + b.UnknownKey,
		Auth: a.Auth + b.Auth, Replayed: a.Replayed + b.Replayed, TooOld: a.TooOld + b.TooOld,
		Sealed: a.Sealed + b.Sealed, SealErrors: a.SealErrors + b.SealErrors}
}

// SealRTP protects one of this participant's RTP packets (protect.Sealer:
// ErrNoKey until the first meeting key). See the package doc for buffers.
func (s *State) SealRTP(dst, pkt []byte) ([]byte, error) { return s.sealer.Seal(dst, pkt) }

// OpenRTP checks and decrypts another participant's SRTP packet
// (protect.Opener: every rejection is one of its sentinel errors, counted
// in Stats().RTP).
func (s *State) OpenRTP(dst, pkt []byte) ([]byte, error) { return s.opener.Open(dst, pkt) }

// SealRTCP protects an RTCP packet for kind k's flow to the router
// (direction 1).
func (s *State) SealRTCP(k media.Kind, dst, pkt []byte) ([]byte, error) {
	if !k.Valid() {
		return nil, protect.ErrKind
	}
	return s.rtcp.Load()[k.Index()].Seal(dst, pkt)
}

// OpenRTCP checks and decrypts an SRTCP packet the router sent on kind k's
// flow (direction 2).
func (s *State) OpenRTCP(k media.Kind, dst, pkt []byte) ([]byte, error) {
	if !k.Valid() {
		return nil, protect.ErrKind
	}
	return s.rtcp.Load()[k.Index()].Open(dst, pkt)
}

// ParseKeyLog reads the lines Config.KeyLog wrote and returns the keys in
// order (a key logged twice is returned once). Lines that are not
// MEETINGKEY lines are an error.
func ParseKeyLog(r io.Reader) ([]protect.MeetingKey, error) {
	sc := bufio.NewScanner(r)
	var out []protect.MeetingKey
	seen := map[protect.KeyID]bool{}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "MEETINGKEY" {
			return nil, fmt.Errorf("secure: key log line %.40q", line)
		}
		id, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("secure: key log ID %.16q", f[1])
		}
		k, err := keys.MediaKey{KeyID: uint32(id), Key: f[2]}.MeetingKey()
		if err != nil {
			return nil, fmt.Errorf("secure: key log key %d: %w", id, err)
		}
		if !seen[k.ID] {
			seen[k.ID] = true
			out = append(out, k)
		}
	}
	return out, sc.Err()
}

// Opens reports whether any key of ks opens the SRTP packet pkt of sender
// s, each key tried both ways it could be used: as held (the packet's
// MKI, which SRTP does not authenticate, rewritten to the key's ID) and as
// if the same secret had been given the packet's key ID. With the keys of
// a KeyLog it answers "could this participant read this packet?": for
// audits and for tests of who can decrypt what. Allocates; not for the
// packet path.
func Opens(ks []protect.MeetingKey, s protect.Sender, pkt []byte) bool {
	if len(pkt) < 12+protect.Overhead {
		return false
	}
	mki := protect.KeyID(binary.BigEndian.Uint32(pkt[len(pkt)-protect.MKISize:]))
	for _, k := range ks {
		asHeld := slices.Clone(pkt)
		binary.BigEndian.PutUint32(asHeld[len(pkt)-protect.MKISize:], uint32(k.ID))
		relabelled := k
		relabelled.ID = mki
		for _, try := range []struct {
			k   protect.MeetingKey
			pkt []byte
		}{{k, asHeld}, {relabelled, pkt}} {
			o, err := protect.NewOpener(protect.OpenerConfig{})
			if err != nil || o.AddKey(try.k) != nil || o.AddSender(s) != nil {
				continue
			}
			if _, err := o.Open(nil, try.pkt); err == nil {
				return true
			}
		}
	}
	return false
}
