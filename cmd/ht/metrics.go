package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/openmmr/mmr/metrics"
	"github.com/openmmr/mmr/tunnel"
)

// metricsServer serves GET /metrics (Prometheus text format) on its own
// listener, like the MMR's: operators scrape it from inside their network,
// so it is off by default and never shares the public port.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// serveMetrics listens on addr and serves s's counters until close.
func serveMetrics(addr string, s *tunnel.Server, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metrics.ContentType)
		writeMetrics(metrics.NewWriter(w), s.Stats())
	})
	m := &metricsServer{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second, // a scraper that stalls holds nothing
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ht: metrics listener stopped", "err", err)
		}
	}()
	log.Info("ht: metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return m, nil
}

// close stops the server and its connections. Idempotent.
func (m *metricsServer) close() { _ = m.srv.Close() }

// writeMetrics writes a snapshot of the tunnel server's counters.
func writeMetrics(w *metrics.Writer, st tunnel.Stats) {
	w.One("ht_connections", "Open TCP connections (idle, pinging or tunnelling).", metrics.Gauge, uint64(max(st.Conns, 0)))
	w.One("ht_streams", "Open tunnelled streams.", metrics.Gauge, uint64(max(st.Streams, 0)))
	w.One("ht_accepted_total", "TCP connections accepted within the connection limit.", metrics.Counter, st.Accepted)
	w.One("ht_pings_total", "Pings answered.", metrics.Counter, st.Pings)
	w.One("ht_streams_opened_total", "Streams opened.", metrics.Counter, st.Opened)
	w.One("ht_bytes_up_total", "Bytes relayed from clients to destinations.", metrics.Counter, st.BytesUp)
	w.One("ht_bytes_down_total", "Bytes relayed from destinations to clients.", metrics.Counter, st.BytesDown)
	w.One("ht_conn_timeouts_total", "Connections closed before any request: handshake or header timeout, bad TLS, idle keep-alive.", metrics.Counter, st.ConnTimeout)
	w.Family("ht_refused_total", "Connections, pings and streams refused, by reason (docs/PROTOCOL.md, HTTP tunnel).", metrics.Counter)
	for r := range tunnel.NumRefusals {
		w.Sample("ht_refused_total", st.Refused[r], "reason", r.String())
	}
	w.Family("ht_stream_ends_total", "Streams ended, by reason.", metrics.Counter)
	for e := range tunnel.NumEnds {
		w.Sample("ht_stream_ends_total", st.Ended[e], "reason", e.String())
	}
	w.One("ht_log_suppressed_total", "Refusal log lines suppressed by the log rate limit.", metrics.Counter, st.LogDropped)
	_ = w.Flush() // a scraper that went away
}
