package router

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
)

// transport sends and receives one media kind, over any transport.
type transport interface {
	Send([]byte) error
	Recv([]byte, time.Time) (int, error)
	Close() error
}

// tlsMedia serves TLS media streams for r the way the control listener
// does: TLS, then ServeStream. It returns the address and a pinned client
// configuration.
func tlsMedia(t *testing.T, r *Router) (netip.AddrPort, *tls.Config) {
	t.Helper()
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsutil.ServerConfig(cert))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.ServeStream(c)
		}
	}()
	cfg, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	return addrPortOf(ln.Addr()), cfg
}

// joinStream adds a participant whose three flows are streams.
func joinStream(t testing.TB, r *Router, meeting string, n int, addr netip.AddrPort, tlsConf *tls.Config) (*member, [media.NumKinds]*streammedia.Flow) {
	t.Helper()
	info, err := r.AddParticipant(meeting, ParticipantOptions{})
	require.NoError(t, err)
	m := &member{info: info}
	var flows [media.NumKinds]*streammedia.Flow
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range media.Kinds {
		f, err := streammedia.Dial(ctx, addr, k, info.Token, tlsConf)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		flows[k.Index()] = f
		m.ssrc[k.Index()] = uint32(n)<<8 | uint32(k)
		require.NoError(t, r.Publish(info.ID, k, m.ssrc[k.Index()]))
	}
	return m, flows
}

func TestMixedTransportsByteExact(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	tlsAddr, tlsConf := tlsMedia(t, r)
	u := join(t, r, "m", 1)
	tc, tcpFlows := joinStream(t, r, "m", 2, r.TCPAddrs()[0], nil)
	tl, tlsFlows := joinStream(t, r, "m", 3, tlsAddr, tlsConf)
	type party struct {
		m     *member
		flows [media.NumKinds]transport
	}
	var ps []party
	var uf, tf, lf [media.NumKinds]transport
	for i := range media.Kinds {
		uf[i], tf[i], lf[i] = u.flows[i], tcpFlows[i], tlsFlows[i]
	}
	ps = append(ps, party{u, uf}, party{tc, tf}, party{tl, lf})
	const perKind = 25
	sent := map[int][media.NumKinds][][]byte{}
	for pi, p := range ps {
		var s [media.NumKinds][][]byte
		for _, k := range media.Kinds {
			for i := 0; i < perKind; i++ {
				pkt := p.m.rtpPacket(t, k, 100+i*47)
				s[k.Index()] = append(s[k.Index()], pkt)
				require.NoError(t, p.flows[k.Index()].Send(pkt))
			}
		}
		sent[pi] = s
	}
	names := []string{"udp", "tcp", "tls"}
	for pi, p := range ps {
		for _, k := range media.Kinds {
			t.Run(names[pi]+"/"+k.String(), func(t *testing.T) {
				var want [][]byte
				for oi := range ps {
					if oi != pi {
						want = append(want, sent[oi][k.Index()]...)
					}
				}
				got := recvAll(p.flows[k.Index()], len(want), 5*time.Second)
				sortBytes(want)
				sortBytes(got)
				require.Equal(t, want, got)
			})
		}
	}
	require.Zero(t, r.Stats().Dropped())
}

func TestStreamBadInput(t *testing.T) {
	r := newTestRouter(t, func(c *Config) { c.BindTimeout = 200 * time.Millisecond; c.MaxStreamsPerIP = 3 })
	addr := r.TCPAddrs()[0]
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 16))
		return err != nil
	}
	for _, tc := range []struct {
		name   string
		write  []byte
		reason stats.DropReason
	}{
		{"impossible length", []byte{0xff, 0xff, 1, 2, 3}, stats.DropStreamFrame},
		{"zero length", []byte{0, 0}, stats.DropStreamFrame},
		{"not a bind", []byte{0, 4, 0x80, 96, 0, 1}, stats.DropStreamBind},
		{"silent", nil, stats.DropStreamBind},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Stats().Drops[tc.reason]
			c := dial()
			if tc.write != nil {
				_, err := c.Write(tc.write)
				require.NoError(t, err)
			}
			require.True(t, closed(c), "the router closes the stream")
			require.Eventually(t, func() bool { return r.Stats().Drops[tc.reason] == before+1 }, 2*time.Second, 5*time.Millisecond)
		})
	}
	// Per-IP limit: 3 silent connections are held, the 4th is refused.
	before := r.Stats().Drops[stats.DropStreamLimit]
	for i := 0; i < 3; i++ {
		dial()
	}
	require.True(t, closed(dial()))
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropStreamLimit] >= before+1 }, 2*time.Second, 5*time.Millisecond)
}

