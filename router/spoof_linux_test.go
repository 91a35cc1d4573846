package router

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// spoofer sends UDP datagrams with a forged IPv4 source address through a
// raw socket (IP_HDRINCL), as an attacker on any network without source
// address validation can. Loopback only.
type spoofer struct{ fd int }

func newSpoofer(t *testing.T) *spoofer {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		t.Skipf("raw socket: %v (needs CAP_NET_RAW)", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &spoofer{fd: fd}
}

// send sends payload from src to dst; the kernel fills in the IP checksum
// and ID, the UDP checksum is left 0 (none, allowed over IPv4).
func (s *spoofer) send(t *testing.T, src, dst netip.AddrPort, payload []byte) {
	b := make([]byte, 20+8+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	require.NoError(t, unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: d4}))
}

// TestSpoofedBindGetsNoMedia: a participant's token in Binds and
// Keepalives with a forged source (a victim's socket that never sends)
// must not aim the meeting's media at the victim: the victim gets only
// return-routability challenges, fewer bytes than were forged, and the
// flow is never bound there. On main the victim got the meeting's media.
func TestSpoofedBindGetsNoMedia(t *testing.T) {
	leaktest.Check(t)
	sp := newSpoofer(t)
	r := newTestRouter(t)
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1)
	attacker, err := r.AddParticipant("m", ParticipantOptions{})
	require.NoError(t, err)

	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 77)})
	require.NoError(t, err)
	defer victim.Close()
	vaddr := victim.LocalAddr().(*net.UDPAddr).AddrPort()
	dst := r.UDPAddrs()[0]

	base, in0 := r.Stats().BindChallenges, r.Stats().PacketsIn // the publisher's own binds
	forged := 0
	forge := func(pkt []byte) {
		sp.send(t, vaddr, dst, pkt)
		forged += len(pkt)
	}
	var bind [wire.BindSize]byte
	var ka [wire.KeepaliveSize]byte
	for i := range 20 {
		// First binds, blind guesses at the challenge, keepalives.
		// Signed with the attacker's own token: authentic, from a forged
		// source, with a guessed challenge.
		b := wire.Bind{Kind: media.Audio, TxID: uint32(i), Nonce: uint64(i)}
		now := time.Now()
		b.Sign(attacker.Token, uint64(now.UnixMicro())+uint64(i), now)
		_, _ = b.MarshalTo(bind[:])
		forge(bind[:])
		_, _ = (&wire.Keepalive{Kind: media.Audio, TxID: uint32(i), Nonce: uint64(i)}).MarshalTo(ka[:])
		forge(ka[:])
		require.NoError(t, pub.flows[0].Send(pub.rtpPacket(t, media.Audio, 1000)))
	}
	for range 20 {
		require.NoError(t, pub.flows[0].Send(pub.rtpPacket(t, media.Audio, 1000)))
	}
	require.Eventually(t, func() bool { return r.Stats().PacketsIn >= in0+80 }, 10*time.Second, 5*time.Millisecond,
		"every forged packet and every RTP packet reached the router")

	got, packets := 0, 0
	buf := make([]byte, 2048)
	for {
		_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := victim.Read(buf)
		if err != nil {
			break
		}
		got += n
		packets++
		var ack wire.BindAck
		require.NoError(t, ack.Unmarshal(buf[:n]), "only BindAcks reach the victim")
		require.Equal(t, wire.StatusVerify, ack.Status, "challenges, never a bind")
	}
	t.Logf("forged %d bytes, victim received %d bytes in %d packets", forged, got, packets)
	require.LessOrEqual(t, got, forged, "no amplification")
	st := r.Stats()
	require.Equal(t, uint64(20), st.BindChallenges-base+st.Drops[stats.DropBindLimited], "each forged bind challenged, or over the participant's share")
	_, bound := r.Bound(attacker.ID, media.Audio)
	require.False(t, bound, "the flow was never bound to the unverified address")
}

// TestConsentFreshness: a verified client that stops echoing consent
// nonces (while forged Keepalives from its address continue) stops getting
// media after ConsentTimeout; one that keeps echoing keeps getting it.
func TestConsentFreshness(t *testing.T) {
	leaktest.Check(t)
	sp := newSpoofer(t)
	const timeout = 1500 * time.Millisecond
	r := newTestRouter(t, func(c *Config) { c.ConsentTimeout = timeout })
	require.NoError(t, r.CreateMeeting("m"))
	pub, live, gone := join(t, r, "m", 1), join(t, r, "m", 2), join(t, r, "m", 3)

	// live keeps echoing: a keepalive every 100 ms, its acks read by Recv.
	stop := make(chan struct{})
	done := make(chan struct{})
	gotLive := make(chan int, 1)
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		rtp, next := 0, time.Now()
		for {
			select {
			case <-stop:
				gotLive <- rtp
				return
			default:
			}
			if time.Now().After(next) {
				_ = live.flows[0].Keepalive()
				next = time.Now().Add(100 * time.Millisecond)
			}
			n, err := live.flows[0].Recv(buf, time.Now().Add(50*time.Millisecond))
			if err == nil && wire.Classify(buf[:n]) == wire.ClassRTP {
				rtp++
			}
		}
	}()
	// gone's address: forged keepalives without a valid nonce, every 100 ms.
	goneAddr := gone.flows[0].LocalAddr()
	if goneAddr.Addr().IsUnspecified() {
		goneAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), goneAddr.Port())
	}
	var ka [wire.KeepaliveSize]byte
	deadline := time.Now().Add(3 * timeout)
	for time.Now().Before(deadline) {
		_, _ = (&wire.Keepalive{Kind: media.Audio, TxID: 1, Nonce: 12345}).MarshalTo(ka[:])
		sp.send(t, goneAddr, r.UDPAddrs()[0], ka[:])
		time.Sleep(100 * time.Millisecond) // pacing the forged traffic, not synchronisation
	}
	for range 10 {
		require.NoError(t, pub.flows[0].Send(pub.rtpPacket(t, media.Audio, 200)))
	}
	// Drain what gone got before the lapse (acks of forged keepalives go
	// to its address too), then it must get no media.
	buf := make([]byte, 2048)
	rtpGone := 0
	for {
		n, err := gone.flows[0].Recv(buf, time.Now().Add(300*time.Millisecond))
		if err != nil {
			break
		}
		if wire.Classify(buf[:n]) == wire.ClassRTP {
			rtpGone++
		}
	}
	close(stop)
	<-done
	require.Zero(t, rtpGone, "media stopped going to the address that stopped answering")
	require.Equal(t, 10, <-gotLive, "the client that keeps consent gets every packet")
	require.GreaterOrEqual(t, r.Stats().Drops[stats.DropNoConsent], uint64(10))
}
