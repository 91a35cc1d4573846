package router

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// sMember is a test participant with an RTCP secret: its client side
// SRTCP contexts, one per kind, as a client builds them from joined.
type sMember struct {
	*member
	secret [32]byte
	rtcp   [media.NumKinds]*protect.RTCPFlow
}

func newSecret(t testing.TB) *[32]byte {
	var s [32]byte
	_, err := rand.Read(s[:])
	require.NoError(t, err)
	return &s
}

// clientRTCP returns the client side SRTCP contexts of participant id.
func clientRTCP(t testing.TB, secret *[32]byte, id ParticipantID) [media.NumKinds]*protect.RTCPFlow {
	var out [media.NumKinds]*protect.RTCPFlow
	for i, k := range media.Kinds {
		f, err := protect.NewRTCPFlow(secret[:], uint64(id), k, protect.ClientSide, 0)
		require.NoError(t, err)
		out[i] = f
	}
	return out
}

// joinSecret is join with an RTCP secret.
func joinSecret(t testing.TB, r *Router, meeting string, n int) *sMember {
	t.Helper()
	secret := newSecret(t)
	m := joinWith(t, r, meeting, n, ParticipantOptions{Name: fmt.Sprint("p", n), RTCPSecret: secret})
	return &sMember{member: m, secret: *secret, rtcp: clientRTCP(t, secret, m.info.ID)}
}

// seal protects an RTCP datagram as m's client does (direction 1).
func (m *sMember) seal(t testing.TB, k media.Kind, plain []byte) []byte {
	out, err := m.rtcp[k.Index()].Seal(nil, plain)
	require.NoError(t, err)
	return out
}

// recvOpen receives one datagram on m's flow of kind k and opens it with
// the client's direction-2 context; it also returns the ciphertext.
func (m *sMember) recvOpen(t testing.TB, k media.Kind) (plain, wire []byte) {
	t.Helper()
	got := recvAll(m.flows[k.Index()], 1, 5*time.Second)
	require.Len(t, got, 1, "participant %d received nothing", m.info.ID)
	plain, err := m.rtcp[k.Index()].Open(nil, got[0])
	require.NoError(t, err, "the router sealed it with this flow's direction-2 key")
	return plain, got[0]
}

func dropsOf(t testing.TB, r *Router, id ParticipantID, reason stats.DropReason) uint64 {
	st, err := r.ParticipantStats(id)
	require.NoError(t, err)
	return st.Drops[reason]
}

// TestSRTCPRouting: over real UDP, the router opens each client's SRTCP
// with that flow's direction-1 key, routes the plaintext by the RTCP
// rules, and sends each destination the same RTCP sealed with its own
// direction-2 key (its own ciphertext); a destination without a secret
// gets plain RTCP, and plain RTCP from it is sealed for protected ones.
func TestSRTCPRouting(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b, c := joinSecret(t, r, "m", 1), joinSecret(t, r, "m", 2), joinSecret(t, r, "m", 3)
	gw := join(t, r, "m", 4) // no RTCP secret: plain RTCP
	v := media.Video

	// c asks a (the publisher) for a keyframe: only a gets it, sealed for a.
	fb := pli(c.ssrc[v.Index()], a.ssrc[v.Index()])
	sent := c.seal(t, v, fb)
	require.NoError(t, c.flows[v.Index()].Send(sent))
	plain, wire := a.recvOpen(t, v)
	require.Equal(t, fb, plain)
	require.NotEqual(t, sent, wire, "a gets its own ciphertext, not c's")
	require.True(t, quiet(b.flows[v.Index()], 100*time.Millisecond), "feedback goes to the publisher only")

	// a's sender report reaches b, c (each sealed for itself) and the
	// gateway (plain).
	rep := sr(a.ssrc[v.Index()])
	require.NoError(t, a.flows[v.Index()].Send(a.seal(t, v, rep)))
	pb, wb := b.recvOpen(t, v)
	pc, wc := c.recvOpen(t, v)
	require.Equal(t, rep, pb)
	require.Equal(t, rep, pc)
	require.NotEqual(t, wb, wc, "each destination its own ciphertext")
	require.Equal(t, [][]byte{rep}, recvAll(gw.flows[v.Index()], 1, 5*time.Second), "plain for a flow without secret")

	// The gateway's plain report reaches a sealed.
	gfb := rr(gw.ssrc[v.Index()], a.ssrc[v.Index()])
	require.NoError(t, gw.flows[v.Index()].Send(gfb))
	plain, _ = a.recvOpen(t, v)
	require.Equal(t, gfb, plain)

	// Audio has its own keys: a video context cannot open audio RTCP.
	au := media.Audio
	arep := sr(a.ssrc[au.Index()])
	require.NoError(t, a.flows[au.Index()].Send(a.seal(t, au, arep)))
	got := recvAll(b.flows[au.Index()], 1, 5*time.Second)
	require.Len(t, got, 1)
	_, err := b.rtcp[v.Index()].Open(nil, got[0])
	require.ErrorIs(t, err, protect.ErrAuth)
	plain, err = b.rtcp[au.Index()].Open(nil, got[0])
	require.NoError(t, err)
	require.Equal(t, arep, plain)
}

