package router

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// signBind returns the packet of a Bind signed with tok at now.
func signBind(t testing.TB, tok wire.Token, k media.Kind, txID uint32, nonce, counter uint64, now time.Time) []byte {
	t.Helper()
	b := wire.Bind{Kind: k, TxID: txID, Nonce: nonce}
	b.Sign(tok, counter, now)
	var p [wire.BindSize]byte
	n, err := b.MarshalTo(p[:])
	require.NoError(t, err)
	return p[:n]
}

// rawFlow is a client UDP socket that builds its own control packets, so
// that a test can keep the bytes of its Binds and replay them from
// elsewhere.
type rawFlow struct {
	t    *testing.T
	c    *net.UDPConn
	dst  netip.AddrPort
	ctr  wire.BindCounter
	sent [][]byte // every Bind sent
}

func newRawFlow(t *testing.T, dst netip.AddrPort) *rawFlow {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawFlow{t: t, c: c, dst: dst}
}

func (f *rawFlow) addr() netip.AddrPort { return f.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *rawFlow) send(pkt []byte) {
	_, err := f.c.WriteToUDPAddrPort(pkt, f.dst)
	require.NoError(f.t, err)
}

// next returns the next datagram from the router within d (nil: none).
func (f *rawFlow) next(d time.Duration) []byte {
	buf := make([]byte, 2048)
	_ = f.c.SetReadDeadline(time.Now().Add(d))
	for {
		n, from, err := f.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		if from == f.dst {
			return buf[:n]
		}
	}
}

// nextAck returns the next BindAck from the router within d.
func (f *rawFlow) nextAck(d time.Duration) (wire.BindAck, bool) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		p := f.next(time.Until(end))
		var ack wire.BindAck
		if p != nil && wire.Classify(p) == wire.ClassBindAck && ack.Unmarshal(p) == nil {
			return ack, true
		}
	}
	return wire.BindAck{}, false
}

// bind runs the binding procedure with tok for kind k (a Bind, the
// challenge, the echo; a fresh Bind after each second without answer) and
// returns the consent nonce of the OK BindAck.
func (f *rawFlow) bind(tok wire.Token, k media.Kind) uint64 {
	var nonce uint64
	for try := range 20 {
		now := time.Now()
		p := signBind(f.t, tok, k, uint32(try), nonce, f.ctr.Next(now), now)
		f.sent = append(f.sent, p)
		f.send(p)
		ack, ok := f.nextAck(time.Second)
		switch {
		case !ok:
		case ack.Status == wire.StatusVerify:
			nonce = ack.Nonce
		case ack.Status == wire.StatusOK:
			require.Equal(f.t, f.addr(), ack.Mapped)
			return ack.Nonce
		}
	}
	f.t.Fatal("no OK BindAck")
	return 0
}

// meetingWith starts a router with meeting "m" and one participant in it.
func meetingWith(t *testing.T, mut ...func(*Config)) (*Router, ParticipantInfo) {
	t.Helper()
	r := newTestRouter(t, mut...)
	require.NoError(t, r.CreateMeeting("m"))
	p, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)
	return r, p
}