// TestStuckStreamSubscriber: one TCP subscriber never reads. Every other
// subscriber (UDP and TCP) gets every packet, the router's queue for the
// stuck one stays within its budget, and it is disconnected after the stall
// timeout.
func TestStuckStreamSubscriber(t *testing.T) {
	const budget = DefaultStreamQueue
	r := newTestRouter(t, func(c *Config) {
		c.StreamQueue = budget
		c.StallTimeout = 700 * time.Millisecond
	})
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1)
	udpSub := join(t, r, "m", 2)
	_, tcpSub := joinStream(t, r, "m", 3, r.TCPAddrs()[0], nil)
	v := media.Video.Index()
	// The stuck peer never reads; its receive window is kept small so the
	// kernel buffers between it and the router's queue hold ~0.3 MB.
	stuck := stuckStream(t, r, media.Video, 4)
	const n = 1500 // 1.8 MB: more than the kernel buffers and the queue
	var peakQueued int64
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0 := ms.HeapInuse
	require.NoError(t, udpSub.flows[v].Conn().SetReadBuffer(8<<20))
	udpGot, tcpGot := make(chan int, 1), make(chan int, 1)
	go func() { udpGot <- len(recvAll(udpSub.flows[v], n, 20*time.Second)) }()
	go func() { tcpGot <- len(recvAll(tcpSub[v], n, 20*time.Second)) }()
	for i := 0; i < n; i++ {
		require.NoError(t, pub.flows[v].Send(pub.rtpPacket(t, media.Video, 1200)))
		if q := mustParticipant(t, r, stuck.info.ID).Queued.Load(); q > peakQueued {
			peakQueued = q
		}
		if i%4 == 0 {
			time.Sleep(time.Millisecond) // ~5 MB/s, a few hundred video streams' worth
		}
	}
	require.Equal(t, n, <-udpGot, "the UDP subscriber gets 100%")
	require.Equal(t, n, <-tcpGot, "the healthy TCP subscriber gets 100%")
	require.LessOrEqual(t, peakQueued, int64(budget), "queue bounded by its budget")
	runtime.ReadMemStats(&ms)
	t.Logf("stuck subscriber: peak queued %d bytes (budget %d), heap growth %d KiB", peakQueued, budget, (int64(ms.HeapInuse)-int64(heap0))>>10)
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropSlowSubscriber] >= 1 }, 5*time.Second, 10*time.Millisecond, "stuck subscriber disconnected")
	st, err := r.ParticipantStats(stuck.info.ID)
	require.NoError(t, err)
	require.NotZero(t, st.Drops[stats.DropQueueFull], "its overflow was counted")
	// The drop is counted before the stream's flow is unbound: wait for both.
	require.Eventually(t, func() bool {
		_, bound := r.Bound(stuck.info.ID, media.Video)
		return !bound
	}, 5*time.Second, 10*time.Millisecond, "its flow is unbound")
}

func mustParticipant(t *testing.T, r *Router, id ParticipantID) *participantView {
	p, ok := r.reg.Get(uint64(id))
	require.True(t, ok)
	return &participantView{Queued: &p.Queued}
}

type participantView struct {
	Queued interface{ Load() int64 }
}

// stuckStream joins a participant whose kind-k flow is a TCP stream with a
// 16 KiB receive buffer that is never read.
func stuckStream(t *testing.T, r *Router, k media.Kind, n int) *member {
	t.Helper()
	info, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	c, err := d.Dial("tcp", r.TCPAddrs()[0].String())
	require.NoError(t, err)
	f, err := streammedia.Bind(t.Context(), c, k, info.Token)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return &member{info: info}
}

// TestRTCPOverStream: feedback from a TCP subscriber reaches the UDP
// publisher it names, and the publisher's sender report reaches the TCP
// subscriber, framed.
func TestRTCPOverStream(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1)
	sub, flows := joinStream(t, r, "m", 2, r.TCPAddrs()[0], nil)
	v := media.Video.Index()
	fb := pli(sub.ssrc[v], pub.ssrc[v])
	require.NoError(t, flows[v].Send(fb))
	require.Equal(t, [][]byte{fb}, recvAll(pub.flows[v], 1, 3*time.Second))
	rep := sr(pub.ssrc[v])
	require.NoError(t, pub.flows[v].Send(rep))
	require.Equal(t, [][]byte{rep}, recvAll(flows[v], 1, 3*time.Second))
}

// TestTLSStreamsPerIPLimit: media streams over TLS (the control port's
// listener calling ServeStream) have the same per-address cap as TCP 8801.
func TestTLSStreamsPerIPLimit(t *testing.T) {
	leaktest.Check(t)
	r := newTestRouter(t, func(c *Config) { c.MaxStreamsPerIP = 4; c.BindTimeout = time.Minute })
	addr, cli := tlsMedia(t, r)
	var conns []*tls.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr.String(), cli)
		require.NoError(t, err)
		conns = append(conns, c)
		return c
	}
	for range 4 {
		dial() // silent: held until the bind timeout
	}
	require.Eventually(t, func() bool { return r.Stats().Streams == 4 }, 10*time.Second, 5*time.Millisecond)
	// The fifth is closed at once: in its handshake, or at its first read.
	c, err := tls.Dial("tcp", addr.String(), cli)
	if err == nil {
		conns = append(conns, c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF)
	}
	require.Error(t, err, "the fifth stream from one address is closed")
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropStreamLimit] == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, 4, r.Stats().Streams)
}
