package tunnel

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
)

// TestLearnMMRFromZC: the tunnel is configured with the ZC only; a real
// zone controller has a registered MMR (a real agent) whose TLS endpoint is
// a TLS echo. A client of the meeting reaches the ZC (static) and the MMR
// (learnt from the placement of its token's meeting), but not another
// live address; lookups are cached.
func TestLearnMMRFromZC(t *testing.T) {
	leaktest.Check(t)
	mmr := startEcho(t, nil)
	other := startEcho(t, nil)
	zcCert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	zsecret := []byte("zone-secret-for-tunnel-tests")
	quiet := slog.New(slog.DiscardHandler)
	zc, err := zone.New(zone.Config{ID: "zc-test", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Certificate: zcCert,
		Secrets: [][]byte{zsecret}, Logger: quiet})
	require.NoError(t, err)
	defer zc.Close()
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(zcCert))
	require.NoError(t, err)
	mmrAddr := netip.MustParseAddrPort(mmr.addr)
	agent, err := zcagent.New(zcagent.Config{
		ID: "mmr-1", ZCs: []string{zc.Addr().String()}, Secret: zsecret, TLS: pin,
		Endpoints: proto.Endpoints{TLS: []netip.AddrPort{mmrAddr}, UDP: []netip.AddrPort{netip.AddrPortFrom(mmrAddr.Addr(), 8801)}},
		Capacity:  proto.Capacity{Meetings: 10, Participants: 100},
		CPU:       func() float64 { return 0.1 },
		Logger:    quiet,
	}, zcagent.LoadFunc(func() zcagent.Load { return zcagent.Load{Hosted: []zcagent.Meeting{}} }))
	require.NoError(t, err)
	defer agent.Close()
	waitFor(t, "MMR registered", func() bool { return len(zc.MMRs()) == 1 })

	zcAddr := zc.Addr().String()
	srv := startServer(t, Config{Zones: []string{zcAddr}, Placer: &ZCPlacer{ZCs: []ZC{{Addr: zcAddr, TLS: pin}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tun, err := (&Dialer{Token: mint(t, testSecret, "dave", time.Hour)}).Pick(ctx, []Endpoint{srv.ep})
	require.NoError(t, err)

	// The ZC through the tunnel: a TLS 1.3 handshake with its ALPN.
	c, err := tun.Dial(ctx, zcAddr)
	require.NoError(t, err)
	zcfg := pin.Clone()
	zcfg.NextProtos = []string{proto.ALPN}
	ztc := tls.Client(c, zcfg)
	require.NoError(t, ztc.HandshakeContext(ctx))
	require.Equal(t, proto.ALPN, ztc.ConnectionState().NegotiatedProtocol)
	require.NoError(t, ztc.Close())

	// The MMR of the token's meeting: learnt.
	for range 3 {
		c, err = tun.Dial(ctx, mmr.addr)
		require.NoError(t, err)
		tc := mmr.clientTLS(t, c)
		roundTrip(t, tc, []byte("control hello"))
		require.NoError(t, tc.Close())
	}
	require.Equal(t, uint64(1), srv.Stats().Placements, "one lookup, then the cache")

	// Anything else stays refused.
	_, err = tun.Dial(ctx, other.addr)
	require.ErrorIs(t, err, &Error{Code: CodeTargetNotAllowed})
	_, err = tun.Dial(ctx, netip.AddrPortFrom(mmrAddr.Addr(), 8801).String()) // UDP endpoint port: not tunnelled
	require.ErrorIs(t, err, &Error{Code: CodeTargetNotAllowed})
	require.Zero(t, srv.Stats().PlaceFailed)
}
