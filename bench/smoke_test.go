package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/streammedia"
)

// TestHarnessSmoke runs every forwarder for a few hundred packets through
// the same rig the benchmarks use and checks that each subscriber receives
// every packet exactly once, byte for byte, and that the child reports
// usage: the harness itself is verified before its numbers are trusted.
func TestHarnessSmoke(t *testing.T) {
	const packets = 300
	before := runtime.NumGoroutine()
	tests := []struct {
		name  string
		sc    scenario
		drive driver
	}{
		{"cfloor", scenario{impl: implCFloor, subs: 3, size: 1200}, closedLoop(64)},
		{"cfloor-paced", scenario{impl: implCFloor, subs: 1, size: 200}, paced(time.Second / lightRate)},
		{"floor", scenario{impl: implFloor, subs: 3, size: 1200}, closedLoop(64)},
		{"naive", scenario{impl: implNaive, subs: 3, size: 1200}, closedLoop(64)},
		{"mmr", scenario{impl: implMMR, subs: 3, size: 200, idleMeetings: 50, idleParticipants: 5}, closedLoop(64)},
		{"mmr-poll", scenario{impl: implMMRPoll, subs: 3, size: 200}, closedLoop(64)},
		{"mmr-paced", scenario{impl: implMMR, subs: 1, size: 200}, paced(time.Second / lightRate)},
		{"mmr-paced-20k", scenario{impl: implMMR, subs: 2, size: 200}, paced(time.Second / 20000)}, // coalesced reads
		{"mmr-nocoalesce-paced", scenario{impl: implMMRNoCoalesce, subs: 2, size: 200}, paced(time.Second / 20000)},
		{"floor-held-paced", scenario{impl: implFloorHeld, subs: 2, size: 200}, paced(time.Second / lightRate)},
		{"cfloor-gso-video", scenario{impl: implCFloorGSO, subs: 3, size: 1200, video: true}, closedLoop(64)},
		{"cfloor-video", scenario{impl: implCFloor, subs: 3, size: 1200, video: true}, closedLoop(64)},
		{"mmr-video", scenario{impl: implMMR, subs: 3, size: 1200, video: true}, closedLoop(64)},
		{"mmr-video-200", scenario{impl: implMMR, subs: 3, size: 200, video: true}, closedLoop(64)},
		{"mmr-nogso-video", scenario{impl: implMMRNoGSO, subs: 3, size: 1200, video: true}, closedLoop(64)},
		{"floor-window-1", scenario{impl: implFloor, subs: 2, size: 200}, closedLoop(1)},
		{"tcp", scenario{impl: implTCP, subs: 3, size: 1200}, closedLoop(64)},
		{"tcp-200", scenario{impl: implTCP, subs: 2, size: 200}, closedLoop(64)},
		{"tls", scenario{impl: implTLS, subs: 3, size: 1200}, closedLoop(64)},
		{"tls-200", scenario{impl: implTLS, subs: 2, size: 200}, closedLoop(64)},
		{"ws", scenario{impl: implWS, subs: 3, size: 1200}, closedLoop(64)},
		{"ws-200", scenario{impl: implWS, subs: 2, size: 200}, closedLoop(64)},
		{"wt", scenario{impl: implWT, subs: 3, size: 1200}, closedLoop(wtWindow)},
		{"wt-200", scenario{impl: implWT, subs: 2, size: 200}, closedLoop(wtWindow)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if why := implSkip(tt.sc.impl); why != "" {
				t.Skip(why)
			}
			tt.sc.verify = true
			r, err := newRig(tt.sc)
			require.NoError(t, err)
			defer func() { require.NoError(t, r.close()) }()

			require.NoError(t, r.startRound())
			u0, err := r.child.usage()
			require.NoError(t, err)
			res, err := tt.drive(r, packets)
			require.NoError(t, err)
			u1, err := r.child.usage()
			require.NoError(t, err)

			require.Equal(t, uint64(packets*tt.sc.subs), res.expected)
			require.Equal(t, res.expected, res.delivered, "copies delivered")
			require.Zero(t, res.stalls)
			require.NoError(t, r.sinks.check(packets))
			require.Greater(t, u1.CPUNanos, u0.CPUNanos, "the child forwarded, so it used CPU")
			require.GreaterOrEqual(t, u1.Mallocs, u0.Mallocs)
			if isStreamImpl(tt.sc.impl) {
				requireTransport(t, r.sinks, tt.sc.impl)
			}
			if isRouterImpl(tt.sc.impl) {
				drops, err := r.child.drops()
				require.NoError(t, err)
				require.Zero(t, drops, "router drops")
				sent, falls, err := r.child.gso()
				require.NoError(t, err)
				require.Zero(t, falls, "GSO fallbacks")
				switch {
				case tt.sc.video && tt.sc.impl == implMMR:
					require.NotZero(t, sent, "video frames went as GSO super-packets")
				case tt.sc.impl == implMMRNoGSO:
					require.Zero(t, sent, "GSO disabled")
				}
			}

			require.Error(t, r.startRound(), "a verifying rig runs one round")
		})
	}
	requireNoLeak(t, before)
}

