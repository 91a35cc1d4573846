package secure_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

var marker = []byte("openmmr-marker!!") // 16 bytes

// fast makes the key schedule quick enough for tests (the defaults are
// 250 ms, 1 s, 3 s); the order of events is the same.
func fast() secure.Config {
	return secure.Config{Coalesce: 20 * time.Millisecond, Ring: keys.RingConfig{SwitchDelay: 50 * time.Millisecond, RetireDelay: 150 * time.Millisecond}}
}

func TestStandardSealOpenAndRejections(t *testing.T) {
	leaktest.Check(t)
	h := newHub(t, false, fast())
	a, b := h.join("ann@example.org", proto.RoleHost), h.join("bob@example.org", proto.RoleParticipant)
	require.Equal(t, proto.ProtectionStandard, a.st.Mode())
	require.Equal(t, protect.KeyID(1), a.st.Info().SendKey)

	pkt := rtpPacket(a.ssrc, 1, 200, marker)
	sealed, err := a.st.SealRTP(make([]byte, 0, 1500), pkt)
	require.NoError(t, err)
	require.Len(t, sealed, len(pkt)+protect.Overhead)
	require.False(t, bytes.Contains(sealed, marker), "payload in clear")
	opened, err := b.st.OpenRTP(nil, sealed)
	require.NoError(t, err)
	require.Equal(t, pkt, opened)

	cases := []struct {
		name string
		pkt  func() []byte
		want error
	}{
		{"flipped bit", func() []byte {
			p, _ := a.st.SealRTP(nil, rtpPacket(a.ssrc, 2, 200, marker))
			p[40] ^= 0x10
			return p
		}, protect.ErrAuth},
		{"flipped header bit", func() []byte {
			p, _ := a.st.SealRTP(nil, rtpPacket(a.ssrc, 3, 200, marker))
			p[1] ^= 0x80 // the marker bit: authenticated, not encrypted
			return p
		}, protect.ErrAuth},
		{"replayed", func() []byte { return sealed }, protect.ErrReplayed},
		{"unknown key", func() []byte {
			other := protect.NewSealer(a.id, 0)
			var k protect.MeetingKey
			k.ID = 99
			_, _ = rand.Read(k.Secret[:])
			require.NoError(t, other.SetKey(k))
			p, _ := other.Seal(nil, rtpPacket(a.ssrc, 4, 200, marker))
			return p
		}, protect.ErrUnknownKey},
		{"unknown sender", func() []byte {
			p, _ := a.st.SealRTP(nil, rtpPacket(4242, 1, 200, marker))
			return p
		}, protect.ErrUnknownSender},
		{"short", func() []byte { return sealed[:30] }, protect.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := b.st.Stats().RTP.Rejected()
			_, err := b.st.OpenRTP(nil, c.pkt())
			require.ErrorIs(t, err, c.want)
			require.Equal(t, before+1, b.st.Stats().RTP.Rejected())
		})
	}
	st := b.st.Stats().RTP
	require.Equal(t, uint64(2), st.Auth)
	require.Equal(t, uint64(1), st.Replayed)
	require.Equal(t, uint64(1), st.UnknownKey)
	require.Equal(t, uint64(1), st.UnknownSender)
	require.Equal(t, uint64(1), st.Malformed)
	require.Equal(t, uint64(1), st.Opened)
}

func TestRTCPIsClientSide(t *testing.T) {
	h := newHub(t, false, fast())
	a := h.join("ann@example.org", proto.RoleHost)
	// The router's side of a's audio flow, from the same secret: the
	// test cannot reach the secret, so it checks the behaviour instead: a
	// client cannot open what it sealed itself (direction 1 out, 2 in).
	rr := rtcpRR(a.ssrc)
	sealed, err := a.st.SealRTCP(media.Audio, nil, rr)
	require.NoError(t, err)
	require.Len(t, sealed, len(rr)+protect.RTCPOverhead)
	require.Equal(t, rr[:8], sealed[:8], "first 8 bytes stay clear")
	_, err = a.st.OpenRTCP(media.Audio, nil, sealed)
	require.ErrorIs(t, err, protect.ErrAuth)
	_, err = a.st.SealRTCP(media.Kind(9), nil, rr)
	require.ErrorIs(t, err, protect.ErrKind)
	f := a.st.Flow(media.Video)
	_, err = f.Seal(nil, []byte{0x02, 0, 0, 0})
	require.ErrorIs(t, err, secure.ErrNotMedia)
	out, err := f.Seal(nil, rr)
	require.NoError(t, err)
	require.Len(t, out, len(rr)+protect.RTCPOverhead)
}

