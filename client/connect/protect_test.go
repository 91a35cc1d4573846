package connect_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/secure"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

// TestReceiverRejectsOverTheRouter sends, through the real router, a
// packet with one flipped bit, a replayed packet and a packet under a key
// the receiver does not hold; a connect.Session receiving them drops each
// and counts it under its reason (and only it).
func TestReceiverRejectsOverTheRouter(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rxB := newMarkerRx()
	cfg := clientConfig(t, e, 1, nil)
	cfg.Transport, cfg.OnMedia = connect.UDP, rxB.onMedia
	b, _, err := connect.Connect(ctx, cfg)
	require.NoError(t, err)
	defer b.Close()
	a := joinRaw(t, e.zones[0], meetingID, "mallory@example.org", token.Participant, false, 0xa0a0)

	// A good packet first: the route and a's stream are known to b.
	require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
		_, p := a.seal()
		_ = a.flow.Send(p)
		time.Sleep(5 * time.Millisecond) // pacing of the sends
		return rxB.count(a.ssrc) > 0
	}))
	other := protect.NewSealer(a.id, 0)
	var foreign protect.MeetingKey
	foreign.ID = 0x7fff0001
	_, _ = rand.Read(foreign.Secret[:])
	require.NoError(t, other.SetKey(foreign))

	cases := []struct {
		name   string
		packet func() []byte
		reason func(protect.Stats) uint64
	}{
		{"flipped bit", func() []byte {
			_, p := a.seal()
			p[12+20] ^= 0x04 // one bit of the ciphertext
			return p
		}, func(s protect.Stats) uint64 { return s.Auth }},
		{"replayed", func() []byte {
			// Delivered and opened once first (sent again if lost).
			_, p := a.seal()
			n := rxB.count(a.ssrc)
			require.NoError(t, connecttest.Wait(ctx, 10*time.Second, func() bool {
				require.NoError(t, a.flow.Send(p))
				time.Sleep(20 * time.Millisecond) // pacing of the sends
				return rxB.count(a.ssrc) > n
			}))
			return p
		}, func(s protect.Stats) uint64 { return s.Replayed }},
		{"unknown key", func() []byte {
			a.seq++
			p, err := other.Seal(nil, markerRTP(a.ssrc, a.seq, 200))
			require.NoError(t, err)
			return p
		}, func(s protect.Stats) uint64 { return s.UnknownKey }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.packet()
			before := b.Media().Stats().RTP
			opened := rxB.count(a.ssrc)
			// UDP may lose a datagram: send the same bytes until it is
			// counted (a repeat of a rejected packet is rejected alike).
			require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
				require.NoError(t, a.flow.Send(p))
				time.Sleep(20 * time.Millisecond) // pacing of the sends
				return c.reason(b.Media().Stats().RTP) > c.reason(before)
			}), "not counted")
			after := b.Media().Stats().RTP
			require.Equal(t, before.Rejected()+(c.reason(after)-c.reason(before)), after.Rejected(), "counted under another reason too")
			require.Equal(t, opened, rxB.count(a.ssrc), "a rejected packet reached the application")
		})
	}
	require.NoError(t, b.Leave(ctx))
	a.leave()
}

// TestE2EEOverTheRouter is issue 10's E2EE bar with the real control
// server and router: three participants key themselves; after one leaves,
// media sent later opens with none of the keys it ever held; a joiner's
// keys open none of what was sent before it joined; the security codes
// agree, and differ for a participant shown a substituted public key.
func TestE2EEOverTheRouter(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	z := e.zones[0]
	const meeting = "e2ee-bar"
	a := joinRaw(t, z, meeting, "ann@example.org", token.Host, true, 0xa1)
	b := joinRaw(t, z, meeting, "bob@example.org", token.Participant, true, 0xb1)
	c := joinRaw(t, z, meeting, "cid@example.org", token.Participant, true, 0xc1)
	for _, m := range []*rawMember{a, b, c} {
		require.Equal(t, ctlproto.ProtectionE2EE, m.st.Mode())
	}
	info := agree(t, 0, 3, a, b, c)
	require.Equal(t, a.id, info.Leader, "the host leads")
	require.Regexp(t, `^\d{5}( \d{5}){5}$`, info.Code)
	a.deliver(b, c)
	b.deliver(a, c)
	beforeD := c.deliver(a, b) // sent before d joins

	// c leaves: what a sends once the next key is in use, c cannot open.
	c.leave()
	info2 := agree(t, info.SendKey, 2, a, b)
	require.NotEqual(t, info.Code, info2.Code)
	late := a.deliver(b)
	cKeys := c.keyLog.keys(t)
	require.NotEmpty(t, cKeys)
	require.True(t, secure.Opens(b.keyLog.keys(t), protect.Sender{Participant: a.id, SSRC: a.ssrc}, late), "the check itself: b's keys open it")
	require.False(t, secure.Opens(cKeys, protect.Sender{Participant: a.id, SSRC: a.ssrc}, late), "the leaver's keys open media sent after it left")

	// d joins: its keys open nothing sent before it joined.
	d := joinRaw(t, z, meeting, "dan@example.org", token.Participant, true, 0xd1)
	info3 := agree(t, info2.SendKey, 3, a, b, d)
	require.NotEqual(t, info2.Code, info3.Code)
	b.deliver(a, d)
	require.True(t, secure.Opens(a.keyLog.keys(t), protect.Sender{Participant: c.id, SSRC: c.ssrc}, beforeD), "the check itself: a's keys open it")
	require.False(t, secure.Opens(d.keyLog.keys(t), protect.Sender{Participant: c.id, SSRC: c.ssrc}, beforeD), "the joiner's keys open media sent before it joined")

	// b is shown another public key for a (what a server in the middle
	// would do): b's code no longer matches a's and d's, and the leader's
	// next key, made for the true roster, is refused by b.
	mitm, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	entry := ctlproto.RosterEntry{ID: a.id, Name: "ann@example.org", Identity: "ann@example.org", Role: ctlproto.RoleHost,
		Streams:       []ctlproto.Stream{{Kind: ctlproto.Kind(media.Audio), SSRCs: []uint32{a.ssrc}}},
		E2EEPublicKey: keys.PublicKeyHex(mitm.PublicKey().Bytes())}
	require.NoError(t, b.st.Handle(&ctlproto.ParticipantJoined{Participant: entry}))
	ia, ib, id := a.st.Info(), b.st.Info(), d.st.Info()
	require.Equal(t, ia.Code, id.Code)
	require.Equal(t, ia.SendKey, ib.SendKey)
	require.NotEqual(t, ia.Code, ib.Code, "a substituted public key left the code unchanged")
	rejected := b.st.Stats().KeysRejected
	f := joinRaw(t, z, meeting, "fay@example.org", token.Participant, true, 0xf1)
	agree(t, ia.SendKey, 4, a, d, f)
	require.Eventually(t, func() bool { return b.st.Stats().KeysRejected > rejected }, 20*time.Second, 10*time.Millisecond)
	for _, m := range []*rawMember{a, b, d, f} {
		m.leave()
	}
}