// TestBindReplayRefused: the Binds a client sent, replayed from another
// address, are refused (bind_replayed) and the flow stays where it was;
// a Bind the router never saw, sent from another address, gets only a
// challenge, which cannot be answered without the token; and old Binds
// replayed from the client's old address after it moved do not move the
// flow back. Real UDP sockets throughout.
func TestBindReplayRefused(t *testing.T) {
	leaktest.Check(t)
	r, victim := meetingWith(t)
	pub := join(t, r, "m", 1)
	a := newRawFlow(t, dialAddr(r))
	a.bind(victim.Token, media.Audio)
	require.GreaterOrEqual(t, len(a.sent), 2, "a first Bind and the echo of its challenge")

	bound := func() netip.AddrPort {
		ap, ok := r.Bound(victim.ID, media.Audio)
		require.True(t, ok)
		return ap
	}
	require.Equal(t, a.addr(), bound())
	drops := func(d stats.DropReason) uint64 { return r.Stats().Drops[d] }

	// Replay from another address: every Bind a sent.
	x := newRawFlow(t, dialAddr(r))
	before := drops(stats.DropBindReplayed)
	for _, p := range a.sent {
		x.send(p)
	}
	require.Eventually(t, func() bool { return drops(stats.DropBindReplayed) == before+uint64(len(a.sent)) }, 10*time.Second, 2*time.Millisecond)
	require.Nil(t, x.next(200*time.Millisecond), "a replay gets no answer")
	require.Equal(t, a.addr(), bound(), "the flow stays where it was")

	// Media still goes to a, none to x.
	rtp := pub.rtpPacket(t, media.Audio, 200)
	require.NoError(t, pub.flows[0].Send(rtp))
	require.Equal(t, rtp, a.next(5*time.Second))
	require.Nil(t, x.next(200*time.Millisecond))

	// A Bind signed by a but never delivered (an on-path attacker kept
	// it), sent from x: authentic and fresh, so x is challenged; its echo
	// needs a new MAC, and the captured Bind with the nonce pasted in is
	// refused as not signed.
	now := time.Now()
	kept := signBind(t, victim.Token, media.Audio, 99, 0, a.ctr.Next(now), now)
	x.send(kept)
	ack, ok := x.nextAck(5 * time.Second)
	require.True(t, ok)
	require.Equal(t, wire.StatusVerify, ack.Status, "challenged, not bound")
	var forged wire.Bind
	require.NoError(t, forged.Unmarshal(kept))
	forged.Nonce = ack.Nonce
	forged.Counter++
	var fp [wire.BindSize]byte
	_, err := forged.MarshalTo(fp[:])
	require.NoError(t, err)
	beforeBad := drops(stats.DropBadToken)
	x.send(fp[:])
	require.Eventually(t, func() bool { return drops(stats.DropBadToken) == beforeBad+1 }, 10*time.Second, 2*time.Millisecond)
	require.Equal(t, a.addr(), bound(), "the flow stays where it was")

	// The client moves to c; a's old Binds, replayed from a's address,
	// do not take the flow back.
	c := newRawFlow(t, dialAddr(r))
	c.bind(victim.Token, media.Audio)
	require.Equal(t, c.addr(), bound())
	before = drops(stats.DropBindReplayed)
	for _, p := range a.sent {
		a.send(p)
	}
	require.Eventually(t, func() bool { return drops(stats.DropBindReplayed) == before+uint64(len(a.sent)) }, 10*time.Second, 2*time.Millisecond)
	require.Equal(t, c.addr(), bound(), "old binds do not move the flow back")
}

// TestBindRefusedAndCounted: Binds that are stale, from the future,
// signed with another token, naming no participant, or in the old
// version-1 format with the token in clear are each refused without an
// answer, counted under their reason, and bind nothing.
func TestBindRefusedAndCounted(t *testing.T) {
	leaktest.Check(t)
	r, p := meetingWith(t)
	other, err := wire.NewToken()
	require.NoError(t, err)
	v1 := append([]byte{wire.TypeBind, 1, byte(media.Audio), 0, 0, 0, 0, 1}, p.Token[:]...)
	v1 = append(v1, make([]byte, 16)...) // the 40-byte version-1 Bind
	tests := []struct {
		name   string
		pkt    func(counter uint64) []byte
		reason stats.DropReason
	}{
		{"stale", func(c uint64) []byte {
			return signBind(t, p.Token, media.Audio, 1, 0, c, time.Now().Add(-wire.BindTimeWindow-10*time.Second))
		}, stats.DropBindStale},
		{"future", func(c uint64) []byte {
			return signBind(t, p.Token, media.Audio, 1, 0, c, time.Now().Add(wire.BindTimeWindow+10*time.Second))
		}, stats.DropBindStale},
		{"wrong MAC", func(c uint64) []byte {
			b := signBind(t, other, media.Audio, 1, 0, c, time.Now())
			h := p.Token.Handle()
			copy(b[8:16], h[:]) // names p, signed with another token
			return b
		}, stats.DropBadToken},
		{"unknown handle", func(c uint64) []byte { return signBind(t, other, media.Audio, 1, 0, c, time.Now()) }, stats.DropBadToken},
		{"version 1, token in clear", func(uint64) []byte { return v1 }, stats.DropMalformed},
		{"version 1 padded to 56 bytes", func(uint64) []byte { return append(append([]byte(nil), v1...), make([]byte, 16)...) }, stats.DropMalformed},
	}
	var ctr wire.BindCounter
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newRawFlow(t, dialAddr(r))
			before := r.Stats().Drops[tc.reason]
			f.send(tc.pkt(ctr.Next(time.Now())))
			require.Eventually(t, func() bool { return r.Stats().Drops[tc.reason] == before+1 }, 10*time.Second, 2*time.Millisecond)
			require.Nil(t, f.next(100*time.Millisecond), "no answer")
			_, bound := r.Bound(p.ID, media.Audio)
			require.False(t, bound)
		})
	}
	// A refused stale Bind did not use up its counter: the same counter,
	// freshly signed, binds.
	f := newRawFlow(t, dialAddr(r))
	c := ctr.Next(time.Now())
	f.send(signBind(t, p.Token, media.Audio, 1, 0, c, time.Now().Add(-time.Hour)))
	f.send(signBind(t, p.Token, media.Audio, 2, 0, c, time.Now()))
	ack, ok := f.nextAck(5 * time.Second)
	require.True(t, ok)
	require.Equal(t, uint32(2), ack.TxID)
}

