package control

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/protect/keys"
)

// mintE2EE mints a version 3 token for an E2EE meeting.
func mintE2EE(t testing.TB, meeting, identity string, role token.Role) string {
	tok, err := token.Mint(testSecret, token.Claims{Meeting: meeting, Identity: identity, Role: role, Expiry: time.Now().Add(time.Hour), E2EE: true})
	require.NoError(t, err)
	return tok
}

// e2eeRaw is a raw connection joined to an E2EE meeting with its own
// X25519 key.
type e2eeRaw struct {
	*rawConn
	priv *ecdh.PrivateKey
	j    *proto.Joined
	id   uint64
}

func newX25519(t testing.TB) *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

// joinE2EE joins meeting over a raw connection with an E2EE token and a
// fresh public key.
func (e *env) joinE2EE(t *testing.T, meeting, identity string, role token.Role) *e2eeRaw {
	t.Helper()
	r := e.raw(t)
	r.hello()
	priv := newX25519(t)
	r.send(2, &proto.Join{Meeting: meeting, Token: mintE2EE(t, meeting, identity, role), E2EEPublicKey: hex.EncodeToString(priv.PublicKey().Bytes())})
	_, m := r.next()
	j, ok := m.(*proto.Joined)
	require.True(t, ok, "join answered by %#v", m)
	return &e2eeRaw{rawConn: r, priv: priv, j: j, id: j.Participant}
}

func (x *e2eeRaw) pubHex() string { return hex.EncodeToString(x.priv.PublicKey().Bytes()) }

// wrapTo seals key k for recipient to, claiming to come from from.
func (x *e2eeRaw) wrapTo(t *testing.T, from uint64, to *e2eeRaw, k protect.MeetingKey) string {
	w, err := keys.SealWrap(rand.Reader, x.priv, from, to.id, to.priv.PublicKey(), [32]byte{1}, k)
	require.NoError(t, err)
	return keys.NewE2EEKey(w).Wrap
}

// request sends m with id and returns the reply with that id, skipping
// events (which it returns too).
func (r *rawConn) request(id uint32, m proto.Message) (proto.Message, []proto.Message) {
	r.t.Helper()
	r.send(id, m)
	var evs []proto.Message
	for {
		gid, got := r.next()
		if gid == id {
			return got, evs
		}
		evs = append(evs, got)
	}
}

// syncEvents pings and returns the events that arrived before the pong:
// everything the server queued for the connection before the ping.
func (r *rawConn) syncEvents(id uint32) []proto.Message {
	r.t.Helper()
	reply, evs := r.request(id, &proto.Ping{})
	require.IsType(r.t, &proto.Pong{}, reply)
	return evs
}

func requireCode(t *testing.T, m proto.Message, code string, fatal bool) {
	t.Helper()
	e, ok := m.(*proto.Error)
	require.True(t, ok, "want error %s, got %#v", code, m)
	require.Equal(t, code, e.Code, e.Message)
	require.Equal(t, fatal, e.Fatal)
}

