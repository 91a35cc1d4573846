package keys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/protect"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// client is one simulated participant: its Group, Sealer, Opener, and
// every key it ever held.
type client struct {
	id   uint64
	host bool
	g    *Group
	s    *protect.Sealer
	o    *protect.Opener
	held map[protect.KeyID]protect.MeetingKey
	seq  uint16
}

func (c *client) ssrc() uint32 { return uint32(c.id) * 1000 }

// meeting simulates the control server relaying rosters and wraps
// instantly, with a fake clock.
type meeting struct {
	t       *testing.T
	now     time.Time
	clients map[uint64]*client
	nextID  uint64
	sent    [][]byte // every e2ee-key request body a client sent to the server
}

func newMeeting(t *testing.T) *meeting {
	return &meeting{t: t, now: time.Unix(1_700_000_000, 0), clients: map[uint64]*client{}, nextID: 10}
}

func (m *meeting) join(host bool) *client {
	m.nextID++
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(m.t, err)
	g, err := NewGroup(GroupConfig{Self: m.nextID, Private: priv})
	require.NoError(m.t, err)
	o, err := protect.NewOpener(protect.OpenerConfig{})
	require.NoError(m.t, err)
	c := &client{id: m.nextID, host: host, g: g, s: protect.NewSealer(m.nextID, 0), o: o, held: map[protect.KeyID]protect.MeetingKey{}}
	m.clients[c.id] = c
	m.pushRoster()
	return c
}

func (m *meeting) leave(c *client) {
	delete(m.clients, c.id)
	m.pushRoster()
}

func (m *meeting) members() []Member {
	var ms []Member
	for _, c := range m.clients {
		ms = append(ms, Member{Participant: c.id, Identity: "user" + string(rune('a'+c.id%26)), Host: c.host, PublicKey: c.g.PublicKey()})
	}
	return ms
}

func (m *meeting) pushRoster() {
	ms := m.members()
	for _, c := range m.clients {
		require.NoError(m.t, c.g.SetRoster(ms, m.now))
		for _, o := range m.clients {
			if o != c {
				require.NoError(m.t, c.o.AddSender(protect.Sender{Participant: o.id, SSRC: o.ssrc()}))
			}
		}
	}
}

func (m *meeting) apply(c *client, acts []Action) {
	for _, a := range acts {
		if a.Kind == AddKey {
			c.held[a.Key.ID] = a.Key
		}
	}
	require.NoError(m.t, Apply(acts, c.s, c.o))
}

// run advances the clock by d in 50 ms steps, delivering every wrap at
// once.
func (m *meeting) run(d time.Duration) {
	for end := m.now.Add(d); !m.now.After(end); m.now = m.now.Add(50 * time.Millisecond) {
		for _, id := range m.ids() {
			c := m.clients[id]
			out, acts, err := c.g.Advance(m.now)
			require.NoError(m.t, err)
			m.apply(c, acts)
			for _, o := range out {
				r := m.clients[o.To]
				require.NotNil(m.t, r)
				// Through the JSON form, as the control channel carries it.
				body, err := json.Marshal(NewE2EEKey(o.Wrap))
				require.NoError(m.t, err)
				m.sent = append(m.sent, body)
				var msg E2EEKey
				require.NoError(m.t, json.Unmarshal(body, &msg))
				msg.From, msg.To = c.id, 0 // the server relays it as an event
				w, err := msg.KeyWrap()
				require.NoError(m.t, err)
				acts, err := r.g.Receive(w, m.now)
				require.NoError(m.t, err)
				m.apply(r, acts)
			}
		}
	}
}

func (m *meeting) ids() []uint64 {
	var ids []uint64
	for id := range m.clients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c *client) sealPacket(t *testing.T) []byte {
	c.seq++
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: c.seq, SSRC: c.ssrc()}, Payload: []byte("secret media payload")}
	b, err := p.Marshal()
	require.NoError(t, err)
	out, err := c.s.Seal(nil, b)
	require.NoError(t, err)
	return out
}

// requireAllConnected checks that every client opens every other's next
// packet and that all send under the same key.
func (m *meeting) requireAllConnected() protect.KeyID {
	var id protect.KeyID
	for _, a := range m.clients {
		if id == 0 {
			id = a.g.Ring().SendKey()
		}
		require.Equal(m.t, id, a.g.Ring().SendKey(), "client %d", a.id)
		for _, b := range m.clients {
			if a != b {
				_, err := b.o.Open(nil, a.sealPacket(m.t))
				require.NoError(m.t, err, "%d -> %d", a.id, b.id)
			}
		}
	}
	require.NotZero(m.t, id)
	return id
}

