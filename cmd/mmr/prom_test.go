package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/stats"
)

// TestPromMetrics: the node's components through metrics/prom, scraped and
// parsed with the Prometheus text parser; pprof only when enabled.
func TestPromMetrics(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	n, _, _ := startNode(t)
	for _, pprofOn := range []bool{false, true} {
		m := prom.New(prom.Options{Pprof: pprofOn, PerMeeting: true})
		m.Register(n.promSources())
		m.Observer()
		ms, err := servePromMetrics("127.0.0.1:0", n, m)
		require.NoError(t, err)
		base := "http://" + ms.addr().String()
		resp, err := http.Get(base + "/metrics")
		require.NoError(t, err)
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		for _, f := range []string{"mmr_packets_in_total", "mmr_drops_total", "mmr_control_joins_total", "mmr_zone_mmrs", "mmr_web_lookups_total",
			"mmr_web_refused_total", "mmr_web_sniffed_total", "mmr_tls_accepted_total", "mmr_control_join_seconds", "mmr_control_rtt_seconds",
			"process_cpu_seconds_total", "go_goroutines"} {
			require.Contains(t, fams, f)
		}
		require.Len(t, fams["mmr_drops_total"].GetMetric(), int(stats.NumDropReasons), "every drop reason")
		resp, err = http.Get(base + "/debug/pprof/")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if pprofOn {
			require.Equal(t, http.StatusOK, resp.StatusCode)
		} else {
			require.Equal(t, http.StatusNotFound, resp.StatusCode)
		}
		ms.close()
	}
}