// TestE2EEJoin: an E2EE token makes an E2EE meeting: joined without a
// media key, public keys in the roster and participant-joined exactly as
// announced (lowercase hex), and the refusals of the mode rules.
func TestE2EEJoin(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	ann := e.joinE2EE(t, "sec", "ann@example.org", token.Host)
	require.Equal(t, proto.ProtectionE2EE, ann.j.MediaProtection)
	require.Nil(t, ann.j.MediaKey, "the server holds no E2EE key")
	require.Equal(t, "ann@example.org", ann.j.Identity)
	secret := rt.rtcpSecret(ann.id)
	require.Equal(t, hex.EncodeToString(secret[:]), ann.j.RTCPSecret)

	// Bob announces his key in upper case: it is passed on as the same
	// bytes, in lowercase.
	bob := e.raw(t)
	bob.hello()
	bobKey := newX25519(t)
	bobHex := hex.EncodeToString(bobKey.PublicKey().Bytes())
	bob.send(2, &proto.Join{Meeting: "sec", Token: mintE2EE(t, "sec", "bob", token.Participant), E2EEPublicKey: strings.ToUpper(bobHex)})
	_, m := bob.next()
	bj := m.(*proto.Joined)
	require.Len(t, bj.Roster, 1)
	require.Equal(t, ann.pubHex(), bj.Roster[0].E2EEPublicKey, "roster entries carry public keys")
	_, m = ann.next()
	pj := m.(*proto.ParticipantJoined)
	require.Equal(t, bj.Participant, pj.Participant.ID)
	require.Equal(t, bobHex, pj.Participant.E2EEPublicKey, "participant-joined carries the joiner's key")

	tests := []struct {
		name, meeting, code string
		join                func() *proto.Join
	}{
		{"no public key", "sec", proto.CodePublicKeyRequired, func() *proto.Join {
			return &proto.Join{Meeting: "sec", Token: mintE2EE(t, "sec", "eve", token.Participant)}
		}},
		{"viewer", "sec", proto.CodeNoViewers, func() *proto.Join {
			return &proto.Join{Meeting: "sec", Token: mintE2EE(t, "sec", "eve", token.Viewer), E2EEPublicKey: bobHex}
		}},
		{"standard token for an E2EE meeting", "sec", proto.CodeWrongMode, func() *proto.Join {
			return &proto.Join{Meeting: "sec", Token: mint(t, "sec", "eve", token.Participant), E2EEPublicKey: bobHex}
		}},
		{"E2EE token for a standard meeting", "std", proto.CodeWrongMode, func() *proto.Join {
			return &proto.Join{Meeting: "std", Token: mintE2EE(t, "std", "eve", token.Participant), E2EEPublicKey: bobHex}
		}},
	}
	std := e.join(t, "std", "sam", token.Participant)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			r.hello()
			r.send(2, tc.join())
			r.expectFatal(tc.code)
		})
	}
	require.Empty(t, ann.syncEvents(9), "refused joins announce nothing")
	require.Equal(t, proto.ProtectionStandard, std.j.MediaProtection)

	// A Standard join's e2ee_public_key is ignored.
	r := e.raw(t)
	r.hello()
	r.send(2, &proto.Join{Meeting: "std", Token: mint(t, "std", "tom", token.Participant), E2EEPublicKey: bobHex})
	_, m = r.next()
	tj := m.(*proto.Joined)
	require.Equal(t, proto.ProtectionStandard, tj.MediaProtection)
	pj = std.ev.waitFor(t, "tom joined", isType(proto.TypeParticipantJoined)).(*proto.ParticipantJoined)
	require.Empty(t, pj.Participant.E2EEPublicKey)
}