// requireUnreadable checks that pkt opens under none of keys: neither
// under their own IDs nor with each secret tried under pkt's key ID.
func requireUnreadable(t *testing.T, sender *client, pkt []byte, keys map[protect.KeyID]protect.MeetingKey) {
	require.NotEmpty(t, keys)
	mki := protect.KeyID(binary.BigEndian.Uint32(pkt[len(pkt)-4:]))
	snd := protect.Sender{Participant: sender.id, SSRC: sender.ssrc()}
	all, err := protect.NewOpener(protect.OpenerConfig{MaxKeys: 64})
	require.NoError(t, err)
	require.NoError(t, all.AddSender(snd))
	for _, k := range keys {
		require.NoError(t, all.AddKey(k))
		relabel, err := protect.NewOpener(protect.OpenerConfig{})
		require.NoError(t, err)
		require.NoError(t, relabel.AddSender(snd))
		require.NoError(t, relabel.AddKey(protect.MeetingKey{ID: mki, Secret: k.Secret}))
		_, err = relabel.Open(nil, pkt)
		require.ErrorIs(t, err, protect.ErrAuth, "secret of key %d", k.ID)
	}
	_, err = all.Open(nil, pkt)
	require.ErrorIs(t, err, protect.ErrUnknownKey)
}

func TestE2EELeaverAndJoiner(t *testing.T) {
	leaktest.Check(t)
	m := newMeeting(t)
	a := m.join(true)
	b := m.join(false)
	c := m.join(false)
	m.run(5 * time.Second)
	k0 := m.requireAllConnected()
	require.True(t, a.g.IsLeader())

	// C leaves; media sealed afterwards is unreadable with all C held.
	m.leave(c)
	m.run(5 * time.Second)
	k1 := m.requireAllConnected()
	require.Greater(t, k1, k0)
	require.Contains(t, c.held, k0)
	for _, s := range []*client{a, b} {
		requireUnreadable(t, s, s.sealPacket(t), c.held)
	}

	// Media sealed before D joins is unreadable with all D ever gets.
	before := []([]byte){a.sealPacket(t), b.sealPacket(t)}
	d := m.join(false)
	m.run(5 * time.Second)
	k2 := m.requireAllConnected()
	require.Greater(t, k2, k1)
	require.NotContains(t, d.held, k1)
	requireUnreadable(t, a, before[0], d.held)
	requireUnreadable(t, b, before[1], d.held)

	// The host (leader) leaves: B, present longest, takes over and re-keys.
	m.leave(a)
	m.run(5 * time.Second)
	require.True(t, b.g.IsLeader())
	k3 := m.requireAllConnected()
	require.Equal(t, k2+1, k3, "the new leader continues the key IDs")
	requireUnreadable(t, b, b.sealPacket(t), a.held)

	// Periodic re-key.
	m.run(DefaultRekeyInterval)
	require.Greater(t, m.requireAllConnected(), k3)

	// The server never received a key: no request body holds any secret
	// any client ever held, raw or in hex.
	require.NotEmpty(t, m.sent)
	for _, c := range []*client{a, b, c, d} {
		for _, k := range c.held {
			for _, body := range m.sent {
				require.False(t, bytes.Contains(body, k.Secret[:]))
				require.False(t, bytes.Contains(bytes.ToLower(body), []byte(hex.EncodeToString(k.Secret[:]))))
			}
		}
	}
}

func TestSecurityCode(t *testing.T) {
	leaktest.Check(t)
	m := newMeeting(t)
	a, b, c := m.join(true), m.join(false), m.join(false)
	m.run(3 * time.Second)
	code := a.g.SecurityCode()
	require.Regexp(t, `^\d{5}( \d{5}){5}$`, code)
	require.Equal(t, code, b.g.SecurityCode())
	require.Equal(t, code, c.g.SecurityCode())

	// The server shows B a roster where C's public key is the attacker's.
	evil, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	ms := m.members()
	for i := range ms {
		if ms[i].Participant == c.id {
			ms[i].PublicKey = evil.PublicKey().Bytes()
		}
	}
	r, err := NewRoster(ms)
	require.NoError(t, err)
	require.NotEqual(t, code, r.SecurityCode(b.g.Ring().SendKey()))
	// Member order does not matter; the key ID does.
	slices.Reverse(ms)
	r2, err := NewRoster(m.members())
	require.NoError(t, err)
	require.Equal(t, code, r2.SecurityCode(a.g.Ring().SendKey()))
	require.NotEqual(t, code, r2.SecurityCode(a.g.Ring().SendKey()+1))
}

