package router

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// sendBurst sends pkts to dst with one sendmmsg(2), back to back as a
// video encoder's frame leaves the client, so that the router finds them
// in one read batch.
func sendBurst(t testing.TB, c *net.UDPConn, dst netip.AddrPort, pkts [][]byte) {
	t.Helper()
	var sa unix.RawSockaddrInet6
	var salen uint32
	if dst.Addr().Is4() {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		s4.Family, s4.Addr = unix.AF_INET, dst.Addr().As4()
		*(*[2]byte)(unsafe.Pointer(&s4.Port)) = [2]byte{byte(dst.Port() >> 8), byte(dst.Port())}
		salen = unix.SizeofSockaddrInet4
	} else {
		sa.Family, sa.Addr = unix.AF_INET6, dst.Addr().As16()
		*(*[2]byte)(unsafe.Pointer(&sa.Port)) = [2]byte{byte(dst.Port() >> 8), byte(dst.Port())}
		salen = unix.SizeofSockaddrInet6
	}
	msgs := make([]unix.Mmsghdr, len(pkts))
	iovs := make([]unix.Iovec, len(pkts))
	for i, p := range pkts {
		iovs[i].Base = &p[0]
		iovs[i].SetLen(len(p))
		msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sa))
		msgs[i].Hdr.Namelen = salen
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var errno syscall.Errno
	require.NoError(t, rc.Write(func(fd uintptr) bool {
		for len(msgs) > 0 {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				msgs = msgs[r:]
			case unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	}))
	require.Zero(t, errno)
}

// TestGSOFrames publishes video frames of 5 to 10 packets, each frame's
// packets of one size but for a shorter last one and sent back to back,
// to three subscribers, with GSO on and off, on IPv4, IPv6 and an IPv4
// wildcard listener (every copy then carries the source address the
// clients sent to). Every subscriber must receive every frame byte for
// byte and in order, each datagram with the video DSCP mark and from the
// address its client talks to; with GSO on, super-packets must have been
// sent (GSOSent), with it off none, and nothing dropped or fallen back.
func TestGSOFrames(t *testing.T) {
	leaktest.Check(t)
	for _, g := range gsoModes {
		for _, tc := range []struct{ name, listen string }{
			{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}, {"wildcard", "0.0.0.0:0"},
		} {
			t.Run(g.name+"/"+tc.name, func(t *testing.T) {
				r := newTestRouter(t, func(c *Config) {
					c.UDP = []netip.AddrPort{netip.MustParseAddrPort(tc.listen)}
					c.Shards = 1
					c.DisableGSO = g.disable
					c.DSCP = dscp.Config{Audio: 46, Video: 34, Content: 40}
				})
				require.NoError(t, r.CreateMeeting("m"))
				pub := join(t, r, "m", 1)
				subs := []*member{join(t, r, "m", 2), join(t, r, "m", 3), join(t, r, "m", 4)}
				v := media.Video.Index()
				for _, s := range subs {
					require.NoError(t, dscp.EnableRecv(s.flows[v].Conn()))
				}
				sent := 0
				// GSO needs a frame to land in one read batch; on a busy
				// machine the reader may wake between two packets, so
				// frames go on until a super-packet has been seen (or 200).
				for f := 0; f < 200 && (f < 12 || (!g.disable && r.Stats().GSOSent == 0)); f++ {
					k := 5 + f%6
					frame := make([][]byte, k)
					for i := range frame {
						size := 1100
						if i == k-1 {
							size = 100 + 13*f
						}
						frame[i] = pub.rtpPacket(t, media.Video, size)
					}
					sendBurst(t, pub.flows[v].Conn(), dialAddr(r), frame)
					sent += k
					for n, s := range subs {
						conn := s.flows[v].Conn()
						require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
						for i, want := range frame {
							buf, oob := make([]byte, 2048), make([]byte, 128)
							m, oobn, _, from, err := conn.ReadMsgUDPAddrPort(buf, oob)
							for err == nil && m > 0 && buf[0] == wire.TypeBindAck {
								// a late answer to a retransmitted bind (busy machine)
								m, oobn, _, from, err = conn.ReadMsgUDPAddrPort(buf, oob)
							}
							require.NoError(t, err, "frame %d packet %d to subscriber %d", f, i, n)
							require.Equal(t, dialAddr(r), from, "sent from the address the client uses")
							require.Equal(t, want, buf[:m], "frame %d packet %d to subscriber %d", f, i, n)
							mark, ok := dscp.ParseRecv(oob[:oobn])
							require.True(t, ok, "TOS reported")
							require.Equal(t, uint8(34), mark)
						}
					}
				}
				st := r.Stats()
				if g.disable {
					require.Zero(t, st.GSOSent)
				} else {
					require.NotZero(t, st.GSOSent, "super-packets sent")
				}
				require.Zero(t, st.GSOFallbacks)
				require.Zero(t, st.Dropped())
				for _, s := range subs {
					// A reader adds a batch's copies to the counters after the
					// send returns, so a subscriber can read its last copy first.
					require.Eventually(t, func() bool {
						ps, err := r.ParticipantStats(s.info.ID)
						return err == nil && ps.PacketsOut == uint64(sent)
					}, 5*time.Second, time.Millisecond, "copies counted for subscriber %d", s.info.ID)
					extra := recvAll(s.flows[v], 1, 50*time.Millisecond)
					require.True(t, len(extra) == 0 || extra[0][0] == wire.TypeBindAck, "no extra packets")
				}
			})
		}
	}
}