func TestStandardKeyChange(t *testing.T) {
	leaktest.Check(t)
	h := newHub(t, false, fast())
	a, b := h.join("ann@example.org", proto.RoleHost), h.join("bob@example.org", proto.RoleParticipant)
	k2 := &proto.MediaKey{KeyID: 2, Key: hexRand(t, 32)}
	for _, m := range []*member{a, b} {
		require.NoError(t, m.st.Handle(k2))
	}
	require.ElementsMatch(t, []protect.KeyID{1, 2}, b.st.LiveKeys(), "live at once")
	require.Eventually(t, func() bool { return a.st.Info().SendKey == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(b.st.LiveKeys()) == 1 && b.st.LiveKeys()[0] == 2 }, 10*time.Second, 5*time.Millisecond)
	p, err := a.st.SealRTP(nil, rtpPacket(a.ssrc, 9, 100, marker))
	require.NoError(t, err)
	_, err = b.st.OpenRTP(nil, p)
	require.NoError(t, err)

	require.Error(t, b.st.Handle(&proto.MediaKey{KeyID: 2, Key: hexRand(t, 32)}), "same ID, other secret")
	require.Error(t, b.st.Handle(&proto.E2EEKey{From: a.id, Wrap: hexRand(t, proto.WrapSize)}), "wrap in a Standard meeting")
	require.Equal(t, uint64(2), b.st.Stats().KeysRejected)
}

func TestJoinedChecks(t *testing.T) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	base := func() *proto.Joined {
		return &proto.Joined{Meeting: "m", Participant: 5, Role: proto.RoleHost, MediaProtection: proto.ProtectionStandard,
			RTCPSecret: hexRand(t, 32), MediaKey: &proto.MediaKey{KeyID: 1, Key: hexRand(t, 32)}}
	}
	cases := []struct {
		name string
		edit func(*proto.Joined, *secure.Config)
		want error
	}{
		{"standard", func(*proto.Joined, *secure.Config) {}, nil},
		{"e2ee", func(j *proto.Joined, c *secure.Config) {
			j.MediaProtection, j.MediaKey, c.Private = proto.ProtectionE2EE, nil, priv
		}, nil},
		{"e2ee required, standard", func(_ *proto.Joined, c *secure.Config) { c.RequireE2EE = true }, secure.ErrDowngrade},
		{"e2ee required, none", func(j *proto.Joined, c *secure.Config) { j.MediaProtection, c.RequireE2EE = "", true }, secure.ErrDowngrade},
		{"no protection", func(j *proto.Joined, _ *secure.Config) { j.MediaProtection = "" }, secure.ErrUnprotected},
		{"unknown mode", func(j *proto.Joined, _ *secure.Config) { j.MediaProtection = "rot13" }, secure.ErrMode},
		{"no rtcp secret", func(j *proto.Joined, _ *secure.Config) { j.RTCPSecret = "" }, secure.ErrUnprotected},
		{"bad rtcp secret", func(j *proto.Joined, _ *secure.Config) { j.RTCPSecret = "zz" }, secure.ErrUnprotected},
		{"standard without key", func(j *proto.Joined, _ *secure.Config) { j.MediaKey = nil }, secure.ErrUnprotected},
		{"bad key", func(j *proto.Joined, _ *secure.Config) { j.MediaKey.Key = "00" }, secure.ErrUnprotected},
		{"e2ee without key pair", func(j *proto.Joined, _ *secure.Config) { j.MediaProtection = proto.ProtectionE2EE }, secure.ErrUnprotected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, cfg := base(), secure.Config{}
			c.edit(j, &cfg)
			_, err := secure.New(j, cfg)
			if c.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, c.want)
			}
		})
	}
}