// TestSRTCPDrops: a tampered, replayed, plain or otherwise keyed SRTCP
// datagram from a protected flow is dropped, counted by reason (router
// and participant), and reaches nobody.
func TestSRTCPDrops(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b := joinSecret(t, r, "m", 1), joinSecret(t, r, "m", 2)
	v := media.Video
	rep := sr(a.ssrc[v.Index()])
	good := a.seal(t, v, rep)
	require.NoError(t, a.flows[v.Index()].Send(good))
	p, _ := b.recvOpen(t, v)
	require.Equal(t, rep, p)

	var err error
	tampered := a.seal(t, v, rep)
	tampered[12] ^= 0x01 // a ciphertext bit
	header := a.seal(t, v, rep)
	header[5] ^= 0x01 // the clear sender SSRC (authenticated)
	// Indexes the router has not seen (an index it has seen is refused as
	// a replay before the tag is checked).
	other := clientRTCP(t, newSecret(t), a.info.ID)
	var foreign, wrongKind []byte
	for range 100 {
		foreign, err = other[v.Index()].Seal(nil, rep)
		require.NoError(t, err)
		wrongKind = a.seal(t, media.Audio, rep)
	}
	cases := []struct {
		name   string
		pkt    []byte
		reason stats.DropReason
	}{
		{"tampered ciphertext", tampered, stats.DropRTCPAuth},
		{"tampered header", header, stats.DropRTCPAuth},
		{"replayed", good, stats.DropRTCPReplayed},
		{"plain RTCP from a protected flow", rep, stats.DropRTCPAuth},
		{"another secret", foreign, stats.DropRTCPAuth},
		{"another kind's key", wrongKind, stats.DropRTCPAuth},
		{"too short for SRTCP", pli(a.ssrc[v.Index()], b.ssrc[v.Index()]), stats.DropRTCPMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, pbefore := r.Stats().Drops[tc.reason], dropsOf(t, r, a.info.ID, tc.reason)
			require.NoError(t, a.flows[v.Index()].Send(tc.pkt))
			require.Eventually(t, func() bool { return r.Stats().Drops[tc.reason] == before+1 }, 5*time.Second, 2*time.Millisecond)
			require.Equal(t, pbefore+1, dropsOf(t, r, a.info.ID, tc.reason), "counted for the sender")
		})
	}
	require.True(t, quiet(b.flows[v.Index()], 100*time.Millisecond), "nothing dropped was forwarded")

	// An index older than the replay window.
	old := a.seal(t, v, rep)
	in, err := r.ParticipantStats(a.info.ID)
	require.NoError(t, err)
	for range protect.DefaultReplayWindow + 1 {
		require.NoError(t, a.flows[v.Index()].Send(a.seal(t, v, rep)))
	}
	require.Eventually(t, func() bool { // the router accepted all of them
		st, err := r.ParticipantStats(a.info.ID)
		return err == nil && st.PacketsIn == in.PacketsIn+protect.DefaultReplayWindow+1
	}, 10*time.Second, 2*time.Millisecond)
	before := r.Stats().Drops[stats.DropRTCPTooOld]
	require.NoError(t, a.flows[v.Index()].Send(old))
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropRTCPTooOld] == before+1 }, 5*time.Second, 2*time.Millisecond)
}

