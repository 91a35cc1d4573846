package control

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
)

// startRouter starts the real router on an ephemeral loopback UDP port.
// Registered before the control server, it is closed after it.
func startRouter(t testing.TB) *router.Router {
	t.Helper()
	rt, err := router.New(router.Config{
		UDP:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Shards: 1, Logger: quietLogger(), SocketBuffer: 256 << 10,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, rt.Close()) })
	return rt
}

// startE2E starts the real router and a control server advertising it.
func startE2E(t testing.TB, mod func(*Config)) (*router.Router, *env) {
	rt := startRouter(t)
	e := startServer(t, rt, func(c *Config) {
		c.Endpoints = UDPEndpoints(rt.UDPAddrs())
		if mod != nil {
			mod(c)
		}
	})
	return rt, e
}

// flow binds the member's UDP flow of kind k at the endpoint joined named,
// with the media token joined handed out.
func (m *member) flow(t testing.TB, k media.Kind) *udpmedia.Flow {
	t.Helper()
	tok, err := m.c.MediaToken()
	require.NoError(t, err)
	for _, ep := range m.j.Endpoints {
		if ep.Kind.Media() == k && ep.Transport == proto.TransportUDP {
			f, err := udpmedia.Dial(ctxT(t), ep.Addr, k, tok)
			require.NoError(t, err)
			t.Cleanup(func() { f.Close() })
			return f
		}
	}
	t.Fatalf("no UDP endpoint for %v in %+v", k, m.j.Endpoints)
	return nil
}

func rtpPacket(t testing.TB, ssrc uint32, seq uint16) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: ssrc},
		Payload: []byte("openmmr-e2e-payload")}
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

// receive reads RTP from f until n packets arrived or the hang guard fires,
// and returns their (SSRC, sequence) pairs.
func receive(t testing.TB, f *udpmedia.Flow, n int) [][2]uint32 {
	t.Helper()
	var got [][2]uint32
	buf := make([]byte, 1500)
	deadline := time.Now().Add(waitLimit)
	for len(got) < n {
		k, err := f.Recv(buf, deadline)
		if err != nil {
			break
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:k]) == nil && p.Version == 2 {
			got = append(got, [2]uint32{p.SSRC, uint32(p.SequenceNumber)})
		}
	}
	return got
}

// silent reports whether no RTP arrives on f for a short while. A packet
// forwarded by mistake would arrive within microseconds on loopback; the
// window only bounds how long the test looks.
func silent(f *udpmedia.Flow) bool {
	buf := make([]byte, 1500)
	_, err := f.Recv(buf, time.Now().Add(150*time.Millisecond))
	return err != nil
}

func sendRange(t testing.TB, f *udpmedia.Flow, ssrc uint32, from, to uint16) {
	for s := from; s < to; s++ {
		require.NoError(t, f.Send(rtpPacket(t, ssrc, s)))
	}
}

func seqs(ssrc uint32, from, to uint16) [][2]uint32 {
	var out [][2]uint32
	for s := from; s < to; s++ {
		out = append(out, [2]uint32{ssrc, uint32(s)})
	}
	return out
}

