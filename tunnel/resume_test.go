package tunnel

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
)

// TestResumeThroughAnotherTunnel: Bob's control channel runs through a
// tunnel Session over two tunnel servers (a real router and control
// server behind them); Ann is connected directly. The tunnel Bob uses
// leaves (Shutdown, close 1012): Bob's client auto-resumes through the
// other tunnel as the same participant, and Ann sees no leave.
func TestResumeThroughAnotherTunnel(t *testing.T) {
	leaktest.Check(t)
	quiet := slog.New(slog.DiscardHandler)
	rt, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quiet, SocketBuffer: 256 << 10})
	require.NoError(t, err)
	defer rt.Close()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ctl, err := control.New(control.Config{Addr: "127.0.0.1:0", TLS: tlsutil.ServerConfig(cert), Secret: testSecret, Logger: quiet,
		Endpoints: control.UDPEndpoints(rt.UDPAddrs())}, rt)
	require.NoError(t, err)
	require.NoError(t, ctl.Start())
	defer ctl.Close()
	ctlAddr := ctl.Addr().String()
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	a := startServer(t, Config{Name: "a", Zones: []string{ctlAddr}})
	b := startServer(t, Config{Name: "b", Zones: []string{ctlAddr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const meeting = "1234567890"

	var mu sync.Mutex
	var annSaw []proto.Message
	ann, err := ctlclient.Dial(ctx, ctlAddr, ctlclient.Config{TLS: pin, Logger: quiet, OnEvent: func(m proto.Message) {
		mu.Lock()
		annSaw = append(annSaw, m)
		mu.Unlock()
	}})
	require.NoError(t, err)
	defer ann.Close()
	_, err = ann.Join(ctx, meeting, mint(t, testSecret, "ann", time.Hour), "Ann")
	require.NoError(t, err)

	sess := (&Dialer{Token: mint(t, testSecret, "bob", time.Hour)}).NewSession([]Endpoint{a.ep, b.ep})
	resumed := make(chan struct{}, 1)
	bob, err := ctlclient.Dial(ctx, ctlAddr, ctlclient.Config{TLS: pin, Logger: quiet, Dial: sess.DialContext, AutoResume: true,
		OnConnection: func(e ctlclient.ConnEvent) {
			if e.Up {
				resumed <- struct{}{}
			}
		}})
	require.NoError(t, err)
	defer bob.Close()
	jb, err := bob.Join(ctx, meeting, mint(t, testSecret, "bob", time.Hour), "Bob")
	require.NoError(t, err)
	waitFor(t, "Ann sees Bob", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range annSaw {
			if j, ok := m.(*proto.ParticipantJoined); ok && j.Participant.ID == jb.Participant {
				return true
			}
		}
		return false
	})

	used, other := a, b
	if sess.Current().Endpoint.URL == b.ep.URL {
		used, other = b, a
	}
	start := time.Now()
	require.NoError(t, used.Shutdown(ctx))
	select {
	case <-resumed:
	case <-ctx.Done():
		t.Fatal("Bob did not resume through the other tunnel")
	}
	t.Logf("back in the meeting %v after the tunnel left", time.Since(start))
	require.Equal(t, other.ep.URL, sess.Current().Endpoint.URL)
	require.Equal(t, jb.Participant, bob.Joined().Participant, "the same participant")
	_, _, err = bob.Ping(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), other.Stats().Opened)
	require.Equal(t, uint64(1), used.Stats().Ended[EndLeaving])
	mu.Lock()
	for _, m := range annSaw {
		_, left := m.(*proto.ParticipantLeft)
		require.False(t, left, "Ann saw a leave")
	}
	mu.Unlock()
	require.NoError(t, bob.Leave(ctx))
}