func TestLeaderRule(t *testing.T) {
	leaktest.Check(t)
	pub := func() []byte {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		require.NoError(t, err)
		return k.PublicKey().Bytes()
	}
	for _, c := range []struct {
		name    string
		members []Member
		leader  uint64
	}{
		{"empty", nil, 0},
		{"host wins", []Member{{Participant: 5, PublicKey: pub()}, {Participant: 9, Host: true, PublicKey: pub()}}, 9},
		{"first host", []Member{{Participant: 12, Host: true, PublicKey: pub()}, {Participant: 9, Host: true, PublicKey: pub()}}, 9},
		{"longest present", []Member{{Participant: 12, PublicKey: pub()}, {Participant: 7, PublicKey: pub()}, {Participant: 30, PublicKey: pub()}}, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewRoster(c.members)
			require.NoError(t, err)
			require.Equal(t, c.leader, r.Leader())
		})
	}
	_, err := NewRoster([]Member{{Participant: 1, PublicKey: pub()}, {Participant: 1, PublicKey: pub()}})
	require.ErrorIs(t, err, ErrRoster)
	_, err = NewRoster([]Member{{Participant: 1, PublicKey: []byte{1}}})
	require.ErrorIs(t, err, ErrPublicKey)
}

func TestReceiveRejections(t *testing.T) {
	leaktest.Check(t)
	m := newMeeting(t)
	a, b, c := m.join(true), m.join(false), m.join(false)
	m.run(3 * time.Second)
	// A fresh wrap from the leader, captured instead of delivered.
	a.g.periodicAt = m.now
	out, _, err := a.g.Advance(m.now)
	require.NoError(t, err)
	var toB *KeyWrap
	for _, o := range out {
		if o.To == b.id {
			toB = o.Wrap
		}
	}
	require.NotNil(t, toB)
	mut := func(f func(w *KeyWrap)) *KeyWrap { w := *toB; f(&w); return &w }
	for _, tc := range []struct {
		name string
		to   *client
		w    *KeyWrap
		err  error
	}{
		{"not for me", c, toB, ErrNotForMe},
		{"not the leader", b, mut(func(w *KeyWrap) { w.From = c.id }), ErrNotLeader},
		{"stale roster", b, mut(func(w *KeyWrap) { w.RosterHash[0] ^= 1 }), ErrStaleRoster},
		{"tampered key ID", b, mut(func(w *KeyWrap) { w.KeyID++ }), ErrWrapOpen},
		{"tampered ciphertext", b, mut(func(w *KeyWrap) { w.Sealed[3] ^= 1 }), ErrWrapOpen},
		{"tampered nonce", b, mut(func(w *KeyWrap) { w.Nonce[0] ^= 1 }), ErrWrapOpen},
		{"old key", b, mut(func(w *KeyWrap) { w.KeyID = a.g.lastID - 1 }), ErrOldKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.to.g.Receive(tc.w, m.now)
			require.ErrorIs(t, err, tc.err)
		})
	}
	_, err = b.g.Receive(toB, m.now)
	require.NoError(t, err)
	_, err = b.g.Receive(toB, m.now)
	require.ErrorIs(t, err, ErrOldKey, "a replayed wrap is refused")
}

func TestMessagesRoundTrip(t *testing.T) {
	leaktest.Check(t)
	k := protect.MeetingKey{ID: 3, Secret: [32]byte{1, 2, 3}}
	got, err := NewMediaKey(k).MeetingKey()
	require.NoError(t, err)
	require.Equal(t, k, got)
	for _, bad := range []MediaKey{{0, NewMediaKey(k).Key}, {1, "00"}, {1, NewMediaKey(k).Key[:62] + "zz"}} {
		_, err := bad.MeetingKey()
		require.ErrorIs(t, err, ErrMessage)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	p, err := ParsePublicKeyHex(PublicKeyHex(priv.PublicKey().Bytes()))
	require.NoError(t, err)
	require.Equal(t, priv.PublicKey().Bytes(), p)
	w := &KeyWrap{From: 1, To: 2, KeyID: 3}
	msg := NewE2EEKey(w)
	got2, err := E2EEKey{From: 1, Wrap: msg.Wrap}.KeyWrap()
	require.NoError(t, err)
	require.Equal(t, w, got2)
	_, err = E2EEKey{From: 9, Wrap: msg.Wrap}.KeyWrap()
	require.ErrorIs(t, err, ErrMessage)
}

// A host that joins a running meeting becomes the leader at once: it has
// never held a key, so it starts at a random key ID, and the others accept
// it because it comes from the new leader.
func TestE2EEHostJoinsLate(t *testing.T) {
	leaktest.Check(t)
	m := newMeeting(t)
	b := m.join(false)
	c := m.join(false)
	m.run(3 * time.Second)
	require.True(t, b.g.IsLeader())
	m.requireAllConnected()
	before := []([]byte){b.sealPacket(t), c.sealPacket(t)}
	h := m.join(true)
	m.run(5 * time.Second)
	require.True(t, h.g.IsLeader())
	require.False(t, b.g.IsLeader())
	m.requireAllConnected()
	requireUnreadable(t, b, before[0], h.held)
	requireUnreadable(t, c, before[1], h.held)
	require.Equal(t, b.g.SecurityCode(), h.g.SecurityCode())
}
