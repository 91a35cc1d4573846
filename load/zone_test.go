package load_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/control"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	zproto "github.com/openmmr/mmr/zone/proto"
)

var joinSecret = []byte("load-test-join-secret-0123456789abcdef")

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("LOAD_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// box is a one-box zone assembled from its parts as cmd/mmr does (router,
// TLS edge with control channel, TLS media and ZC, the MMR's registration
// agent), with limits raised for a thousand participants from one
// loopback address, its /metrics served by metrics/prom, and a lookup
// server (connecttest.Web) for the connection process.
type box struct {
	r          *router.Router
	ctl        *control.Server
	zc         *zone.Server
	edge       *edge.Edge
	agent      *zcagent.Agent
	fp         string
	tlsAddr    netip.AddrPort
	metricsURL string
	web        *connecttest.Web
	msrv       *http.Server
}

func startBox(t testing.TB, meetings []string) *box {
	t.Helper()
	log := testLogger()
	b := &box{}
	cert, err := tlsutil.SelfSigned("127.0.0.1", "localhost")
	require.NoError(t, err)
	b.fp = tlsutil.Fingerprint(cert)
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	b.r, err = router.New(router.Config{UDP: []netip.AddrPort{lo}, TCP: []netip.AddrPort{lo}, Shards: 1, Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { b.r.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.tlsAddr = ln.Addr().(*net.TCPAddr).AddrPort()
	b.edge, err = edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(cert), Logger: log, HandshakeTimeout: time.Minute})
	require.NoError(t, err)
	met := prom.New(prom.Options{PerMeeting: true})
	eps := control.UDPEndpoints(b.r.UDPAddrs())
	for _, k := range media.Kinds {
		eps = append(eps, ctlproto.Endpoint{Kind: ctlproto.Kind(k), Transport: ctlproto.TransportTCP, Addr: b.r.TCPAddrs()[0]},
			ctlproto.Endpoint{Kind: ctlproto.Kind(k), Transport: ctlproto.TransportTLS, Addr: b.tlsAddr})
	}
	b.ctl, err = control.New(control.Config{TLS: tlsutil.ServerConfig(cert), Secret: joinSecret, Endpoints: eps, Logger: log,
		MaxConnsPerIP: 5000, MaxParticipants: 2000, SendQueue: 8192,
		// Generous for the race detector on a loaded 2-core machine.
		HandshakeTimeout: time.Minute, Observe: met.Observer()}, b.r)
	require.NoError(t, err)
	t.Cleanup(func() { b.ctl.Close() })
	b.edge.Handle(ctlproto.ALPN, b.ctl.HandleConn)
	b.edge.Handle("", b.ctl.HandleConn)
	b.edge.Handle(streammedia.ALPN, func(c net.Conn) { _ = b.r.ServeStream(c) })
	zoneSecret := []byte("load-test-zone-secret-0123456789abcdef")
	b.zc, err = zone.New(zone.Config{ID: "zc-load", DisableListen: true, Certificate: cert, Secrets: [][]byte{zoneSecret}, Logger: log,
		MaxConnsPerIP: 1000, MissedReports: 60}) // a starved agent may report late
	require.NoError(t, err)
	t.Cleanup(func() { b.zc.Close() })
	b.edge.Handle(zproto.ALPN, b.zc.HandleConn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.edge.Serve()
	}()
	t.Cleanup(func() {
		b.edge.Close()
		<-done
	})
	zcTLS, err := tlsutil.PinnedClientConfig(b.fp)
	require.NoError(t, err)
	zeps := zproto.Endpoints{UDP: b.r.UDPAddrs(), TCP: b.r.TCPAddrs(), TLS: []netip.AddrPort{b.tlsAddr}}
	b.agent, err = zcagent.New(zcagent.Config{ID: "mmr-load", ZCs: []string{b.tlsAddr.String()}, Secret: zoneSecret, TLS: zcTLS,
		Endpoints: zeps, Fingerprint: b.fp, Logger: log}, zcagent.LoadFunc(func() zcagent.Load {
		st := b.r.Stats()
		return zcagent.Load{Participants: st.Participants, Meetings: st.Meetings, Traffic: st.Counters}
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.agent.Close() })
	require.NoError(t, connecttest.Wait(context.Background(), 20*time.Second, func() bool {
		m := b.zc.MMRs()
		return len(m) > 0 && m[0].Selectable
	}), "the MMR did not register")

	met.Register(prom.Sources{Router: b.r, Edge: b.edge, Control: b.ctl, Zone: b.zc, Meetings: b.r})
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b.msrv = &http.Server{Handler: met.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.msrv.Serve(mln) }()
	t.Cleanup(func() { _ = b.msrv.Close() })
	b.metricsURL = "http://" + mln.Addr().String() + "/metrics"

	ms := map[string]string{}
	for _, m := range meetings {
		ms[m] = ""
	}
	b.web, err = connecttest.StartWeb(connecttest.WebConfig{JoinSecret: joinSecret, Meetings: ms,
		Zones: []connect.LookupZone{{Name: "load", Healthy: true, CheckedAt: time.Now().UTC(), ZCs: []connect.ZC{{Addr: b.tlsAddr.String(), Fingerprint: b.fp}}}}})
	require.NoError(t, err)
	t.Cleanup(b.web.Close)
	return b
}

func (b *box) connectConfig(t testing.TB) *connect.Config {
	tc, err := tlsutil.PinnedClientConfig(b.web.Fingerprint)
	require.NoError(t, err)
	// Timeouts generous for the race detector on a loaded 2-core machine:
	// the defaults are tuned for real networks, not for 500 handshakes
	// sharing two busy cores.
	const slow = 60 * time.Second
	return &connect.Config{Web: b.web.URL, WebTLS: tc, NoEnvProxy: true, Logger: testLogger(),
		LookupTimeout: slow, ZoneTimeout: slow, ProbeTimeout: slow, MMRTimeout: slow, ControlTimeout: slow,
		UDPGiveUp: 5 * time.Second, TCPTimeout: slow, TLSTimeout: slow}
}

func (b *box) mmrTLS(t testing.TB) *tls.Config {
	tc, err := tlsutil.PinnedClientConfig(b.fp)
	require.NoError(t, err)
	return tc
}
