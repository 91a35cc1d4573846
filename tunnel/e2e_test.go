package tunnel

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// testMMR is a router, a control server and TLS media on one shared TLS
// port (package edge), wired as cmd/mmr wires them.
type testMMR struct {
	tlsAddr string
	pin     *tls.Config
}

func startMMR(t *testing.T) *testMMR {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	rt, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quiet, SocketBuffer: 256 << 10})
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	ln, err := edge.Listen("127.0.0.1:0", "-control")
	require.NoError(t, err)
	e, err := edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(cert), Logger: quiet})
	require.NoError(t, err)
	tlsAddr := netip.MustParseAddrPort(ln.Addr().String())
	eps := control.UDPEndpoints(rt.UDPAddrs())
	for _, k := range media.Kinds {
		eps = append(eps, ctlproto.Endpoint{Kind: ctlproto.Kind(k), Transport: ctlproto.TransportTLS, Addr: tlsAddr})
	}
	ctl, err := control.New(control.Config{TLS: tlsutil.ServerConfig(cert), Secret: testSecret, Endpoints: eps, Logger: quiet}, rt)
	require.NoError(t, err)
	e.Handle(ctlproto.ALPN, ctl.HandleConn)
	e.Handle(streammedia.ALPN, func(c net.Conn) { _ = rt.ServeStream(c) })
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = e.Serve()
	}()
	t.Cleanup(func() {
		_ = e.Close()
		<-served
		_ = ctl.Close()
	})
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	return &testMMR{tlsAddr: tlsAddr.String(), pin: pin}
}

// mediaFlow is what both kinds of flow (UDP, TLS stream) offer.
type mediaFlow interface {
	Send(pkt []byte) error
	Recv(buf []byte, deadline time.Time) (int, error)
}

// TestTunnelledParticipantMedia: Bob joins through a tunnel - control
// channel and TLS media of every kind, each its own tunnelled stream, TLS
// end to end with the MMR - and Alice directly over UDP. Audio, video and
// content packets flow both ways, packet by packet, byte for byte.
func TestTunnelledParticipantMedia(t *testing.T) {
	leaktest.Check(t)
	mmr := startMMR(t)
	ht := startServer(t, Config{Zones: []string{mmr.tlsAddr}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const meeting = "1234567890"

	join := func(who string, dial func(context.Context, string, string) (net.Conn, error)) (*ctlclient.Client, wire.Token, *ctlproto.Joined) {
		c, err := ctlclient.Dial(ctx, mmr.tlsAddr, ctlclient.Config{TLS: mmr.pin, Dial: dial, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		j, err := c.Join(ctx, meeting, mint(t, testSecret, who, time.Hour), who)
		require.NoError(t, err)
		mt, err := wire.ParseToken(j.MediaToken)
		require.NoError(t, err)
		return c, mt, j
	}
	aliceCtl, aliceTok, aliceJ := join("alice", nil)
	sess := (&Dialer{Token: mint(t, testSecret, "bob", time.Hour)}).NewSession([]Endpoint{ht.ep})
	bobCtl, bobTok, _ := join("bob", sess.DialContext)

	alice := map[media.Kind]mediaFlow{}
	bob := map[media.Kind]mediaFlow{}
	for _, k := range media.Kinds {
		for _, ep := range aliceJ.Endpoints {
			if ep.Transport == ctlproto.TransportUDP && media.Kind(ep.Kind) == k {
				f, err := udpmedia.Dial(ctx, ep.Addr, k, aliceTok)
				require.NoError(t, err)
				t.Cleanup(func() { f.Close() })
				alice[k] = f
				break
			}
		}
		require.NotNil(t, alice[k])
		c, err := sess.DialContext(ctx, "tcp", mmr.tlsAddr)
		require.NoError(t, err)
		cfg := mmr.pin.Clone()
		cfg.NextProtos = []string{streammedia.ALPN}
		tc := tls.Client(c, cfg)
		require.NoError(t, tc.HandshakeContext(ctx))
		f, err := streammedia.Bind(ctx, tc, k, bobTok)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		bob[k] = f
		require.NoError(t, aliceCtl.Publish(ctx, k, 100+uint32(k)))
		require.NoError(t, bobCtl.Publish(ctx, k, 200+uint32(k)))
	}
	require.Equal(t, int64(1+len(media.Kinds)), ht.Stats().Streams, "control and one stream per kind through the tunnel")

	buf := make([]byte, 1500)
	payloadType := map[media.Kind]uint8{media.Audio: 111, media.Video: 96, media.Content: 97}
	for _, k := range media.Kinds {
		for seq := range 20 {
			for _, dir := range []struct {
				from, to mediaFlow
				ssrc     uint32
			}{{alice[k], bob[k], 100 + uint32(k)}, {bob[k], alice[k], 200 + uint32(k)}} {
				pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: payloadType[k], SequenceNumber: uint16(seq), Timestamp: uint32(seq) * 960, SSRC: dir.ssrc},
					Payload: []byte{byte(k), byte(seq), 0xde, 0xad, 0xbe, 0xef}}).Marshal()
				require.NoError(t, err)
				require.NoError(t, dir.from.Send(pkt))
				n, err := dir.to.Recv(buf, time.Now().Add(10*time.Second))
				// A late BindAck (answer to a retransmitted UDP bind, seen
				// beside a CPU hog) or a KeepaliveAck is not media: skip it.
				for err == nil && (wire.Classify(buf[:n]) == wire.ClassBindAck || wire.Classify(buf[:n]) == wire.ClassKeepaliveAck) {
					n, err = dir.to.Recv(buf, time.Now().Add(10*time.Second))
				}
				require.NoError(t, err, "%v packet %d", k, seq)
				require.Equal(t, pkt, buf[:n], "%v packet %d", k, seq)
			}
		}
	}
	require.Greater(t, ht.Stats().BytesDown, uint64(3*20*18))
}
