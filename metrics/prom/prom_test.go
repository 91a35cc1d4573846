package prom_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/metrics/prom"
)

var secret = []byte("prom-test-join-secret-0123456789abcdef")

func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
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

// TestDashboard: every mmr_ metric the Grafana dashboard queries for the
// router, control channel and zone exists in a scrape (web tier and tunnel
// families are named in the collector beside their Stats fields).
func TestDashboard(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	z, err := connecttest.StartZone(connecttest.ZoneConfig{JoinSecret: secret})
	require.NoError(t, err)
	defer z.Close()
	m := prom.New(prom.Options{PerMeeting: true})
	m.Register(prom.Sources{Router: z.Router, Control: z.Control, Zone: z.ZC, Meetings: z.Router})
	m.Observer()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	b, err := os.ReadFile("../../docs/grafana/openmmr.json")
	require.NoError(t, err)
	names := regexp.MustCompile(`\bmmr_[a-z_]+`).FindAllString(string(b), -1)
	require.NotEmpty(t, names)
	for _, n := range names {
		n = strings.TrimSuffix(n, "_bucket")
		if strings.HasPrefix(n, "mmr_web_") || strings.HasPrefix(n, "mmr_tunnel_") || strings.HasPrefix(n, "mmr_tls_") ||
			strings.HasPrefix(n, "mmr_meeting_") || n == "mmr_zone_" || n == "mmr_" {
			continue
		}
		require.Contains(t, fams, n, "the dashboard queries %s", n)
	}
}
