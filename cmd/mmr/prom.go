package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/openmmr/mmr/metrics/prom"
)

// promSources lists the node's components for metrics/prom: each is read
// by its Stats() at scrape time only.
func (n *node) promSources() prom.Sources {
	s := prom.Sources{Router: n.r, Edge: n.edge, Control: n.ctl, Meetings: n.r}
	if n.zc != nil {
		s.Zone = n.zc
	}
	if n.web != nil {
		s.Web, s.Sniff = n.web.srv, n.web.sniff
	}
	return s
}

// servePromMetrics listens on addr and serves m (GET /metrics in the
// Prometheus text format, and /debug/pprof/ when m was made with
// Options.Pprof) until close. It replaces serveMetrics: same listener
// hardening, client_golang collectors instead of the hand-written writer.
func servePromMetrics(addr string, n *node, m *prom.Metrics) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	ms := &metricsServer{ln: ln, srv: &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 5 * time.Second,  // a scraper that stalls holds nothing
		WriteTimeout:      60 * time.Second, // room for a 30 s CPU profile
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}}
	go func() {
		if err := ms.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("mmr: metrics listener stopped", "err", err)
		}
	}()
	n.log.Info("mmr: metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return ms, nil
}