// agree waits until members all show the same Info: a send key other
// than not, the same code, n members.
func agree(t *testing.T, not protect.KeyID, n int, ms ...*rawMember) secure.Info {
	t.Helper()
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
	}, 30*time.Second, 10*time.Millisecond, "members do not agree on one key and code")
	return info
}

// TestConnectE2EE: the whole connection process into an E2EE meeting of
// the real web tier, one client per transport: the lookup says e2ee, the
// joined agrees, the clients key themselves, show one security code
// (reported through Config.Media.OnChange) and open each other's media.
func TestConnectE2EE(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	transports := []string{connect.UDP, connect.TCP, connect.TLS}
	var sess []*connect.Session
	var rx []*markerRx
	codes := make([]chan secure.Info, len(transports))
	for i, tr := range transports {
		codes[i] = make(chan secure.Info, 64)
		r := newMarkerRx()
		cfg := clientConfig(t, e, i, nil)
		cfg.MeetingID, cfg.Passcode, cfg.Transport, cfg.OnMedia = e2eeMeetingID, "4343", tr, r.onMedia
		ch := codes[i]
		cfg.Media.OnChange = func(i secure.Info) {
			select {
			case ch <- i:
			default:
			}
		}
		s, res, err := connect.Connect(ctx, cfg)
		require.NoError(t, err, tr)
		defer s.Close()
		require.Equal(t, ctlproto.ProtectionE2EE, res.Control.MediaProtection)
		require.Nil(t, s.Joined().MediaKey)
		sess, rx = append(sess, s), append(rx, r)
	}
	var info secure.Info
	require.Eventually(t, func() bool {
		info = sess[0].Media().Info()
		for _, s := range sess {
			if i := s.Media().Info(); i.SendKey == 0 || i != info || i.Members != len(sess) {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond)
	for i := range sess {
		var last secure.Info
		require.Eventually(t, func() bool {
			for {
				select {
				case last = <-codes[i]:
				default:
					return last.Code == info.Code
				}
			}
		}, 10*time.Second, 10*time.Millisecond, "client %d was not told the code", i)
	}
	for i, s := range sess {
		for _, k := range media.Kinds {
			ssrc := ssrcFor(i, k)
			seq := uint16(0)
			require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
				seq++
				_ = s.Flow(k).Send(markerRTP(ssrc, seq, 300))
				time.Sleep(2 * time.Millisecond) // pacing of the sends
				for j := range rx {
					if j != i && rx[j].count(ssrc) < 5 {
						return false
					}
				}
				return true
			}), "%s from client %d", k, i)
		}
	}
	for _, s := range sess {
		require.NoError(t, s.Leave(ctx))
	}
}

// TestProtectedSendAllocs: sealing adds no allocation to a send, on UDP
// and on a TCP stream (the seal buffers are the flows' own).
func TestProtectedSendAllocs(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, tr := range []string{connect.UDP, connect.TCP} {
		t.Run(tr, func(t *testing.T) {
			cfg := clientConfig(t, e, i, nil)
			cfg.Transport = tr
			s, _, err := connect.Connect(ctx, cfg)
			require.NoError(t, err)
			defer s.Close()
			f := s.Flow(media.Video)
			pkt := markerRTP(ssrcFor(i, media.Video), 1, 1200)
			rr := markerRR(ssrcFor(i, media.Video), 1)
			seq := uint16(1)
			allocs := testing.AllocsPerRun(200, func() {
				seq++
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				require.NoError(t, f.Send(pkt))
				require.NoError(t, f.Send(rr))
			})
			require.Zero(t, allocs)
			require.NoError(t, s.Leave(ctx))
		})
	}
}