// TestSetRTCPSecret: a new secret (a resume) replaces every flow's keys at
// once; RTCP under the old one is dropped, both directions use the new
// one, and nil makes the participant's RTCP plain.
func TestSetRTCPSecret(t *testing.T) {
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	a, b := joinSecret(t, r, "m", 1), joinSecret(t, r, "m", 2)
	v := media.Video
	rep := sr(a.ssrc[v.Index()])
	oldA := a.rtcp
	fresh := newSecret(t)
	require.NoError(t, r.SetRTCPSecret(a.info.ID, fresh))
	a.rtcp = clientRTCP(t, fresh, a.info.ID)

	before := r.Stats().Drops[stats.DropRTCPAuth]
	stale, err := oldA[v.Index()].Seal(nil, rep)
	require.NoError(t, err)
	require.NoError(t, a.flows[v.Index()].Send(stale))
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropRTCPAuth] == before+1 }, 5*time.Second, 2*time.Millisecond)

	require.NoError(t, a.flows[v.Index()].Send(a.seal(t, v, rep)))
	p, _ := b.recvOpen(t, v)
	require.Equal(t, rep, p)
	fb := pli(b.ssrc[v.Index()], a.ssrc[v.Index()])
	require.NoError(t, b.flows[v.Index()].Send(b.seal(t, v, fb)))
	p, _ = a.recvOpen(t, v) // with the new keys
	require.Equal(t, fb, p)

	require.NoError(t, r.SetRTCPSecret(a.info.ID, nil))
	report := rr(b.ssrc[v.Index()], a.ssrc[v.Index()]) // not a PLI: the keyframe interval would hold it back
	require.NoError(t, b.flows[v.Index()].Send(b.seal(t, v, report)))
	require.Equal(t, [][]byte{report}, recvAll(a.flows[v.Index()], 1, 5*time.Second), "plain after SetRTCPSecret(nil)")
	require.ErrorIs(t, r.SetRTCPSecret(999, fresh), ErrNoParticipant)
}

// TestSRTCPStreamAndArena: RTCP to stream (TCP) subscribers is sealed per
// subscriber too, and a reader whose arena cannot hold every sealed copy
// of a datagram flushes early: every UDP subscriber still gets an intact
// copy of its own.
func TestSRTCPStreamAndArena(t *testing.T) {
	// 3 sealed sender reports (48 bytes each) fit, not 6.
	r := newTestRouter(t, func(c *Config) { c.Shards = 1; c.rtcpArena = 160 })
	require.NoError(t, r.CreateMeeting("m"))
	a := joinSecret(t, r, "m", 1)
	var subs []*sMember
	for i := range 6 {
		subs = append(subs, joinSecret(t, r, "m", 2+i))
	}
	secret := newSecret(t)
	info, err := r.AddParticipant("m", ParticipantOptions{RTCPSecret: secret})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v := media.Video
	sf, err := streammedia.Dial(ctx, r.TCPAddrs()[0], v, info.Token, nil)
	require.NoError(t, err)
	t.Cleanup(func() { sf.Close() })
	srtcp := clientRTCP(t, secret, info.ID)

	for i := range 3 {
		rep := sr(a.ssrc[v.Index()])
		rep[8] = byte(i) // distinct reports
		require.NoError(t, a.flows[v.Index()].Send(a.seal(t, v, rep)))
		seen := map[string]bool{}
		for _, s := range subs {
			p, w := s.recvOpen(t, v)
			require.Equal(t, rep, p)
			require.False(t, seen[string(w)], "each subscriber its own ciphertext")
			seen[string(w)] = true
		}
		got := recvAll(sf, 1, 5*time.Second)
		require.Len(t, got, 1)
		p, err := srtcp[v.Index()].Open(nil, got[0])
		require.NoError(t, err, "the stream subscriber's copy is sealed for it")
		require.Equal(t, rep, p)
	}
}