// TestE2E runs the whole control flow against the real router with real UDP
// media: two meetings, roles, tokens, and a resume during live media.
func TestE2E(t *testing.T) {
	noLeaks(t)
	rt, e := startE2E(t, func(c *Config) { c.Grace = time.Minute })
	ctx := ctxT(t)
	var d dropper
	a1 := e.join(t, "alpha", "a1", token.Host)
	a2 := e.join(t, "alpha", "a2", token.Participant, joinOpts{autoResume: true, dial: d.dial})
	a3 := e.join(t, "alpha", "a3", token.Viewer)
	b1 := e.join(t, "beta", "b1", token.Participant)
	b2 := e.join(t, "beta", "b2", token.Participant)
	require.Equal(t, 5, rt.Stats().Participants)
	require.Equal(t, 2, rt.Stats().Meetings)

	fa1, fa2, fa3 := a1.flow(t, media.Audio), a2.flow(t, media.Audio), a3.flow(t, media.Audio)
	fb1, fb2 := b1.flow(t, media.Audio), b2.flow(t, media.Audio)
	const sa1, sa2, sa3, sb1 = 0xa1, 0xa2, 0xa3, 0xb1
	require.NoError(t, a1.c.Publish(ctx, media.Audio, sa1))
	require.NoError(t, a2.c.Publish(ctx, media.Audio, sa2))
	require.NoError(t, b1.c.Publish(ctx, media.Audio, sb1))

	t.Run("media stays inside its meeting", func(t *testing.T) {
		sendRange(t, fa1, sa1, 1, 21)
		require.Equal(t, seqs(sa1, 1, 21), receive(t, fa2, 20))
		require.Equal(t, seqs(sa1, 1, 21), receive(t, fa3, 20), "the viewer receives")
		sendRange(t, fb1, sb1, 1, 21)
		require.Equal(t, seqs(sb1, 1, 21), receive(t, fb2, 20))
		for _, f := range []*udpmedia.Flow{fa1, fa2, fa3, fb1} {
			require.True(t, silent(f), "a packet crossed meetings or came back to its sender")
		}
	})

	t.Run("viewer cannot publish", func(t *testing.T) {
		err := a3.c.Publish(ctx, media.Audio, sa3)
		require.ErrorIs(t, err, &proto.Error{Code: proto.CodeForbidden})
		sendRange(t, fa3, sa3, 1, 6) // sent anyway: the router drops it
		require.True(t, silent(fa1))
		require.True(t, silent(fa2))
	})

	t.Run("resume keeps media and roster", func(t *testing.T) {
		before, _ := rt.ParticipantStats(router.ParticipantID(a2.id()))
		seen := map[*member]int{a1: len(a1.ev.all()), a3: len(a3.ev.all())}
		sendRange(t, fa1, sa1, 100, 110)
		d.drop() // a2's control connection dies
		sendRange(t, fa1, sa1, 110, 120)
		waitConn(t, a2, true)
		sendRange(t, fa1, sa1, 120, 130)
		require.Equal(t, seqs(sa1, 100, 130), receive(t, fa2, 30), "no packet lost across the reconnect")
		sendRange(t, fa2, sa2, 1, 11) // and a2 still sends
		require.Equal(t, seqs(sa2, 1, 11), receive(t, fa1, 10))
		after, _ := rt.ParticipantStats(router.ParticipantID(a2.id()))
		require.Greater(t, after.PacketsIn, before.PacketsIn, "same router participant")
		require.Equal(t, a2.id(), a2.c.Joined().Participant)
		for _, m := range []*member{a1, a3} {
			for _, ev := range m.ev.all()[seen[m]:] {
				switch ev := ev.(type) {
				case *proto.ParticipantLeft:
					t.Fatalf("roster churn: %+v", ev)
				case *proto.ParticipantJoined:
					require.NotEqual(t, a2.id(), ev.Participant.ID, "roster churn")
				}
			}
		}
	})

	t.Run("forged and expired tokens", func(t *testing.T) {
		before := rt.Stats().Participants
		for _, tc := range []struct {
			tok, code string
		}{
			{mintWith(t, []byte("not-the-server-secret!!"), "alpha", "mallory", token.Host, time.Now().Add(time.Hour)), proto.CodeTokenInvalid},
			{mintWith(t, testSecret, "alpha", "late", token.Participant, time.Now().Add(-time.Minute)), proto.CodeTokenExpired},
		} {
			c, err := ctlclient.Dial(ctx, e.addr(), ctlclient.Config{TLS: e.clientTLS(t), Logger: quietLogger()})
			require.NoError(t, err)
			_, err = c.Join(ctx, "alpha", tc.tok, "")
			require.ErrorIs(t, err, &proto.Error{Code: tc.code})
			<-c.Done()
			require.NoError(t, c.Close())
		}
		require.Equal(t, before, rt.Stats().Participants)
	})

	t.Run("host ends the meeting", func(t *testing.T) {
		require.NoError(t, a1.c.EndMeeting(ctx))
		for _, m := range []*member{a2, a3} {
			m.ev.waitFor(t, "meeting-ended", isType(proto.TypeMeetingEnded))
		}
		require.Equal(t, 1, rt.Stats().Meetings, "beta goes on")
		sendRange(t, fb1, sb1, 50, 55)
		require.Equal(t, seqs(sb1, 50, 55), receive(t, fb2, 5))
	})
}

// TestThousandJoinLeave: 1,000 participants in 100 meetings join and leave;
// afterwards no goroutine or file descriptor is left over.
func TestThousandJoinLeave(t *testing.T) {
	noLeaks(t)
	const n, meetings, workers = 1000, 100, 8
	rt, e := startE2E(t, nil)
	g0, fd0 := runtime.NumGoroutine(), openFDs()
	clients := make([]*ctlclient.Client, n)
	parallel(t, n, workers, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := ctlclient.Dial(ctx, e.addr(), ctlclient.Config{TLS: e.clientTLS(t), Logger: quietLogger()})
		if err != nil {
			return err
		}
		clients[i] = c
		m := fmt.Sprintf("m%03d", i%meetings)
		_, err = c.Join(ctx, m, mint(t, m, fmt.Sprint("user", i), token.Participant), "")
		return err
	})
	st := e.srv.Stats()
	require.Equal(t, n, st.Participants)
	require.Equal(t, meetings, st.Meetings)
	require.Equal(t, n, rt.Stats().Participants)
	require.Equal(t, meetings, rt.Stats().Meetings)

	parallel(t, n, workers, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return clients[i].Leave(ctx)
	})
	require.Zero(t, rt.Stats().Participants)
	require.Zero(t, rt.Stats().Meetings)
	deadline := time.Now().Add(waitLimit)
	for (runtime.NumGoroutine() > g0 || openFDs() > fd0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), g0, "goroutines left after 1,000 join/leave")
	require.LessOrEqual(t, openFDs(), fd0, "descriptors left after 1,000 join/leave")
	require.Zero(t, e.srv.Stats().Conns)
}

// parallel runs f(0..n-1) on workers goroutines and fails on the first error.
func parallel(t testing.TB, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, n)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- fmt.Errorf("#%d: %w", i, err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// TestBehindEdge: the control server behind the shared port 443 front end
// (package edge), which terminates TLS and routes by ALPN.
func TestBehindEdge(t *testing.T) {
	noLeaks(t)
	_, e := startE2E(t, nil)
	ln, err := edge.Listen("127.0.0.1:0", "-control")
	require.NoError(t, err)
	front, err := edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(testCert(t)), Logger: quietLogger()})
	require.NoError(t, err)
	front.Handle(proto.ALPN, e.srv.HandleConn)
	front.Handle("media/1", func(c net.Conn) { c.Close() })
	served := make(chan error, 1)
	go func() { served <- front.Serve() }()
	t.Cleanup(func() {
		front.Close()
		require.NoError(t, <-served)
	})

	behind := &env{srv: e.srv, fp: e.fp}
	addr := front.Addr().String()
	c, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: behind.clientTLS(t), Logger: quietLogger()})
	require.NoError(t, err)
	defer c.Close()
	j, err := c.Join(ctxT(t), "m", mint(t, "m", "ann", token.Host), "")
	require.NoError(t, err)
	require.NotZero(t, j.Participant)
	require.Len(t, j.Endpoints, 3)
	_, _, err = c.Ping(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, 1, e.srv.Stats().Participants)
}
