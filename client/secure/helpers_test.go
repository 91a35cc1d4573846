package secure_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect/keys"
)

// member is one simulated participant: what a control server would tell
// it, and its State.
type member struct {
	id       uint64
	identity string
	role     string
	priv     *ecdh.PrivateKey
	ssrc     uint32
	st       *secure.State
	cancel   context.CancelFunc
	done     chan struct{}
}

func hexRand(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func (m *member) entry(e2ee bool) proto.RosterEntry {
	e := proto.RosterEntry{ID: m.id, Name: m.identity, Identity: m.identity, Role: m.role,
		Streams: []proto.Stream{{Kind: proto.Kind(media.Audio), SSRCs: []uint32{m.ssrc}}}}
	if e2ee {
		e.E2EEPublicKey = keys.PublicKeyHex(m.priv.PublicKey().Bytes())
	}
	return e
}

// hub plays the control server for a set of members in process: it builds
// their joined bodies, sends roster events, and relays e2ee-key requests
// as events (as the server does: From set, To cleared). It is only a
// stand-in for unit tests of the state machine; the end-to-end tests use
// the real server (client/connect).
type hub struct {
	t       testing.TB
	e2ee    bool
	key     *proto.MediaKey
	mu      sync.Mutex
	members map[uint64]*member
	nextID  uint64
	cfg     secure.Config
	// tamper, if set, may change an event before it reaches a member.
	tamper func(to *member, m proto.Message) proto.Message
}

func newHub(t testing.TB, e2ee bool, cfg secure.Config) *hub {
	h := &hub{t: t, e2ee: e2ee, members: map[uint64]*member{}, nextID: 100, cfg: cfg}
	if !e2ee {
		h.key = &proto.MediaKey{KeyID: 1, Key: hexRand(t, 32)}
	}
	return h
}

// sender relays one member's e2ee-key requests.
type sender struct {
	h    *hub
	from uint64
}

func (s sender) SendE2EEKey(_ context.Context, m *proto.E2EEKey) error {
	s.h.mu.Lock()
	to := s.h.members[m.To]
	s.h.mu.Unlock()
	if to == nil {
		return errors.New("no such participant")
	}
	s.h.deliver(to, &proto.E2EEKey{From: s.from, Wrap: m.Wrap})
	return nil
}

func (h *hub) deliver(to *member, m proto.Message) {
	if h.tamper != nil {
		m = h.tamper(to, m)
	}
	_ = to.st.Handle(m)
}

// join adds a member: the others get participant-joined, the joiner its
// joined with the roster of the others.
func (h *hub) join(identity, role string) *member {
	t := h.t
	h.mu.Lock()
	h.nextID++
	m := &member{id: h.nextID, identity: identity, role: role, ssrc: uint32(h.nextID) * 1000, done: make(chan struct{})}
	var err error
	m.priv, err = ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	j := &proto.Joined{Meeting: "m", Participant: m.id, Role: role, MediaToken: hexRand(t, 16), Resume: hexRand(t, 32),
		MediaProtection: proto.ProtectionStandard, RTCPSecret: hexRand(t, 32), MediaKey: h.key, Identity: identity}
	if h.e2ee {
		j.MediaProtection, j.MediaKey = proto.ProtectionE2EE, nil
	}
	var others []*member
	for _, o := range h.members {
		j.Roster = append(j.Roster, o.entry(h.e2ee))
		others = append(others, o)
	}
	h.members[m.id] = m
	h.mu.Unlock()
	cfg := h.cfg
	cfg.Private = m.priv
	m.st, err = secure.New(j, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		_ = m.st.Run(ctx, sender{h, m.id})
	}()
	t.Cleanup(m.stop)
	for _, o := range others {
		h.deliver(o, &proto.ParticipantJoined{Participant: m.entry(h.e2ee)})
	}
	return m
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

// leave removes a member; the others get participant-left.
func (h *hub) leave(m *member) {
	m.stop()
	h.mu.Lock()
	delete(h.members, m.id)
	var others []*member
	for _, o := range h.members {
		others = append(others, o)
	}
	h.mu.Unlock()
	for _, o := range others {
		h.deliver(o, &proto.ParticipantLeft{Participant: m.id, Reason: proto.ReasonLeft})
	}
}

// rtpPacket is an RTP packet (RFC 3550 §5.1) with a 16-byte marker
// payload followed by zeros up to size.
func rtpPacket(ssrc uint32, seq uint16, size int, marker []byte) []byte {
	p := make([]byte, size)
	p[0], p[1] = 0x80, 111
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*960)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	copy(p[12:], marker)
	return p
}

// rtcpRR is a receiver report (RFC 3550 §6.4.2) from ssrc, no report blocks.
func rtcpRR(ssrc uint32) []byte {
	p := []byte{0x80, 201, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(p[4:], ssrc)
	return p
}
