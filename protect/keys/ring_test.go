package keys

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/protect"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

func key(t *testing.T, id protect.KeyID) protect.MeetingKey {
	k := protect.MeetingKey{ID: id}
	_, err := rand.Read(k.Secret[:])
	require.NoError(t, err)
	return k
}

func kinds(acts []Action) []string {
	var s []string
	for _, a := range acts {
		s = append(s, map[ActionKind]string{AddKey: "add", UseKey: "use", DropKey: "drop"}[a.Kind]+string(rune('0'+a.Key.ID)))
	}
	return s
}

func TestRingSchedule(t *testing.T) {
	leaktest.Check(t)
	t0 := time.Unix(0, 0)
	r := NewRing(RingConfig{SwitchDelay: time.Second, RetireDelay: 3 * time.Second, MaxKeys: 3})
	k1, k2, k3, k4 := key(t, 1), key(t, 2), key(t, 3), key(t, 4)
	acts, err := r.Install(k1, t0)
	require.NoError(t, err)
	require.Equal(t, []string{"add1", "use1"}, kinds(acts), "first key: send at once")
	require.True(t, r.Deadline().IsZero())

	acts, err = r.Install(k2, t0.Add(10*time.Second))
	require.NoError(t, err)
	require.Equal(t, []string{"add2"}, kinds(acts), "receive at once, keep sending under 1")
	require.Equal(t, t0.Add(11*time.Second), r.Deadline())
	require.Empty(t, r.Advance(t0.Add(10*time.Second+999*time.Millisecond)))
	require.Equal(t, []string{"use2"}, kinds(r.Advance(t0.Add(11*time.Second))))
	require.Equal(t, protect.KeyID(2), r.SendKey())
	require.Equal(t, []protect.KeyID{1, 2}, r.Live(), "old key live for late packets")
	require.Equal(t, []string{"drop1"}, kinds(r.Advance(t0.Add(14*time.Second))))
	require.Equal(t, []protect.KeyID{2}, r.Live())

	// A burst: 3 and 4 arrive together; the sender skips 3, and with
	// MaxKeys 3 a fifth key evicts the oldest key that is not the send key.
	_, err = r.Install(k3, t0.Add(20*time.Second))
	require.NoError(t, err)
	_, err = r.Install(k4, t0.Add(20*time.Second+100*time.Millisecond))
	require.NoError(t, err)
	k5 := key(t, 5)
	acts, err = r.Install(k5, t0.Add(20*time.Second+200*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, []string{"drop3", "add5"}, kinds(acts))
	require.Equal(t, []string{"use5"}, kinds(r.Advance(t0.Add(22*time.Second))))
	require.Equal(t, []string{"drop2", "drop4"}, kinds(r.Advance(t0.Add(25*time.Second))))

	acts, err = r.Install(k5, t0.Add(30*time.Second))
	require.NoError(t, err)
	require.Empty(t, acts, "reinstall is a no-op")
	bad := k5
	bad.Secret[0] ^= 1
	_, err = r.Install(bad, t0)
	require.ErrorIs(t, err, ErrKeyConflict)
	_, err = r.Install(protect.MeetingKey{}, t0)
	require.ErrorIs(t, err, ErrKeyID)
}

// Standard mode end to end: the server's schedule, three clients' rings,
// Sealers and Openers; a packet under the old key opens while that key is
// live and not after.
func TestStandardMode(t *testing.T) {
	leaktest.Check(t)
	now := time.Unix(1000, 0)
	srv, err := NewStandard(nil, 0)
	require.NoError(t, err)
	type cl struct {
		r *Ring
		s *protect.Sealer
		o *protect.Opener
	}
	clients := map[uint64]*cl{}
	join := func(id uint64) {
		o, err := protect.NewOpener(protect.OpenerConfig{})
		require.NoError(t, err)
		c := &cl{NewRing(RingConfig{}), protect.NewSealer(id, 0), o}
		for oid := range clients {
			require.NoError(t, o.AddSender(protect.Sender{Participant: oid, SSRC: uint32(oid)}))
			require.NoError(t, clients[oid].o.AddSender(protect.Sender{Participant: id, SSRC: uint32(id)}))
		}
		clients[id] = c
		acts, err := c.r.Install(srv.Current(), now) // joined's media_key
		require.NoError(t, err)
		require.NoError(t, Apply(acts, c.s, c.o))
		srv.Changed(now)
	}
	step := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(50 * time.Millisecond) {
			k, ok, err := srv.Due(now)
			require.NoError(t, err)
			for _, c := range clients {
				var acts []Action
				if ok {
					acts, err = c.r.Install(k, now) // media-key event
					require.NoError(t, err)
				}
				require.NoError(t, Apply(append(acts, c.r.Advance(now)...), c.s, c.o))
			}
		}
	}
	pkt := func(id uint64, seq uint16) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SSRC: uint32(id), SequenceNumber: seq}, Payload: []byte("hello")}).Marshal()
		require.NoError(t, err)
		out, err := clients[id].s.Seal(nil, b)
		require.NoError(t, err)
		return out
	}
	join(1)
	join(2)
	step(2 * time.Second)
	join(3)
	step(100 * time.Millisecond)
	require.Equal(t, protect.KeyID(2), srv.Current().ID, "the two first joins coalesced into one re-key")
	step(2 * time.Second)
	for id, c := range clients {
		require.Equal(t, protect.KeyID(3), c.r.SendKey(), "client %d: re-keyed after the third join", id)
	}
	late := []([]byte){pkt(1, 1), pkt(1, 2)} // under key 3, delivered late
	delete(clients, 3)
	srv.Changed(now)
	step(2 * time.Second) // key 4 installed and switched to, key 3 retiring
	require.Equal(t, protect.KeyID(4), clients[1].r.SendKey())
	require.Subset(t, clients[2].o.Keys(), []protect.KeyID{3, 4})
	_, err = clients[2].o.Open(nil, late[0])
	require.NoError(t, err, "old key still live")
	_, err = clients[2].o.Open(nil, pkt(1, 3))
	require.NoError(t, err)
	step(5 * time.Second)
	require.Equal(t, []protect.KeyID{4}, clients[2].r.Live())
	require.Equal(t, []protect.KeyID{4}, clients[2].o.Keys(), "old key dropped")
	_, err = clients[2].o.Open(nil, late[1])
	require.ErrorIs(t, err, protect.ErrUnknownKey)
}
