package control

import (
	"testing"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/stretchr/testify/require"
)

func isType(typ string) func(proto.Message) bool {
	return func(m proto.Message) bool { return m.Type() == typ }
}

func TestJoinRosterEventsLeave(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	ctx := ctxT(t)

	ann := e.join(t, "m1", "ann", token.Host)
	require.Empty(t, ann.j.Roster)
	require.Equal(t, proto.RoleHost, ann.j.Role)
	require.NoError(t, ann.c.Publish(ctx, media.Audio, 11))

	bob := e.join(t, "m1", "bob", token.Participant)
	require.Len(t, bob.j.Roster, 1, "bob sees ann")
	require.Equal(t, ann.id(), bob.j.Roster[0].ID)
	require.Equal(t, "ann", bob.j.Roster[0].Identity)
	require.Equal(t, []proto.Stream{{Kind: proto.Kind(media.Audio), SSRCs: []uint32{11}}}, bob.j.Roster[0].Streams)
	ann.ev.waitFor(t, "bob joined", func(m proto.Message) bool {
		pj, ok := m.(*proto.ParticipantJoined)
		return ok && pj.Participant.ID == bob.id() && pj.Participant.Role == proto.RoleParticipant
	})

	require.NoError(t, bob.c.Publish(ctx, media.Video, 21, 22))
	ann.ev.waitFor(t, "bob's video", func(m proto.Message) bool {
		sa, ok := m.(*proto.StreamAdded)
		return ok && sa.Participant == bob.id() && sa.Kind.Media() == media.Video && len(sa.SSRCs) == 2
	})
	require.Equal(t, []uint32{21, 22}, rt.published(bob.id(), media.Video))

	// Publishing an SSRC another participant holds is refused, not fatal.
	err := bob.c.Publish(ctx, media.Audio, 11)
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeSSRCInUse})
	require.NoError(t, bob.c.Unpublish(ctx, media.Video, 22))
	ann.ev.waitFor(t, "video 22 removed", func(m proto.Message) bool {
		sr, ok := m.(*proto.StreamRemoved)
		return ok && sr.Participant == bob.id() && len(sr.SSRCs) == 1 && sr.SSRCs[0] == 22
	})

	carl := e.join(t, "m1", "carl", token.Viewer)
	require.Len(t, carl.j.Roster, 2)

	require.NoError(t, bob.c.Leave(ctx))
	for _, m := range []*member{ann, carl} {
		removed := m.ev.waitFor(t, "bob's video removed", func(m proto.Message) bool {
			sr, ok := m.(*proto.StreamRemoved)
			return ok && sr.Participant == bob.id() && sr.SSRCs[0] == 21
		})
		left := m.ev.waitFor(t, "bob left", func(m proto.Message) bool {
			pl, ok := m.(*proto.ParticipantLeft)
			return ok && pl.Participant == bob.id() && pl.Reason == proto.ReasonLeft
		})
		all := m.ev.all()
		require.Less(t, indexOf(all, removed), indexOf(all, left), "stream-removed comes before participant-left")
	}
	require.Equal(t, 2, e.srv.Stats().Participants)

	require.NoError(t, ann.c.Leave(ctx))
	require.NoError(t, carl.c.Leave(ctx))
	require.Eventually(t, func() bool { m, p := rt.counts(); return m == 0 && p == 0 }, waitLimit, time.Millisecond,
		"the last leave ends the router meeting")
	st := e.srv.Stats()
	require.Zero(t, st.Meetings)
	require.Equal(t, uint64(3), st.Joins)
}

func indexOf(ms []proto.Message, m proto.Message) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return -1
}

func TestMeetingsAreSeparate(t *testing.T) {
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	a := e.join(t, "red", "a", token.Participant)
	b := e.join(t, "blue", "b", token.Participant)
	a2 := e.join(t, "red", "a2", token.Participant)
	require.Empty(t, b.j.Roster, "blue does not see red")
	require.Len(t, a2.j.Roster, 1)
	require.NoError(t, a2.c.Publish(ctxT(t), media.Audio, 7))
	// The same SSRC in another meeting is fine.
	require.NoError(t, b.c.Publish(ctxT(t), media.Audio, 7))
	a.ev.waitFor(t, "a2's audio", isType(proto.TypeStreamAdded))
	for _, m := range b.ev.all() {
		require.NotEqual(t, proto.TypeParticipantJoined, m.Type(), "blue got an event of red")
		require.NotEqual(t, proto.TypeStreamAdded, m.Type(), "blue got an event of red")
	}
}

func TestAuthFailures(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	previous := []byte("previous-secret-0123456789")
	e := startServer(t, rt, func(c *Config) { c.PreviousSecrets = [][]byte{previous} })
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name, meeting, tok, code string
	}{
		{"forged", "m", mintWith(t, []byte("attacker-secret-0123456789"), "m", "eve", token.Host, future), proto.CodeTokenInvalid},
		{"expired", "m", mintWith(t, testSecret, "m", "ann", token.Host, time.Now().Add(-time.Second)), proto.CodeTokenExpired},
		{"other meeting", "m", mintWith(t, testSecret, "other", "ann", token.Host, future), proto.CodeWrongMeeting},
		{"garbage token", "m", "not-a-token", proto.CodeTokenInvalid},
		{"previous secret accepted", "m", mintWith(t, previous, "m", "ann", token.Host, future), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.srv.Stats()
			r := e.raw(t)
			r.hello()
			r.send(2, &proto.Join{Meeting: tc.meeting, Token: tc.tok})
			if tc.code == "" {
				id, m := r.next()
				require.IsType(t, &proto.Joined{}, m)
				require.Equal(t, uint32(2), id)
				return
			}
			r.expectFatal(tc.code)
			after := e.srv.Stats()
			require.Equal(t, before.AuthFailures+1, after.AuthFailures)
			require.Equal(t, before.Joins, after.Joins, "nothing else happens")
			meetings, parts := rt.counts()
			require.Equal(t, before.Meetings, meetings)
			require.Equal(t, before.Participants, parts)
		})
	}
}

