package web

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/protect/keys"
)

// TestE2EEMeetings: the meetings API creates end-to-end encrypted meetings
// (fixed at creation, never webinars), shows the flag, and the lookup
// says e2ee and mints a version 3 token with the E2EE flag, which makes an
// E2EE meeting on the real control server; a Standard meeting's token is
// version 3 without the flag.
func TestE2EEMeetings(t *testing.T) {
	leaktest.Check(t)
	ctl, pin := startControl(t)

	e := newEnv(t, "", testSite())
	c := e.client(t, "")
	sec := e.createMeeting(t, map[string]any{"topic": "Board", "e2ee": true, "passcode": ""})
	require.True(t, sec.E2EE)
	std := e.createMeeting(t, map[string]any{"topic": "Weekly", "passcode": ""})
	require.False(t, std.E2EE, "the default is Standard")
	a := e.do(t, c, "GET", "/v1/meetings/"+sec.ID, e.key, nil)
	require.Equal(t, http.StatusOK, a.status)
	var got meetingJSON
	a.decode(t, &got)
	require.True(t, got.E2EE)

	for name, tc := range map[string]struct {
		method, path string
		body         map[string]any
	}{
		"an E2EE webinar":              {"POST", "/v1/meetings", map[string]any{"type": "webinar", "e2ee": true}},
		"e2ee changed on update":       {"PATCH", "/v1/meetings/" + std.ID, map[string]any{"e2ee": true}},
		"e2ee turned off on update":    {"PATCH", "/v1/meetings/" + sec.ID, map[string]any{"e2ee": false}},
		"an E2EE meeting made webinar": {"PATCH", "/v1/meetings/" + sec.ID, map[string]any{"type": "webinar"}},
		"e2ee not a bool":              {"POST", "/v1/meetings", map[string]any{"e2ee": "yes"}},
	} {
		t.Run(name, func(t *testing.T) {
			a := e.do(t, c, tc.method, tc.path, e.key, tc.body)
			require.Equal(t, http.StatusBadRequest, a.status, string(a.body))
		})
	}
	a = e.do(t, c, "GET", "/v1/meetings/"+sec.ID, e.key, nil)
	a.decode(t, &got)
	require.True(t, got.E2EE, "still E2EE")
	require.Equal(t, "meeting", got.Type)

	v, err := token.NewVerifier(testSecret)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, m := range []meetingJSON{sec, std} {
		a, l := e.lookup(t, c, map[string]any{"meeting_id": m.ID, "name": "Ann"})
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		require.Equal(t, m.E2EE, l.Meeting.E2EE, "the lookup tells the client to expect E2EE")
		claims, err := v.Verify(l.JoinToken, time.Now())
		require.NoError(t, err)
		require.Equal(t, token.Version3, claims.Version)
		require.Equal(t, m.E2EE, claims.E2EE)

		// The token joins the control channel in the meeting's mode.
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		require.NoError(t, err)
		j := rawJoin(ctx, t, ctl.Addr().String(), pin, &proto.Join{Meeting: l.Meeting.ID, Token: l.JoinToken,
			E2EEPublicKey: keys.PublicKeyHex(priv.PublicKey().Bytes())})
		want := proto.ProtectionStandard
		if m.E2EE {
			want = proto.ProtectionE2EE
		}
		require.Equal(t, want, j.MediaProtection)
		require.Equal(t, l.Identity, j.Identity)
	}
}

// rawJoin speaks hello and join over TLS and returns the joined answer
// (the Go control client has no public-key field to send).
func rawJoin(ctx context.Context, t *testing.T, addr string, tc *tls.Config, j *proto.Join) *proto.Joined {
	t.Helper()
	d := tls.Dialer{Config: tc}
	nc, err := d.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(20*time.Second)))
	fr := proto.NewFrameReader(nc, proto.ClientMaxFrame)
	send := func(id uint32, m proto.Message) {
		b, err := proto.Encode(id, m)
		require.NoError(t, err)
		_, err = nc.Write(b)
		require.NoError(t, err)
	}
	send(1, &proto.Hello{Versions: []int{proto.Version}})
	send(2, j)
	for {
		p, err := fr.Next()
		require.NoError(t, err)
		_, m, err := proto.Decode(p)
		require.NoError(t, err)
		switch m := m.(type) {
		case *proto.Joined:
			return m
		case *proto.Error:
			t.Fatalf("join refused: %s: %s", m.Code, m.Message)
		}
	}
}
