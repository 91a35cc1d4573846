package control

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/stretchr/testify/require"
)

// dropper is a client dialer whose connections the test can cut, as a
// network failure would.
type dropper struct {
	mu   sync.Mutex
	last net.Conn
	n    int
}

func (d *dropper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.last, d.n = c, d.n+1
		d.mu.Unlock()
	}
	return c, err
}

// drop closes the latest connection.
func (d *dropper) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last.Close()
}

func (d *dropper) dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

func waitConn(t *testing.T, m *member, up bool) ctlclient.ConnEvent {
	t.Helper()
	for {
		select {
		case ev := <-m.connEv:
			if ev.Up == up {
				return ev
			}
		case <-time.After(waitLimit):
			t.Fatalf("no connection event up=%v", up)
		}
	}
}

func TestAutoResumeKeepsParticipant(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) { c.Grace = time.Minute })
	var d dropper
	a := e.join(t, "m", "a", token.Participant, joinOpts{autoResume: true, dial: d.dial})
	b := e.join(t, "m", "b", token.Participant)
	ctx := ctxT(t)
	require.NoError(t, a.c.Publish(ctx, media.Audio, 5))
	b.ev.waitFor(t, "a's audio", isType(proto.TypeStreamAdded))
	tokBefore, err := a.c.MediaToken()
	require.NoError(t, err)

	d.drop()
	waitConn(t, a, false)
	waitConn(t, a, true)
	require.Equal(t, 2, d.dials(), "one reconnect")

	j := a.c.Joined()
	require.Equal(t, a.id(), j.Participant, "same participant")
	tokAfter, err := a.c.MediaToken()
	require.NoError(t, err)
	require.Equal(t, tokBefore, tokAfter, "same media token, so the UDP flows stay bound")
	require.NotEqual(t, a.j.Resume, j.Resume, "the resume credential rotates")
	require.Len(t, j.Roster, 1)
	require.NoError(t, a.c.Publish(ctx, media.Video, 6), "requests work on the new connection")
	b.ev.waitFor(t, "a's video", func(m proto.Message) bool {
		sa, ok := m.(*proto.StreamAdded)
		return ok && sa.Kind.Media() == media.Video
	})
	for _, m := range b.ev.all() {
		require.NotContains(t, []string{proto.TypeParticipantLeft, proto.TypeStreamRemoved}, m.Type(), "no roster churn")
		if pj, ok := m.(*proto.ParticipantJoined); ok {
			require.NotEqual(t, a.id(), pj.Participant.ID, "no roster churn")
		}
	}
	require.Equal(t, []uint32{5}, rt.published(a.id(), media.Audio))
	require.Equal(t, uint64(1), e.srv.Stats().Resumes)

	// The old credential is dead.
	r := e.raw(t)
	r.hello()
	r.send(2, &proto.Resume{Participant: a.id(), Credential: a.j.Resume})
	r.expectFatal(proto.CodeResumeFailed)
}

func TestResumeTakesOverLiveConnection(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	a := e.join(t, "m", "a", token.Participant)
	b := e.join(t, "m", "b", token.Participant)
	// The server still thinks a's first connection is fine (a half-open
	// connection after a network change); a resume replaces it.
	rs, err := a.c.Resume(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, a.id(), rs.Participant)
	_, _, err = a.c.Ping(ctxT(t))
	require.NoError(t, err)
	require.Never(t, func() bool { return len(b.ev.all()) > 0 }, 100*time.Millisecond, 10*time.Millisecond, "b saw churn")
}

func TestResumeRefused(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	a := e.join(t, "m", "a", token.Participant)
	wrong := []byte(a.j.Resume)
	// Still 64 hex digits, one digit off ('a'^1 or 'f'^1 would not be hex).
	if wrong[0] == '0' {
		wrong[0] = '1'
	} else {
		wrong[0] = '0'
	}
	tests := []struct {
		name string
		msg  *proto.Resume
	}{
		{"wrong credential", &proto.Resume{Participant: a.id(), Credential: string(wrong)}},
		{"unknown participant", &proto.Resume{Participant: a.id() + 100, Credential: a.j.Resume}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			r.hello()
			r.send(2, tc.msg)
			r.expectFatal(proto.CodeResumeFailed)
		})
	}
	_, _, err := a.c.Ping(ctxT(t))
	require.NoError(t, err, "failed resumes do not disturb the participant")
}

func TestGraceExpiry(t *testing.T) {
	noLeaks(t)
	rt := newFakeRouter()
	e := startServer(t, rt, func(c *Config) { c.Grace = 50 * time.Millisecond })
	a := e.join(t, "m", "a", token.Participant)
	b := e.join(t, "m", "b", token.Participant)
	require.NoError(t, a.c.Publish(ctxT(t), media.Audio, 5))
	b.ev.waitFor(t, "a's audio", isType(proto.TypeStreamAdded))
	require.NoError(t, a.c.Close()) // drop without leave
	b.ev.waitFor(t, "a's audio removed", isType(proto.TypeStreamRemoved))
	left := b.ev.waitFor(t, "a left", isType(proto.TypeParticipantLeft)).(*proto.ParticipantLeft)
	require.Equal(t, a.id(), left.Participant)
	require.Equal(t, proto.ReasonTimeout, left.Reason)
	require.Equal(t, uint64(1), e.srv.Stats().GraceExpired)
	_, parts := rt.counts()
	require.Equal(t, 1, parts)

	r := e.raw(t)
	r.hello()
	r.send(2, &proto.Resume{Participant: a.id(), Credential: a.j.Resume})
	r.expectFatal(proto.CodeResumeFailed)
}