func TestRolesEnforced(t *testing.T) {
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	ctx := ctxT(t)
	host := e.join(t, "m", "host", token.Host)
	part := e.join(t, "m", "part", token.Participant)
	viewer := e.join(t, "m", "viewer", token.Viewer)

	err := viewer.c.Publish(ctx, media.Video, 99)
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeForbidden})
	require.Empty(t, rt.published(viewer.id(), media.Video), "the router never saw the viewer's publish")
	require.NoError(t, viewer.c.Subscribe(ctx, media.Video, host.id()), "viewers may choose what they receive")
	_, _, err = viewer.c.Ping(ctx)
	require.NoError(t, err, "a refused request does not close the connection")

	err = part.c.EndMeeting(ctx)
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeForbidden})
	meetings, _ := rt.counts()
	require.Equal(t, 1, meetings)

	require.NoError(t, host.c.EndMeeting(ctx))
	for _, m := range []*member{host, part, viewer} {
		ended := m.ev.waitFor(t, "meeting-ended", isType(proto.TypeMeetingEnded)).(*proto.MeetingEnded)
		require.Equal(t, host.id(), ended.By)
		select {
		case <-m.c.Done():
		case <-time.After(waitLimit):
			t.Fatal("connection not closed after meeting-ended")
		}
	}
	require.Eventually(t, func() bool { m, p := rt.counts(); return m == 0 && p == 0 }, waitLimit, time.Millisecond)
	require.Zero(t, e.srv.Stats().Participants)
}

func TestSubscribe(t *testing.T) {
	rt := newFakeRouter()
	e := startServer(t, rt, nil)
	ctx := ctxT(t)
	a := e.join(t, "m", "a", token.Participant)
	b := e.join(t, "m", "b", token.Participant)
	other := e.join(t, "elsewhere", "o", token.Participant)

	f, _ := rt.filter(a.id(), media.Video)
	require.True(t, f.Includes(b.id()), "everything by default")
	require.NoError(t, a.c.Subscribe(ctx, media.Video, b.id()))
	f, _ = rt.filter(a.id(), media.Video)
	require.True(t, f.Includes(b.id()))
	require.False(t, f.Includes(other.id()))
	require.NoError(t, a.c.Unsubscribe(ctx, media.Video))
	f, _ = rt.filter(a.id(), media.Video)
	require.False(t, f.Includes(b.id()))
	require.NoError(t, a.c.Subscribe(ctx, media.Video))
	f, _ = rt.filter(a.id(), media.Video)
	require.True(t, f.Includes(b.id()))

	err := a.c.Subscribe(ctx, media.Audio, other.id())
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeUnknownPublisher}, "another meeting's participant")
}

func TestPingMeasuresRTT(t *testing.T) {
	e := startServer(t, newFakeRouter(), nil)
	a := e.join(t, "m", "a", token.Participant)
	// The server pings right after joined; the client's reader answers.
	require.Eventually(t, func() bool {
		rtt, server, err := a.c.Ping(ctxT(t))
		return err == nil && rtt > 0 && server > 0
	}, waitLimit, 5*time.Millisecond)
}

func TestLimits(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) { c.MaxParticipants = 2; c.MaxMeetings = 1 })
	e.join(t, "m", "a", token.Participant)
	e.join(t, "m", "b", token.Participant)

	t.Run("meeting full", func(t *testing.T) {
		r := e.raw(t)
		r.hello()
		r.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "c", token.Participant)})
		r.expectFatal(proto.CodeMeetingFull)
	})
	t.Run("server full", func(t *testing.T) {
		r := e.raw(t)
		r.hello()
		r.send(2, &proto.Join{Meeting: "n", Token: mint(t, "n", "c", token.Participant)})
		r.expectFatal(proto.CodeServerFull)
		meetings, _ := rt.counts()
		require.Equal(t, 1, meetings, "the refused meeting was not left on the router")
	})
}

func TestConnsPerIP(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), func(c *Config) { c.MaxConnsPerIP = 2 })
	e.raw(t).hello()
	e.raw(t).hello()
	// The third is closed before the TLS handshake completes.
	d := e.clientTLS(t)
	_, err := tlsDial(t, e.addr(), d)
	require.Error(t, err)
	require.Eventually(t, func() bool { return e.srv.Stats().Rejected == 1 }, waitLimit, time.Millisecond)
}

func TestCloseIsIdempotentAndEndsEverything(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) { c.Grace = time.Hour })
	a := e.join(t, "m", "a", token.Participant)
	e.join(t, "m", "b", token.Participant)
	e.join(t, "n", "c", token.Participant)
	require.NoError(t, a.c.Close()) // a is now in its (hour-long) grace period
	require.Eventually(t, func() bool { return e.srv.Stats().Conns == 2 }, waitLimit, time.Millisecond)

	require.NoError(t, e.srv.Close())
	require.NoError(t, e.srv.Close())
	meetings, parts := rt.counts()
	require.Zero(t, meetings)
	require.Zero(t, parts)
	st := e.srv.Stats()
	require.Zero(t, st.Conns)
	require.Zero(t, st.Participants)
	require.ErrorIs(t, e.srv.Start(), ErrServerClosed)
}