// TestGSOFallbackDelivers makes the kernel refuse every super-packet
// (SO_NO_CHECK on the router's socket: UDP GSO needs checksums, EINVAL)
// and checks that every frame still reaches every subscriber whole and in
// order, counted as fallbacks, not drops.
func TestGSOFallbackDelivers(t *testing.T) {
	leaktest.Check(t)
	r := newTestRouter(t, func(c *Config) { c.Shards = 1 })
	require.NoError(t, unix.SetsockoptInt(r.groups[0].socks[0].FD(), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1))
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1)
	subs := []*member{join(t, r, "m", 2), join(t, r, "m", 3)}
	v := media.Video.Index()
	for f := 0; f < 200 && (f < 12 || r.Stats().GSOFallbacks == 0); f++ {
		frame := make([][]byte, 8)
		for i := range frame {
			frame[i] = pub.rtpPacket(t, media.Video, 900)
		}
		sendBurst(t, pub.flows[v].Conn(), dialAddr(r), frame)
		for _, s := range subs {
			require.Equal(t, frame, recvMedia(s.flows[v], len(frame)), "frame %d", f)
		}
	}
	st := r.Stats()
	require.NotZero(t, st.GSOFallbacks, "refused super-packets resent one by one")
	require.Zero(t, st.GSOSent)
	require.Zero(t, st.Dropped(), "a fallback is not a drop")
	require.Zero(t, st.Drops[stats.DropSendError])
}

// burst is a reusable sendmmsg of a fixed set of packets to one address,
// allocation-free after newBurst.
type burst struct {
	rc   syscall.RawConn
	sa   unix.RawSockaddrInet4
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	left []unix.Mmsghdr
	fn   func(fd uintptr) bool
}

func newBurst(t testing.TB, c *net.UDPConn, dst netip.AddrPort, pkts [][]byte) *burst {
	t.Helper()
	require.True(t, dst.Addr().Is4())
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	b := &burst{rc: rc, msgs: make([]unix.Mmsghdr, len(pkts)), iovs: make([]unix.Iovec, len(pkts))}
	b.sa.Family, b.sa.Addr = unix.AF_INET, dst.Addr().As4()
	*(*[2]byte)(unsafe.Pointer(&b.sa.Port)) = [2]byte{byte(dst.Port() >> 8), byte(dst.Port())}
	for i, p := range pkts {
		b.iovs[i].Base = &p[0]
		b.iovs[i].SetLen(len(p))
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.sa))
		b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		b.msgs[i].Hdr.Iov = &b.iovs[i]
		b.msgs[i].Hdr.SetIovlen(1)
	}
	b.fn = func(fd uintptr) bool {
		for len(b.left) > 0 {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.left[0])), uintptr(len(b.left)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				b.left = b.left[r:]
			case unix.EAGAIN:
				return false
			case unix.EINTR:
			default:
				panic(e)
			}
		}
		return true
	}
	return b
}

func (b *burst) send() {
	b.left = b.msgs
	if err := b.rc.Write(b.fn); err != nil {
		panic(err)
	}
}

// TestZeroAllocsGSO: frames of 8 equal-size packets sent back to back, fanned
// out to 5 subscribers as super-packets, allocate nothing in the whole
// process (sender and receivers included), and super-packets were sent.
func TestZeroAllocsGSO(t *testing.T) {
	r := newTestRouter(t, func(c *Config) {
		c.Shards = 1
		c.ConsentTimeout = 10 * time.Minute // subscribers send no keepalives; a loaded run is slow
		c.MaxPacketAge = time.Minute        // nor may a stall of the reader drop a frame as stale
	})
	require.NoError(t, r.CreateMeeting("m"))
	pub := join(t, r, "m", 1)
	var subs []*member
	for i := range 5 {
		subs = append(subs, join(t, r, "m", 2+i))
	}
	v := media.Video.Index()
	frame := make([][]byte, 8)
	for i := range frame {
		frame[i] = pub.rtpPacket(t, media.Video, 1000)
	}
	b := newBurst(t, pub.flows[v].Conn(), dialAddr(r), frame)
	buf := make([]byte, 2048)
	roundTrip := func() {
		deadline := time.Now().Add(30 * time.Second) // per round trip: a loaded machine is slow
		b.send()
		for _, s := range subs {
			for got := 0; got < len(frame); {
				n, err := s.flows[v].Recv(buf, deadline)
				if err != nil {
					panic(err)
				}
				if n > 0 && buf[0] != wire.TypeBindAck { // not a late bind answer
					got++
				}
			}
		}
	}
	roundTrip()
	allocs := testing.AllocsPerRun(100, roundTrip)
	require.Zero(t, allocs, "allocations per forwarded frame")
	require.NotZero(t, r.Stats().GSOSent)
}

// recvMedia reads want packets from f within 5 s, skipping late answers to
// retransmitted binds (a client on a busy machine may send its bind twice).
func recvMedia(f transport, want int) [][]byte {
	var got [][]byte
	for len(got) < want {
		p := recvAll(f, 1, 5*time.Second)
		if len(p) == 0 {
			break
		}
		if p[0][0] != wire.TypeBindAck {
			got = append(got, p[0])
		}
	}
	return got
}
