package prom_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/metrics/prom"
	promscrape "github.com/openmmr/mmr/metrics/scrape"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/tunnel"
	"github.com/openmmr/mmr/zone"
)

var secret = []byte("prom-test-join-secret-0123456789abcdef")

func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	fams, err := promscrape.Families(url)
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "|" + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key+"|count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestCollectors: a real zone and a real participant; the scrape follows
// them (gauges, per-meeting gauges, control and zone counters). The
// zone's control server has no observer, so the histograms are fed here
// with the client's own join and ping times; load's TestConference checks
// them fed by control.Config.Observe.
func TestCollectors(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	z, err := connecttest.StartZone(connecttest.ZoneConfig{JoinSecret: secret})
	require.NoError(t, err)
	defer z.Close()
	m := prom.New(prom.Options{PerMeeting: true})
	m.Register(prom.Sources{Router: z.Router, Control: z.Control, Zone: z.ZC, Meetings: z.Router})
	obs := m.Observer()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	before := scrape(t, srv.URL+"/metrics")
	require.Zero(t, before["mmr_meetings"])
	require.Contains(t, before, "mmr_drops_total|reason=unbound_source")
	require.Contains(t, before, "process_cpu_seconds_total")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := control.Dial(ctx, z.TLSAddr.String(), control.Config{TLS: z.ZCTLS()})
	require.NoError(t, err)
	defer c.Close()
	tok, err := token.Mint(secret, token.Claims{Meeting: "m1", Identity: "alice", Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	start := time.Now()
	_, err = c.Join(ctx, "m1", tok, "alice")
	require.NoError(t, err)
	obs.JoinLatency(time.Since(start))
	rtt, _, err := c.Ping(ctx)
	require.NoError(t, err)
	obs.ControlRTT(rtt)

	after := scrape(t, srv.URL+"/metrics")
	require.EqualValues(t, 1, after["mmr_meetings"])
	require.EqualValues(t, 1, after["mmr_participants"])
	require.EqualValues(t, 1, after["mmr_meeting_participants|meeting=m1"])
	require.EqualValues(t, before["mmr_control_joins_total"]+1, after["mmr_control_joins_total"])
	require.EqualValues(t, 1, after["mmr_control_join_seconds|count"])
	require.EqualValues(t, 1, after["mmr_control_rtt_seconds|count"])
	require.Positive(t, after["mmr_zone_lookups_total"]+after["mmr_zone_registrations_total"])

	// Per-meeting gauges only when asked for.
	m2 := prom.New(prom.Options{})
	m2.Register(prom.Sources{Router: z.Router, Meetings: z.Router})
	srv2 := httptest.NewServer(m2.Handler())
	defer srv2.Close()
	for k := range scrape(t, srv2.URL+"/metrics") {
		require.False(t, strings.HasPrefix(k, "mmr_meeting_"), k)
	}
	resp, err := http.Get(srv2.URL + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestStandaloneNames: in its own binary a component's families drop the
// component part (zc_lookups_total, ht_streams); in the MMR they keep it
// (mmr_zone_lookups_total, TestCollectors).
func TestStandaloneNames(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	zs, err := zone.New(zone.Config{DisableListen: true, Certificate: cert, Secrets: [][]byte{[]byte("prom-test-zone-secret-0123456789abcdef")}})
	require.NoError(t, err)
	defer zs.Close()
	ts, err := tunnel.NewServer(tunnel.Config{Name: "t", Secret: secret, Zones: []string{"127.0.0.1:1"}})
	require.NoError(t, err)
	defer ts.Close()
	for _, tc := range []struct {
		prefix string
		src    prom.Sources
		want   []string
	}{
		{"zc", prom.Sources{Zone: zs}, []string{"zc_mmrs", "zc_lookups_total", "zc_registrations_total", "zc_expired_total"}},
		{"ht", prom.Sources{Tunnel: ts}, []string{"ht_connections", "ht_streams", "ht_streams_opened_total", "ht_refused_total|reason=token-invalid",
			"ht_stream_ends_total|reason=slow-consumer", "ht_log_suppressed_total"}},
		{"mmr", prom.Sources{Zone: zs, Tunnel: ts}, []string{"mmr_zone_mmrs", "mmr_zone_lookups_total", "mmr_tunnel_streams", "mmr_tunnel_refused_total|reason=leaving"}},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			m := prom.New(prom.Options{Prefix: tc.prefix})
			m.Register(tc.src)
			srv := httptest.NewServer(m.Handler())
			defer srv.Close()
			got := scrape(t, srv.URL+"/metrics")
			for _, w := range tc.want {
				require.Contains(t, got, w)
			}
			for k := range got {
				require.False(t, strings.HasPrefix(k, tc.prefix+"_zone_") && tc.prefix != "mmr", k)
				require.False(t, strings.HasPrefix(k, tc.prefix+"_tunnel_") && tc.prefix != "mmr", k)
			}
		})
	}
}

// TestServe: the -metrics listener serves the handler, names its flag in
// a bind error, and Close ends it (idempotent).
func TestServe(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m := prom.New(prom.Options{Prefix: "zc"})
	s, err := prom.Serve("127.0.0.1:0", "-metrics", m.Handler(), log)
	require.NoError(t, err)
	url := "http://" + s.Addr().String() + "/metrics"
	require.Contains(t, scrape(t, url), "go_goroutines")
	require.Contains(t, logs.String(), url)
	_, err = prom.Serve(s.Addr().String(), "-metrics", m.Handler(), log)
	require.ErrorContains(t, err, "-metrics: ")
	s.Close()
	s.Close()
	_, err = http.Get(url)
	require.Error(t, err)
}
