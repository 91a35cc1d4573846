package web

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
)

// startControl starts the real router and a control server on loopback
// with the web tier's join secret, both closed when the test ends, and
// returns the server and a client TLS config pinning its certificate.
func startControl(t *testing.T) (*control.Server, *tls.Config) {
	t.Helper()
	rt, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quietLogger(), SocketBuffer: 256 << 10})
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	ctl, err := control.New(control.Config{Addr: "127.0.0.1:0", TLS: tlsutil.ServerConfig(cert), Secret: testSecret,
		Endpoints: control.UDPEndpoints(rt.UDPAddrs()), Logger: quietLogger()}, rt)
	require.NoError(t, err)
	require.NoError(t, ctl.Start())
	t.Cleanup(func() { ctl.Close() })
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(cert))
	require.NoError(t, err)
	return ctl, pin
}

// TestTokenJoinsControl: the join token of a lookup joins the real control
// channel (a control.Server over the real router, same join secret), with
// the role the lookup named; a webinar attendee (viewer) cannot publish, a
// panelist and the host can.
func TestTokenJoinsControl(t *testing.T) {
	leaktest.Check(t)
	ctl, pin := startControl(t)

	site := testSite()
	site.Zones = testZones(t)
	e := newEnv(t, "", site)
	c := e.client(t, "")
	web := e.createMeeting(t, map[string]any{"type": "webinar", "passcode": "777777", "host_key": "hostkey1", "panelist_key": "panel123"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	join := func(extra map[string]any, name string) (*ctlclient.Client, *proto.Joined, lookupAnswer) {
		req := map[string]any{"meeting_id": web.ID, "passcode": "777777", "name": name}
		for k, v := range extra {
			req[k] = v
		}
		a, l := e.lookup(t, c, req)
		require.Equal(t, http.StatusOK, a.status, string(a.body))
		cl, err := ctlclient.Dial(ctx, ctl.Addr().String(), ctlclient.Config{TLS: pin})
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		j, err := cl.Join(ctx, l.Meeting.ID, l.JoinToken, "")
		require.NoError(t, err, "the lookup's token joins the control channel")
		return cl, j, l
	}
	host, hj, hl := join(map[string]any{"host_key": "hostkey1"}, "Hana")
	require.Equal(t, "host", hl.Role)
	require.Equal(t, "host", hj.Role)
	require.Equal(t, web.ID, hj.Meeting, "the MMR meeting ID is the 10-11 digit string")
	require.NoError(t, host.Publish(ctx, media.Audio, 1001))

	panelist, pj, pl := join(map[string]any{"panelist_key": "panel123"}, "Piet")
	require.Equal(t, "participant", pl.Role)
	require.Equal(t, "participant", pj.Role)
	require.NoError(t, panelist.Publish(ctx, media.Video, 2002))
	names := map[string]bool{}
	for _, p := range pj.Roster {
		names[p.Name] = true
	}
	require.True(t, names["Hana"], "the display name from the token (version 2) is the roster name: %+v", pj.Roster)

	viewer, vj, vl := join(nil, "Vera")
	require.Equal(t, "viewer", vl.Role, "webinar attendee")
	require.Equal(t, "viewer", vj.Role)
	err := viewer.Publish(ctx, media.Audio, 3003)
	require.Error(t, err, "a viewer's token cannot publish")
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeForbidden})

	// A token is for its meeting only.
	other := e.createMeeting(t, map[string]any{"passcode": ""})
	_, ol := e.lookup(t, c, map[string]any{"meeting_id": other.ID, "name": "Olga"})
	cl, err := ctlclient.Dial(ctx, ctl.Addr().String(), ctlclient.Config{TLS: pin})
	require.NoError(t, err)
	defer cl.Close()
	_, err = cl.Join(ctx, web.ID, ol.JoinToken, "")
	require.ErrorIs(t, err, &proto.Error{Code: proto.CodeWrongMeeting})
}

// TestZoneHealthRanking: a zone whose ZC answers (a real zone controller)
// stays in its Geo-IP place; zones whose ZCs do not are moved to the end,
// not dropped, and the answer says which were seen healthy and when.
func TestZoneHealthRanking(t *testing.T) {
	leaktest.Check(t)
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	zc, err := zone.New(zone.Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Certificate: cert, Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, Logger: quietLogger()})
	require.NoError(t, err)
	defer zc.Close()
	site := testSite()
	site.Zones = testZones(t)
	site.Zones[2].ZCs = append(site.Zones[2].ZCs, config.ZC{Addr: zc.Addr().String(), Fingerprint: tlsutil.Fingerprint(cert)}) // gru: one of two answers
	site.Web.ZoneCheckInterval = config.Duration(50 * time.Millisecond)
	site.Web.ZoneCheckTimeout = config.Duration(15 * time.Second) // a loaded machine must not fail the live ZC
	e := newEnv(t, "", site)
	m := e.createMeeting(t, map[string]any{"passcode": ""})
	require.Eventually(t, func() bool { return e.srv.Stats().ZoneChecks >= 1 }, 20*time.Second, 10*time.Millisecond)
	_, l := e.lookup(t, e.client(t, ""), map[string]any{"meeting_id": m.ID, "name": "x"})
	require.Equal(t, []string{"gru", "ams", "sin"}, zoneNames(l), "healthy first, the others keep their order at the end")
	require.True(t, l.Zones[0].Healthy)
	require.False(t, l.Zones[1].Healthy)
	require.False(t, l.Zones[2].Healthy)
	for _, z := range l.Zones {
		at, err := time.Parse(time.RFC3339, z.CheckedAt)
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), at, time.Minute)
	}
	require.Len(t, l.Zones[0].ZCs, 2)

	zc.Close()
	require.Eventually(t, func() bool {
		_, l := e.lookup(t, e.client(t, ""), map[string]any{"meeting_id": m.ID, "name": "x"})
		return !l.Zones[2].Healthy && l.Zones[0].Name == "ams"
	}, 20*time.Second, 20*time.Millisecond, "all down: the default order again, none dropped")
}
