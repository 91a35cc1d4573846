package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/load"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/metrics/dashboard"
	promscrape "github.com/openmmr/mmr/metrics/scrape"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
)

// scrape fetches /metrics and parses it with the Prometheus text parser
// (metrics/scrape); it returns the families and their samples flattened
// as load.Scrape does (name{label="value"}, histograms as name_count and
// name_sum).
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, map[string]float64) {
	t.Helper()
	fams, err := promscrape.Families(url)
	require.NoError(t, err)
	return fams, load.Flatten(fams)
}

// get answers a GET's status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// joinUDP joins who to meeting through n's control channel (a token signed
// with the state's join secret) and binds a UDP audio flow publishing ssrc.
func joinUDP(t *testing.T, n *node, state, meeting, who string, ssrc uint32) (*ctlclient.Client, *udpmedia.Flow) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret, err := os.ReadFile(filepath.Join(state, "join.secret"))
	require.NoError(t, err)
	tok, err := token.Mint(bytes.TrimSuffix(secret, []byte("\n")), token.Claims{Meeting: meeting, Identity: who, Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	pin, err := tlsutil.PinnedClientConfig(n.fp)
	require.NoError(t, err)
	c, err := ctlclient.Dial(ctx, addrPort(n.edge.Addr()).String(), ctlclient.Config{TLS: pin})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	j, err := c.Join(ctx, meeting, tok, who)
	require.NoError(t, err)
	mt, err := wire.ParseToken(j.MediaToken)
	require.NoError(t, err)
	for _, ep := range j.Endpoints {
		if ep.Transport == "udp" && media.Kind(ep.Kind) == media.Audio {
			f, err := udpmedia.Dial(ctx, ep.Addr, media.Audio, mt)
			require.NoError(t, err)
			t.Cleanup(func() { f.Close() })
			require.NoError(t, c.Publish(ctx, media.Audio, ssrc))
			return c, f
		}
	}
	t.Fatal("joined lists no UDP audio endpoint")
	return nil, nil
}

// families is every family `mmr -metrics` exports with no meeting running
// (the hand-written writer's, kept under the same names, and the new ones).
var families = map[string]dto.MetricType{
	"mmr_meetings": dto.MetricType_GAUGE, "mmr_participants": dto.MetricType_GAUGE,
	"mmr_packets_in_total": dto.MetricType_COUNTER, "mmr_bytes_in_total": dto.MetricType_COUNTER,
	"mmr_packets_out_total": dto.MetricType_COUNTER, "mmr_bytes_out_total": dto.MetricType_COUNTER,
	"mmr_gso_sent_total": dto.MetricType_COUNTER, "mmr_gso_fallbacks_total": dto.MetricType_COUNTER,
	"mmr_streams": dto.MetricType_GAUGE, "mmr_streams_max": dto.MetricType_GAUGE,
	"mmr_tcp_accepting": dto.MetricType_GAUGE, "mmr_tcp_accept_errors_total": dto.MetricType_COUNTER,
	"mmr_kernel_drops_total": dto.MetricType_COUNTER, "mmr_bind_challenges_total": dto.MetricType_COUNTER,
	"mmr_drops_total":   dto.MetricType_COUNTER,
	"mmr_tls_accepting": dto.MetricType_GAUGE, "mmr_tls_accept_errors_total": dto.MetricType_COUNTER,
	"mmr_tls_accepted_total": dto.MetricType_COUNTER, "mmr_tls_refused_total": dto.MetricType_COUNTER,
	"mmr_tls_refused_source_total": dto.MetricType_COUNTER, "mmr_tls_handshake_failed_total": dto.MetricType_COUNTER,
	"mmr_tls_unrouted_total":  dto.MetricType_COUNTER,
	"mmr_control_connections": dto.MetricType_GAUGE, "mmr_control_meetings": dto.MetricType_GAUGE,
	"mmr_control_participants":   dto.MetricType_GAUGE,
	"mmr_control_accepted_total": dto.MetricType_COUNTER, "mmr_control_rejected_total": dto.MetricType_COUNTER,
	"mmr_control_handshake_failed_total": dto.MetricType_COUNTER, "mmr_control_protocol_errors_total": dto.MetricType_COUNTER,
	"mmr_control_auth_failures_total": dto.MetricType_COUNTER, "mmr_control_auth_delayed_total": dto.MetricType_COUNTER,
	"mmr_control_joins_total": dto.MetricType_COUNTER, "mmr_control_resumes_total": dto.MetricType_COUNTER,
	"mmr_control_grace_expired_total": dto.MetricType_COUNTER, "mmr_control_timeouts_total": dto.MetricType_COUNTER,
	"mmr_control_slow_consumers_total": dto.MetricType_COUNTER, "mmr_control_rate_limited_total": dto.MetricType_COUNTER,
	"mmr_control_rate_cut_off_total": dto.MetricType_COUNTER,
	"mmr_control_join_seconds":       dto.MetricType_HISTOGRAM, "mmr_control_rtt_seconds": dto.MetricType_HISTOGRAM,
	"mmr_zone_mmrs": dto.MetricType_GAUGE, "mmr_zone_lookups_total": dto.MetricType_COUNTER,
	"mmr_zone_registrations_total": dto.MetricType_COUNTER, "mmr_zone_auth_failures_total": dto.MetricType_COUNTER,
	"mmr_zone_rate_limited_total": dto.MetricType_COUNTER, "mmr_zone_reports_total": dto.MetricType_COUNTER,
	"mmr_web_lookups_total": dto.MetricType_COUNTER, "mmr_web_refused_total": dto.MetricType_COUNTER,
	"mmr_web_sniffed_total": dto.MetricType_COUNTER,
	"go_goroutines":         dto.MetricType_GAUGE, "go_memstats_heap_alloc_bytes": dto.MetricType_GAUGE,
	"go_build_info":             dto.MetricType_GAUGE,
	"process_cpu_seconds_total": dto.MetricType_COUNTER, "process_resident_memory_bytes": dto.MetricType_GAUGE,
}

// TestMetrics: `mmr -metrics` serves its components through metrics/prom,
// parsed with the Prometheus text parser: every family of the old writer
// is there with its type, the values follow real traffic (a stray
// datagram, a failed TLS handshake, two joins over the control channel
// and a packet between them), per-meeting gauges appear with
// -metrics-per-meeting, pprof answers with -pprof, and the listener goes
// away with the node.
func TestMetrics(t *testing.T) {
	leaktest.Check(t)
	defer http.DefaultClient.CloseIdleConnections()
	var base string
	t.Run("serve", func(t *testing.T) {
		n, state, logs := startNode(t, "-metrics", "127.0.0.1:0", "-metrics-per-meeting", "-pprof")
		base = "http://" + n.met.Addr().String()
		fams, before := scrape(t, base+"/metrics")
		for name, typ := range families {
			require.Contains(t, fams, name)
			require.Equal(t, typ, fams[name].GetType(), name)
		}
		for r := range stats.NumDropReasons {
			require.Contains(t, before, fmt.Sprintf("mmr_drops_total{reason=%q}", r.String()), "every drop reason is listed")
		}
		require.Contains(t, before, `mmr_web_refused_total{code="wrong-passcode"}`, "web tier refusals by code")
		require.Contains(t, before, `mmr_web_sniffed_total{as="http"}`)

		// A datagram from an unbound address and a TLS handshake that fails.
		c, err := net.Dial("udp", n.r.UDPAddrs()[0].String())
		require.NoError(t, err)
		_, err = c.Write([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
		require.NoError(t, err)
		c.Close()
		tc, err := net.Dial("tcp", n.edge.Addr().String())
		require.NoError(t, err)
		_, _ = tc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, _ = io.Copy(io.Discard, tc) // until the server closes it
		tc.Close()
		// Two participants and a packet from one to the other.
		_, alice := joinUDP(t, n, state, "standup", "alice", 5)
		bobCtl, bob := joinUDP(t, n, state, "standup", "bob", 6)
		pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 5}, Payload: []byte("hi bob")}).Marshal()
		require.NoError(t, err)
		require.NoError(t, alice.Send(pkt))
		_, err = bob.Recv(make([]byte, 1500), time.Now().Add(10*time.Second))
		require.NoError(t, err)

		var m map[string]float64
		defer func() {
			if t.Failed() {
				t.Logf("before %v\nafter %v", before, m)
			}
		}()
		require.Eventually(t, func() bool {
			_, m = scrape(t, base+"/metrics")
			return m[`mmr_drops_total{reason="unbound_source"}`] == before[`mmr_drops_total{reason="unbound_source"}`]+1 &&
				m["mmr_tls_handshake_failed_total"] == before["mmr_tls_handshake_failed_total"]+1 &&
				m["mmr_packets_in_total"] >= before["mmr_packets_in_total"]+2 && // the stray datagram, the RTP packet
				m["mmr_packets_out_total"] >= before["mmr_packets_out_total"]+1 &&
				m["mmr_control_joins_total"] == before["mmr_control_joins_total"]+2 &&
				m["mmr_control_join_seconds_count"] == 2 &&
				m["mmr_control_rtt_seconds_count"] >= 2 && // the server pings each joined client at once
				m["mmr_participants"] == 2 && m["mmr_meetings"] == 1 &&
				m[`mmr_meeting_participants{meeting="standup"}`] == 2 &&
				m[`mmr_meeting_packets_out_total{meeting="standup"}`] >= 1 &&
				m["mmr_zone_mmrs"] == 1 // this MMR registered with its in-process ZC
		}, 20*time.Second, 50*time.Millisecond)
		require.Positive(t, m["mmr_control_join_seconds_sum"])
		// Every mmr_, go_ and process_ name the Grafana dashboard queries.
		missing, err := dashboard.MissingFrom(dashboard.Path, base+"/metrics", "mmr")
		require.NoError(t, err)
		require.Empty(t, missing, "queried by docs/grafana/openmmr.json, not exported")
		require.Equal(t, 1.0, m["mmr_tls_accepting"])
		require.Equal(t, 1.0, m["mmr_tcp_accepting"])

		// One log line per join and per leave.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, bobCtl.Leave(ctx))
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), `msg="control: left"`) }, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, 2, strings.Count(logs.String(), `msg="control: joined"`), logs.String())
		require.Equal(t, 1, strings.Count(logs.String(), `msg="control: left"`), logs.String())

		code, body := get(t, base+"/health")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "tls_accepting true\ntcp_accepting true\n", body)
		resp, err := http.Post(base+"/metrics", "text/plain", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

		code, body = get(t, base+"/debug/pprof/")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "goroutine")
		code, body = get(t, base+"/debug/pprof/goroutine?debug=1")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "goroutine profile: total")
		code, _ = get(t, base+"/debug/pprof/cmdline")
		require.Equal(t, http.StatusOK, code)
	})
	// The node stopped with the subtest: nothing listens there any more.
	_, err := http.Get(base + "/metrics")
	require.Error(t, err)

	t.Run("defaults", func(t *testing.T) {
		n, _, _ := startNode(t, "-metrics", "127.0.0.1:0")
		require.NoError(t, n.r.CreateMeeting("m"))
		base := "http://" + n.met.Addr().String()
		_, m := scrape(t, base+"/metrics")
		require.Equal(t, 1.0, m["mmr_meetings"])
		for k := range m {
			require.False(t, strings.HasPrefix(k, "mmr_meeting_"), "per-meeting series without -metrics-per-meeting: %s", k)
		}
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/debug/pprof/profile"} {
			code, _ := get(t, base+p)
			require.Equal(t, http.StatusNotFound, code, "pprof without -pprof: %s", p)
		}
	})
	http.DefaultClient.CloseIdleConnections()
}