// TestStreamBindReplayedOrForged: a TCP stream whose first frame is a
// copy of another stream's Bind, a forged Bind or a stale one is closed
// with the reason counted, and the flow stays on the first stream.
func TestStreamBindReplayedOrForged(t *testing.T) {
	leaktest.Check(t)
	r, p := meetingWith(t)
	addr := r.TCPAddrs()[0]
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr.String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	now := time.Now()
	good := wire.AppendFrame(nil, signBind(t, p.Token, media.Video, 1, 0, uint64(now.UnixMicro()), now))
	first := dial()
	_, err := first.Write(good)
	require.NoError(t, err)
	d := wire.NewDeframer(first, 2048)
	_ = first.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack, err := d.Next()
	require.NoError(t, err)
	require.Equal(t, wire.ClassBindAck, wire.Classify(ack))
	local := first.LocalAddr().(*net.TCPAddr).AddrPort()
	boundTo := func() netip.AddrPort {
		ap, ok := r.Bound(p.ID, media.Video)
		require.True(t, ok)
		return ap
	}
	require.Equal(t, local, boundTo())

	tampered := append([]byte(nil), good...)
	tampered[2+5] ^= 1 // the TxID, under the MAC
	later := time.Now()
	stale := wire.AppendFrame(nil, signBind(t, p.Token, media.Video, 1, 0, uint64(later.UnixMicro())+1, later.Add(-time.Minute)))
	for _, tc := range []struct {
		name   string
		frame  []byte
		reason stats.DropReason
	}{
		{"replayed", good, stats.DropBindReplayed},
		{"forged", tampered, stats.DropBadToken},
		{"stale", stale, stats.DropBindStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Stats().Drops[tc.reason]
			c := dial()
			_, err := c.Write(tc.frame)
			require.NoError(t, err)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 64))
			require.Error(t, err, "the router closes the stream without an answer")
			require.Eventually(t, func() bool { return r.Stats().Drops[tc.reason] == before+1 }, 10*time.Second, 2*time.Millisecond)
			require.Equal(t, local, boundTo(), "the flow stays on the first stream")
		})
	}
}

// TestConsentNeedsToken: Keepalives that echo the router's consent nonce
// itself (what an observer of the path sees) do not renew consent; media
// stops after ConsentTimeout (no_consent) and comes back with the first
// Keepalive carrying the token's echo (wire.ConsentEcho). Keepalives
// never bind: the flow stays at its address throughout.
func TestConsentNeedsToken(t *testing.T) {
	leaktest.Check(t)
	const timeout = 1500 * time.Millisecond
	r, p := meetingWith(t, func(c *Config) { c.ConsentTimeout = timeout })
	pub := join(t, r, "m", 1)
	f := newRawFlow(t, dialAddr(r))
	nonce := f.bind(p.Token, media.Audio)
	require.NotZero(t, nonce)
	keepalive := func(echo uint64) {
		var b [wire.KeepaliveSize]byte
		_, err := (&wire.Keepalive{Kind: media.Audio, TxID: 1, Nonce: echo}).MarshalTo(b[:])
		require.NoError(t, err)
		f.send(b[:])
	}
	// readAcks reads what arrives within d, keeping the latest consent
	// nonce, and counts RTP.
	readAcks := func(d time.Duration) (rtp int) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			pkt := f.next(time.Until(end))
			var ka wire.Keepalive
			switch {
			case pkt == nil:
			case wire.Classify(pkt) == wire.ClassKeepaliveAck && ka.Unmarshal(pkt) == nil:
				nonce = ka.Nonce
			case wire.Classify(pkt) == wire.ClassRTP:
				rtp++
			}
		}
		return rtp
	}
	start := time.Now()
	for time.Since(start) < 3*timeout {
		keepalive(nonce) // the raw nonce: what an observer could send
		readAcks(100 * time.Millisecond)
	}
	before := r.Stats().Drops[stats.DropNoConsent]
	for range 5 {
		require.NoError(t, pub.flows[0].Send(pub.rtpPacket(t, media.Audio, 200)))
	}
	require.Eventually(t, func() bool { return r.Stats().Drops[stats.DropNoConsent] >= before+5 }, 10*time.Second, 2*time.Millisecond)
	require.Zero(t, readAcks(200*time.Millisecond), "no media without consent")
	ap, ok := r.Bound(p.ID, media.Audio)
	require.True(t, ok)
	require.Equal(t, f.addr(), ap, "still bound: consent lapsed, the binding did not")

	// The token's echo renews consent: media flows again.
	got := 0
	for end := time.Now().Add(20 * time.Second); got == 0 && time.Now().Before(end); {
		keepalive(wire.ConsentEcho(p.Token, media.Audio, nonce))
		readAcks(50 * time.Millisecond)
		require.NoError(t, pub.flows[0].Send(pub.rtpPacket(t, media.Audio, 200)))
		got = readAcks(200 * time.Millisecond)
	}
	require.Positive(t, got, "media again after a Keepalive with the token's echo")
}