// TestZeroAllocsSRTCP: an SRTCP sender report in, opened, routed and
// sealed for 5 subscribers over real sockets allocates nothing in the
// whole process (the client side's seal and opens included).
func TestZeroAllocsSRTCP(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.Shards = 1
		c.ConsentTimeout = 10 * time.Minute // as in TestZeroAllocsPerForwardedPacket
		c.MaxPacketAge = time.Minute
	})
	require.NoError(t, r.CreateMeeting("m"))
	pub := joinSecret(t, r, "m", 1)
	var subs []*sMember
	for i := range 5 {
		subs = append(subs, joinSecret(t, r, "m", 2+i))
	}
	v := media.Video.Index()
	rep := sr(pub.ssrc[v])
	sealed := make([]byte, 0, 256)
	buf, plain := make([]byte, 2048), make([]byte, 0, 2048)
	roundTrip := func() {
		out, err := pub.rtcp[v].Seal(sealed, rep)
		if err != nil {
			panic(err)
		}
		if err := pub.flows[v].Send(out); err != nil {
			panic(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for _, s := range subs {
			n, err := s.flows[v].Recv(buf, deadline)
			if err != nil {
				panic(err)
			}
			if _, err := s.rtcp[v].Open(plain, buf[:n]); err != nil {
				panic(err)
			}
		}
	}
	roundTrip()
	require.Zero(t, testing.AllocsPerRun(200, roundTrip), "allocations per SRTCP datagram")
}

// BenchmarkRTCP measures the router's cost of one RTCP datagram (a sender
// report) to n subscribers, handed to a stream reader (no socket to read),
// plain and as SRTCP (open, route, seal per destination): "route" is the
// router's own work, the copies queued in its egress batch (the flush is
// outside the timer); "send" includes the flush (one sendmmsg of n copies
// over loopback, which dominates). The plain/srtcp difference is the cost
// of SRTCP.
func BenchmarkRTCP(b *testing.B) {
	for _, n := range []int{1, 5} {
		for _, send := range []bool{false, true} {
			for _, protected := range []bool{false, true} {
				name := fmt.Sprintf("dests=%d/%s/%s", n, map[bool]string{false: "route", true: "send"}[send], map[bool]string{false: "plain", true: "srtcp"}[protected])
				b.Run(name, func(b *testing.B) { benchRTCP(b, n, send, protected) })
			}
		}
	}
}

func benchRTCP(b *testing.B, n int, send, protected bool) {
	r := newTestRouter(b, func(c *Config) {
		c.Shards = 1
		c.ConsentTimeout = time.Hour
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	require.NoError(b, r.CreateMeeting("m"))
	add := func(i int) *sMember {
		if protected {
			return joinSecret(b, r, "m", i)
		}
		return &sMember{member: join(b, r, "m", i)}
	}
	pub := add(1)
	for i := range n {
		add(2 + i)
	}
	p, ok := r.reg.Get(uint64(pub.info.ID))
	require.True(b, ok)
	v := media.Video
	f := p.Flow(v)
	rep := sr(pub.ssrc[v.Index()])
	// The client's work is not the router's: seal every datagram first.
	pkts := make([][]byte, b.N)
	for i := range pkts {
		if protected {
			pkts[i] = pub.seal(b, v, rep)
		} else {
			pkts[i] = append([]byte(nil), rep...)
		}
	}
	rd := newStreamReader(r, 0)
	rd.stamp(time.Now().UnixNano())
	before := r.Stats().PacketsOut
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rd.fromFlow(pkts[i], wire.ClassRTCP, f)
		if !send {
			b.StopTimer()
		}
		rd.flush()
		if !send {
			b.StartTimer()
		}
	}
	b.StopTimer()
	require.Equal(b, uint64(b.N*n), r.Stats().PacketsOut-before, "every copy sent")
}

// rr builds an RTCP receiver report (RFC 3550 §6.4.2) from sender with one
// report block about media.
func rr(sender, media uint32) []byte {
	b := make([]byte, 32)
	b[0], b[1], b[3] = 0x81, 201, 7
	be32(b[4:], sender)
	be32(b[8:], media)
	return b
}