// TestE2EEKeyRelay: a key wrap reaches its recipient only, from the
// sender's ID; forged, malformed, misaddressed ones are refused (not
// fatal) and counted; a recipient in its grace period gets it after
// resumed; and the per-recipient budget refuses a flood.
func TestE2EEKeyRelay(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) { c.Grace = time.Minute })
	ann := e.joinE2EE(t, "sec", "ann", token.Host)
	bob := e.joinE2EE(t, "sec", "bob", token.Participant)
	carl := e.joinE2EE(t, "sec", "carl", token.Participant)
	ann.syncEvents(50)
	bob.syncEvents(50)
	k := protect.MeetingKey{ID: 7}
	copy(k.Secret[:], "thirty-two bytes of a media key!")

	wrap := ann.wrapTo(t, ann.id, bob, k)
	reply, _ := ann.request(3, &proto.E2EEKey{To: bob.id, Wrap: wrap})
	require.IsType(t, &proto.OK{}, reply)
	evs := bob.syncEvents(4)
	require.Len(t, evs, 1)
	got := evs[0].(*proto.E2EEKey)
	require.Equal(t, ann.id, got.From, "from is the sender's participant ID")
	require.Zero(t, got.To)
	require.Equal(t, wrap, got.Wrap, "the wrap unchanged")
	w, err := keys.E2EEKey{From: got.From, Wrap: got.Wrap}.KeyWrap()
	require.NoError(t, err)
	opened, err := keys.OpenWrap(w, bob.priv, ann.priv.PublicKey())
	require.NoError(t, err)
	require.Equal(t, k, opened, "bob can open it")
	require.Empty(t, carl.syncEvents(4), "only the recipient gets the wrap")

	bad := []byte(wrap)
	bad[1] = '9' // wrap version 0x19
	refusals := []struct {
		name string
		req  *proto.E2EEKey
		code string
	}{
		{"forged from", &proto.E2EEKey{To: bob.id, Wrap: ann.wrapTo(t, carl.id, bob, k)}, proto.CodeBadKeyWrap},
		{"unknown recipient", &proto.E2EEKey{To: 999, Wrap: func() string {
			w, err := keys.SealWrap(rand.Reader, ann.priv, ann.id, 999, bob.priv.PublicKey(), [32]byte{}, k)
			require.NoError(t, err)
			return keys.NewE2EEKey(w).Wrap
		}()}, proto.CodeUnknownRecipient},
		{"to itself", &proto.E2EEKey{To: ann.id, Wrap: ann.wrapTo(t, ann.id, ann, k)}, proto.CodeBadKeyWrap},
		{"to differs from the wrap's", &proto.E2EEKey{To: carl.id, Wrap: wrap}, proto.CodeBadKeyWrap},
		{"from set by a client", &proto.E2EEKey{From: ann.id, Wrap: wrap}, proto.CodeBadKeyWrap},
		{"malformed wrap", &proto.E2EEKey{To: bob.id, Wrap: string(bad)}, proto.CodeBadKeyWrap},
	}
	for i, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			reply, _ := ann.request(uint32(10+i), tc.req)
			requireCode(t, reply, tc.code, false)
		})
	}
	require.Empty(t, bob.syncEvents(5), "nothing refused was relayed")
	require.Empty(t, carl.syncEvents(5))
	st := e.srv.Stats()
	require.Equal(t, uint64(1), st.WrapsRelayed)
	require.Equal(t, uint64(len(refusals)), st.WrapsRefused)

	// Bob drops; a wrap for him waits and follows his resumed.
	bob.tc.Close()
	require.Eventually(t, func() bool { return e.srv.Stats().Conns == 2 }, waitLimit, 10*time.Millisecond, "bob's connection ended (ann and carl remain)")
	k.ID = 8
	wrap8 := ann.wrapTo(t, ann.id, bob, k)
	reply, _ = ann.request(31, &proto.E2EEKey{To: bob.id, Wrap: wrap8})
	require.IsType(t, &proto.OK{}, reply)
	again := e.raw(t)
	again.hello()
	again.send(2, &proto.Resume{Participant: bob.id, Credential: bob.j.Resume})
	_, m := again.next()
	res := m.(*proto.Resumed)
	require.Equal(t, proto.ProtectionE2EE, res.MediaProtection)
	require.Nil(t, res.MediaKey)
	require.NotEqual(t, bob.j.RTCPSecret, res.RTCPSecret, "a fresh RTCP secret")
	secret := rt.rtcpSecret(bob.id)
	require.Equal(t, hex.EncodeToString(secret[:]), res.RTCPSecret)
	_, m = again.next()
	held := m.(*proto.E2EEKey)
	require.Equal(t, wrap8, held.Wrap, "the wrap of the gap, right after resumed")

	// A flood of wraps to one recipient: the budget (wrapBurst, then
	// wrapRate per second) refuses most, without cutting ann off.
	const flood = 100
	for i := range flood {
		ann.send(uint32(100+i), &proto.E2EEKey{To: carl.id, Wrap: ann.wrapTo(t, ann.id, carl, k)})
	}
	ok, limited := 0, 0
	for ok+limited < flood {
		_, m := ann.next()
		switch m := m.(type) {
		case *proto.OK:
			ok++
		case *proto.Error:
			require.Equal(t, proto.CodeRateLimited, m.Code, m.Message)
			require.False(t, m.Fatal)
			limited++
		}
	}
	require.GreaterOrEqual(t, ok, wrapBurst)
	require.Positive(t, limited, "the per-recipient budget refused some")
	require.Len(t, carl.syncEvents(6), ok, "carl got exactly the accepted ones")
	// Another recipient's budget is untouched.
	reply, _ = ann.request(500, &proto.E2EEKey{To: bob.id, Wrap: ann.wrapTo(t, ann.id, bob, k)})
	require.IsType(t, &proto.OK{}, reply)
}

// TestE2EEKeyInStandardMeeting: e2ee-key has no place in a Standard
// meeting; refused, not fatal.
func TestE2EEKeyInStandardMeeting(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	a := e.raw(t)
	a.hello()
	a.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "a", token.Participant)})
	_, m := a.next()
	aj := m.(*proto.Joined)
	b := e.join(t, "m", "b", token.Participant)
	priv := newX25519(t)
	w, err := keys.SealWrap(rand.Reader, priv, aj.Participant, b.id(), priv.PublicKey(), [32]byte{}, protect.MeetingKey{ID: 1})
	require.NoError(t, err)
	reply, _ := a.request(3, &proto.E2EEKey{To: b.id(), Wrap: keys.NewE2EEKey(w).Wrap})
	requireCode(t, reply, proto.CodeWrongMode, false)
	_, _, err = b.c.Ping(ctxT(t))
	require.NoError(t, err)
	for _, ev := range b.ev.all() {
		require.NotEqual(t, proto.TypeE2EEKey, ev.Type())
	}
}
