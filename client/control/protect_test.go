package control_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
)

// TestJoinProtection: a Standard join carries a public key and gets a
// State; keys, roster and resumes reach it; a client told the meeting is
// E2EE refuses a Standard joined and leaves.
func TestJoinProtection(t *testing.T) {
	noLeaks(t)
	addr := realServer(t)
	ctx := ctxT(t)
	ann, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
	require.NoError(t, err)
	defer ann.Close()
	j, err := ann.Join(ctx, "m1", mint(t, "m1", "ann@example.org", token.Host), "")
	require.NoError(t, err)
	require.Equal(t, proto.ProtectionStandard, j.MediaProtection)
	st := ann.Media()
	require.NotNil(t, st)
	require.Equal(t, protect.KeyID(j.MediaKey.KeyID), st.Info().SendKey)

	// bob joins: the server re-keys (media-key) and ann opens bob's media.
	bob, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
	require.NoError(t, err)
	defer bob.Close()
	_, err = bob.Join(ctx, "m1", mint(t, "m1", "bob@example.org", token.Participant), "")
	require.NoError(t, err)
	require.NoError(t, bob.Publish(ctx, media.Audio, 0xb0b))
	require.Eventually(t, func() bool { return st.Stats().KeysInstalled >= 2 }, waitLimit, 10*time.Millisecond, "no media-key after a join")
	require.Eventually(t, func() bool { return bob.Media().Info().SendKey == ann.Media().Info().SendKey }, waitLimit, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		p, err := bob.Media().SealRTP(nil, []byte{0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0x0b, 0x0b, 1, 2, 3, 4})
		require.NoError(t, err)
		_, err = st.OpenRTP(nil, p)
		return err == nil // once ann knows bob's stream (stream-added)
	}, waitLimit, 10*time.Millisecond)

	// A resume gives ann's State the fresh RTCP secret.
	before := ann.Joined().RTCPSecret
	_, err = ann.Resume(ctx)
	require.NoError(t, err)
	require.NotEqual(t, before, ann.Joined().RTCPSecret)
	require.Same(t, st, ann.Media(), "a resume keeps the State")

	// Told E2EE, joined Standard: refused, and the participant is gone.
	eve, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet(), E2EE: true})
	require.NoError(t, err)
	defer eve.Close()
	_, err = eve.Join(ctx, "m1", mint(t, "m1", "eve@example.org", token.Participant), "")
	require.ErrorIs(t, err, secure.ErrDowngrade)
	require.Nil(t, eve.Media())
}

// TestE2EEWrapsRelayed: two clients of an E2EE meeting key themselves
// through the real server's e2ee-key relay and agree on the code.
func TestE2EEWrapsRelayed(t *testing.T) {
	noLeaks(t)
	addr := realServer(t)
	ctx := ctxT(t)
	var clients []*ctlclient.Client
	for i, who := range []string{"ann@example.org", "bob@example.org"} {
		role := token.Participant
		if i == 0 {
			role = token.Host
		}
		c, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet(), E2EE: true})
		require.NoError(t, err)
		defer c.Close()
		j, err := c.Join(ctx, "e1", mintClaims(t, token.Claims{Meeting: "e1", Identity: who, Role: role, E2EE: true}), "")
		require.NoError(t, err)
		require.Equal(t, proto.ProtectionE2EE, j.MediaProtection)
		require.Nil(t, j.MediaKey, "the server gave an E2EE participant a media key")
		clients = append(clients, c)
	}
	require.Eventually(t, func() bool {
		a, b := clients[0].Media().Info(), clients[1].Media().Info()
		return a.SendKey != 0 && a == b && a.Members == 2
	}, waitLimit, 10*time.Millisecond)
	// Counted after the send returns, so possibly after bob installed it.
	require.Eventually(t, func() bool { return clients[0].Media().Stats().WrapsSent > 0 }, waitLimit, 10*time.Millisecond)
	require.NotEmpty(t, clients[0].Media().Info().Code)
}