func TestResumeReplacesRTCPAndRoster(t *testing.T) {
	h := newHub(t, false, fast())
	a, b := h.join("ann@example.org", proto.RoleHost), h.join("bob@example.org", proto.RoleParticipant)
	p, _ := b.st.SealRTP(nil, rtpPacket(b.ssrc, 1, 100, marker))
	_, err := a.st.OpenRTP(nil, p)
	require.NoError(t, err)
	_, err = a.st.SealRTCP(media.Audio, nil, rtcpRR(a.ssrc))
	require.NoError(t, err)
	// Resumed: bob is gone, the key is 3, a new RTCP secret.
	j := &proto.Joined{Meeting: "m", Participant: a.id, Role: proto.RoleHost, MediaProtection: proto.ProtectionStandard,
		RTCPSecret: hexRand(t, 32), MediaKey: &proto.MediaKey{KeyID: 3, Key: hexRand(t, 32)}}
	require.NoError(t, a.st.Resume(j))
	p, _ = b.st.SealRTP(nil, rtpPacket(b.ssrc, 2, 100, marker))
	_, err = a.st.OpenRTP(nil, p)
	require.ErrorIs(t, err, protect.ErrUnknownSender, "bob left while the connection was down")
	require.Contains(t, a.st.LiveKeys(), protect.KeyID(3))
	require.Equal(t, uint64(1), a.st.Stats().RTCP.Sealed, "the replaced flow's counters are kept")

	j.MediaProtection, j.MediaKey = proto.ProtectionE2EE, nil
	require.ErrorIs(t, a.st.Resume(j), secure.ErrMode)
	j.Participant = 77
	require.ErrorIs(t, a.st.Resume(j), secure.ErrMode)
}

// TestE2EEGroup runs the E2EE schedule among in-process states: the leader
// keys the group, a leaver cannot open what is sent after the next key, a
// joiner cannot open what was sent before it joined, and the codes agree
// unless a public key is substituted.
func TestE2EEGroup(t *testing.T) {
	leaktest.Check(t)
	cfg := fast()
	var logs sync.Map // member id -> *bytes.Buffer (keys it ever held)
	h := newHub(t, true, cfg)
	join := func(identity, role string) *member {
		// Every member logs its keys; the leaver's and joiner's logs are
		// what the test holds against them.
		buf := &lockedBuffer{}
		h.cfg.KeyLog = buf
		m := h.join(identity, role)
		logs.Store(m.id, buf)
		return m
	}
	a := join("ann@example.org", proto.RoleHost)
	b := join("bob@example.org", proto.RoleParticipant)
	c := join("cid@example.org", proto.RoleParticipant)
	all := []*member{a, b, c}
	agree := func(not protect.KeyID, n int, ms ...*member) secure.Info {
		var info secure.Info
		require.Eventually(t, func() bool {
			info = ms[0].st.Info()
			for _, m := range ms {
				i := m.st.Info()
				if i.SendKey == 0 || i.SendKey == not || i != info || i.Members != n {
					return false
				}
			}
			return true
		}, 10*time.Second, 5*time.Millisecond)
		return info
	}
	info := agree(0, 3, all...)
	require.Equal(t, a.id, info.Leader)
	require.Regexp(t, `^\d{5}( \d{5}){5}$`, info.Code)
	seq := uint16(0)
	send := func(from *member) []byte {
		seq++
		p, err := from.st.SealRTP(nil, rtpPacket(from.ssrc, seq, 200, marker))
		require.NoError(t, err)
		return p
	}
	opens := func(m *member, p []byte) bool {
		out, err := m.st.OpenRTP(nil, p)
		return err == nil && bytes.Contains(out, marker)
	}
	for _, from := range all {
		p := send(from)
		for _, to := range all {
			if to != from {
				require.True(t, opens(to, p), "%d -> %d", from.id, to.id)
			}
		}
	}
	beforeD := send(b)

	// c leaves: a and b move to a key c never held.
	h.leave(c)
	cKeys := heldKeys(t, &logs, c.id)
	old := info.SendKey
	info2 := agree(old, 2, a, b)
	require.NotEqual(t, old, info2.SendKey)
	require.NotEqual(t, info.Code, info2.Code)
	after := send(a)
	require.True(t, opens(b, after))
	require.False(t, secure.Opens(cKeys, protect.Sender{Participant: a.id, SSRC: a.ssrc}, after), "the leaver opens media sent after it left")

	// d joins: it never holds a key that opens what b sent before.
	d := join("dan@example.org", proto.RoleParticipant)
	agree(info2.SendKey, 3, a, b, d)
	require.True(t, opens(d, send(b)))
	require.True(t, secure.Opens(heldKeys(t, &logs, a.id), protect.Sender{Participant: b.id, SSRC: b.ssrc}, beforeD), "the check itself")
	require.False(t, secure.Opens(heldKeys(t, &logs, d.id), protect.Sender{Participant: b.id, SSRC: b.ssrc}, beforeD), "the joiner opens media sent before it joined")

	// A substituted public key: b's view of d's key is the attacker's.
	mitm, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	e := d.entry(true)
	e.E2EEPublicKey = keys.PublicKeyHex(mitm.PublicKey().Bytes())
	require.NoError(t, b.st.Handle(&proto.ParticipantJoined{Participant: e}))
	ia, ib := a.st.Info(), b.st.Info()
	require.Equal(t, ia.SendKey, ib.SendKey)
	require.NotEqual(t, ia.Code, ib.Code, "a substituted public key changes the code")
	// The leader's next key is made for the true roster: b, which sees
	// another, refuses it.
	e2 := join("eve@example.org", proto.RoleParticipant)
	agree(ia.SendKey, 4, a, d, e2)
	require.Eventually(t, func() bool { return b.st.Stats().KeysRejected > 0 }, 10*time.Second, 5*time.Millisecond)
}