// requireTransport checks that every stream subscriber of sinks is what
// impl says: plain TCP, or TLS that negotiated the media ALPN.
func requireTransport(t *testing.T, sinks *sinkSet, impl string) {
	t.Helper()
	for i, k := range sinks.sinks {
		if impl == implWS {
			require.NotNil(t, k.ws, "subscriber %d is not a WebSocket", i)
			continue
		}
		if impl == implWT {
			require.NotNil(t, k.wt, "subscriber %d is not a WebTransport session", i)
			continue
		}
		require.NotNil(t, k.flow, "subscriber %d is not a stream", i)
		switch c := k.flow.Conn().(type) {
		case *tls.Conn:
			require.Equal(t, implTLS, impl, "subscriber %d", i)
			require.Equal(t, streammedia.ALPN, c.ConnectionState().NegotiatedProtocol, "subscriber %d", i)
		case *net.TCPConn:
			require.Equal(t, implTCP, impl, "subscriber %d", i)
		default:
			t.Fatalf("subscriber %d: unexpected connection %T", i, c)
		}
	}
}

// TestChildRejectsBadSpec checks that a child refuses a spec it cannot run
// with a clear error, and that the parent reaps it.
func TestChildRejectsBadSpec(t *testing.T) {
	before := runtime.NumGoroutine()
	sink := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")} // never sent to
	tests := []struct {
		name string
		spec childSpec
		want string
	}{
		{"unknown impl", childSpec{Impl: "bogus", Pub: sink[0], Subs: sink}, `unknown impl "bogus"`},
		{"no subscribers", childSpec{Impl: implNaive, Pub: sink[0]}, "no subscribers"},
		{"no publisher", childSpec{Impl: implNaive, Subs: sink}, "publisher address missing"},
		{"idle overflow", childSpec{Impl: implMMR, Pub: sink[0], Subs: sink, IdleMeetings: 1 << 20, IdleParticipants: 5}, "out of range"},
		{"tcp without streams", childSpec{Impl: implTCP, Pub: sink[0]}, "stream subscribers"},
		{"tls with UDP subscribers", childSpec{Impl: implTLS, Pub: sink[0], Subs: sink, Streams: 1}, "stream subscribers"},
		{"too many streams", childSpec{Impl: implTCP, Pub: sink[0], Streams: maxStreams + 1}, "stream subscribers"},
		{"streams for udp", childSpec{Impl: implNaive, Pub: sink[0], Subs: sink, Streams: 1}, "no stream subscribers"},
		{"cfloor with streams", childSpec{Impl: implCFloor, Pub: sink[0], Streams: 1}, "UDP subscribers only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := startChild(tt.spec)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, c)
		})
	}
	requireNoLeak(t, before)
}

func TestParseUsage(t *testing.T) {
	tests := []struct {
		in      string
		want    usage
		wantErr bool
	}{
		{"usage 1 2 3", usage{1, 2, 3}, false},
		{"usage 18446744073709551615 0 0", usage{CPUNanos: 1<<64 - 1}, false},
		{"usage 1 2", usage{}, true},
		{"usage 1 2 -3", usage{}, true},
		{"ok 1 2 3", usage{}, true},
		{"", usage{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseUsage(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// FuzzParseUsage: the parent's parser of the child's usage reply never
// panics and accepts only replies it can reproduce.
func FuzzParseUsage(f *testing.F) {
	f.Add("usage 1 2 3")
	f.Add("usage 99999999999999999999 2 3")
	f.Add("err boom")
	f.Add("usage  1\t2 3 ")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseUsage(s)
		if err != nil {
			return
		}
		again, err := parseUsage(fmt.Sprintf("usage %d %d %d", u.CPUNanos, u.Mallocs, u.AllocBytes))
		require.NoError(t, err)
		require.Equal(t, u, again)
	})
}

// requireNoLeak fails t if more goroutines run than before, after letting
// exiting ones settle for up to two seconds.
func requireNoLeak(t *testing.T, before int) {
	t.Helper()
	for range 200 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Fatalf("goroutines leaked: %d running, %d before\n%s", runtime.NumGoroutine(), before, buf[:n])
}
