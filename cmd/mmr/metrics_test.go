package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// scrape fetches and parses /metrics: every line must be a HELP, a TYPE or
// a sample of the family they announced; it returns the samples.
func scrape(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "version=0.0.4")
	sample := regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="[a-z_-]+"\})? ([0-9]+)$`)
	out := map[string]uint64{}
	family := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			family = strings.Fields(line)[2]
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			require.Equal(t, family, f[2], line)
			require.Contains(t, []string{"counter", "gauge"}, f[3], line)
		default:
			m := sample.FindStringSubmatch(line)
			require.NotNil(t, m, "not a sample line: %q", line)
			require.Equal(t, family, m[1], "sample outside its family: %q", line)
			v, err := strconv.ParseUint(m[3], 10, 64)
			require.NoError(t, err)
			out[m[1]+m[2]] = v
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// TestMetrics: the -metrics endpoint serves the router's, control
// channel's and zone controller's counters in the Prometheus text format,
// they follow real traffic, and the listener goes away with the node.
func TestMetrics(t *testing.T) {
	leaktest.Check(t)
	var url string
	t.Run("serve", func(t *testing.T) {
		n, _, _ := startNode(t, "-metrics", "127.0.0.1:0")
		url = "http://" + n.met.addr().String() + "/metrics"
		before := scrape(t, url)
		require.Contains(t, before, `mmr_drops_total{reason="keyframe_throttled"}`, "every drop reason is listed")
		require.Contains(t, before, `mmr_web_refused_total{code="wrong-passcode"}`, "web tier refusals by code")
		require.Contains(t, before, `mmr_web_lookups_total`)
		require.Contains(t, before, "mmr_kernel_drops_total", "kernel receive-buffer drops are exported")

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

		var m map[string]uint64
		defer func() {
			if t.Failed() {
				t.Logf("before %v\nafter %v", before, m)
			}
		}()
		require.Eventually(t, func() bool {
			m = scrape(t, url)
			return m[`mmr_drops_total{reason="unbound_source"}`] == before[`mmr_drops_total{reason="unbound_source"}`]+1 &&
				m["mmr_packets_in_total"] == before["mmr_packets_in_total"]+1 &&
				m["mmr_tls_handshake_failed_total"] == before["mmr_tls_handshake_failed_total"]+1 &&
				m["mmr_zone_mmrs"] == 1 // this MMR registered with its in-process ZC
		}, 5*time.Second, 20*time.Millisecond)

		require.Equal(t, uint64(1), m["mmr_tls_accepting"])
		require.Equal(t, uint64(1), m["mmr_tcp_accepting"])
		hr, err := http.Get(strings.TrimSuffix(url, "/metrics") + "/health")
		require.NoError(t, err)
		hb, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		require.Equal(t, http.StatusOK, hr.StatusCode)
		require.Equal(t, "tls_accepting true\ntcp_accepting true\n", string(hb))

		resp, err := http.Post(url, "text/plain", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		http.DefaultClient.CloseIdleConnections()
	})
	// The node stopped with the subtest: nothing listens there any more.
	_, err := http.Get(url)
	require.Error(t, err)
	http.DefaultClient.CloseIdleConnections()
}