// heldKeys returns the keys member id logged.
func heldKeys(t *testing.T, logs *sync.Map, id uint64) []protect.MeetingKey {
	v, _ := logs.Load(id)
	ks, err := secure.ParseKeyLog(bytes.NewReader(v.(*lockedBuffer).Bytes()))
	require.NoError(t, err)
	require.NotEmpty(t, ks)
	return ks
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// TestConcurrentSealOpen seals and opens on media goroutines while the
// control goroutine feeds key changes and roster events (run with -race).
func TestConcurrentSealOpen(t *testing.T) {
	leaktest.Check(t)
	h := newHub(t, false, fast())
	a, b := h.join("ann@example.org", proto.RoleHost), h.join("bob@example.org", proto.RoleParticipant)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ssrc := a.ssrc + uint32(g)
			dst, out := make([]byte, 0, 1500), make([]byte, 0, 1500)
			for seq := uint16(0); ctx.Err() == nil; seq++ {
				p, err := a.st.SealRTP(dst, rtpPacket(ssrc, seq, 300, marker))
				if err != nil {
					continue
				}
				_, _ = b.st.OpenRTP(out, p)
				_, _ = a.st.SealRTCP(media.Audio, dst, rtcpRR(ssrc))
				_ = b.st.Stats()
			}
		}()
	}
	for id := uint32(2); ctx.Err() == nil; id++ {
		require.NoError(t, b.st.Handle(&proto.MediaKey{KeyID: id, Key: hexRand(t, 32)}))
		require.NoError(t, a.st.Handle(&proto.MediaKey{KeyID: id, Key: hexRand(t, 32)}))
		_ = b.st.Handle(&proto.StreamAdded{Participant: a.id, Kind: proto.Kind(media.Audio), SSRCs: []uint32{a.ssrc + 1, a.ssrc + 2, a.ssrc + 3}})
		_ = b.st.Handle(&proto.StreamRemoved{Participant: a.id, Kind: proto.Kind(media.Audio), SSRCs: []uint32{a.ssrc + 3}})
		time.Sleep(10 * time.Millisecond) // pacing of the feeding loop, not a wait for a condition
	}
	wg.Wait()
	require.NotZero(t, b.st.Stats().RTP.Opened)
}

func TestParseKeyLog(t *testing.T) {
	var buf bytes.Buffer
	k := protect.MeetingKey{ID: 7}
	k.Secret[0] = 1
	buf.WriteString("MEETINGKEY 7 01" + string(bytes.Repeat([]byte("00"), 31)) + "\n\n")
	buf.WriteString("MEETINGKEY 7 01" + string(bytes.Repeat([]byte("00"), 31)) + "\n")
	ks, err := secure.ParseKeyLog(&buf)
	require.NoError(t, err)
	require.Equal(t, []protect.MeetingKey{k}, ks)
	for _, bad := range []string{"KEY 7 00", "MEETINGKEY x 00", "MEETINGKEY 0 " + string(bytes.Repeat([]byte("00"), 32)), "MEETINGKEY 1 zz"} {
		_, err := secure.ParseKeyLog(bytes.NewReader([]byte(bad)))
		require.Error(t, err, bad)
	}
}
