package control

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
)

// rawFrom is env.raw from source address src.
func (e *env) rawFrom(t *testing.T, src string) *rawConn {
	t.Helper()
	d := tls.Dialer{Config: e.clientTLS(t), NetDialer: &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0))}}
	nc, err := d.DialContext(ctxT(t), "tcp", e.addr())
	require.NoError(t, err)
	tc := nc.(*tls.Conn)
	t.Cleanup(func() { tc.Close() })
	require.NoError(t, tc.SetDeadline(time.Now().Add(waitLimit)))
	return &rawConn{t: t, tc: tc, fr: proto.NewFrameReader(tc, proto.ClientMaxFrame)}
}

// TestFailedJoinsSlowed: past three failed joins, an address's refusals
// come later and later; another address, and a good join from the same
// one, are not held back.
func TestFailedJoinsSlowed(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), nil)
	badJoin := func(src string) time.Duration {
		r := e.rawFrom(t, src)
		r.hello()
		start := time.Now()
		r.send(2, &proto.Join{Meeting: "m", Token: "not-a-token"})
		r.expectFatal(proto.CodeTokenInvalid)
		return time.Since(start)
	}
	var took []time.Duration
	for range 6 {
		took = append(took, badJoin("127.0.0.1"))
	}
	require.Equal(t, uint64(3), e.srv.Stats().AuthDelayed, "the 4th, 5th and 6th refusals waited")
	// 100, 200, 400 ms: lower bounds only (a loaded machine is only slower).
	require.GreaterOrEqual(t, took[5], 400*time.Millisecond, "the 6th failure waits 400 ms: %v", took)
	require.GreaterOrEqual(t, took[4], 200*time.Millisecond, "%v", took)

	badJoin("127.0.0.2")
	require.Equal(t, uint64(3), e.srv.Stats().AuthDelayed, "another address starts with a clean slate")

	good := e.rawFrom(t, "127.0.0.1")
	good.hello()
	good.send(2, &proto.Join{Meeting: "m", Token: mint(t, "m", "alice", token.Participant)})
	_, m := good.next()
	require.IsType(t, &proto.Joined{}, m, "a good join from the failing address is served")
	require.Equal(t, uint64(3), e.srv.Stats().AuthDelayed)
}

func TestAuthFailsDelays(t *testing.T) {
	var a authFails
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	var got []time.Duration
	for range 9 {
		got = append(got, a.fail(ip, now))
	}
	require.Equal(t, []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second}, got)
	require.Zero(t, a.fail(ip, now.Add(2*time.Minute)), "forgotten after a minute without failures")
}
