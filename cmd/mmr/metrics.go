package main

import (
	"fmt"
	"net/http"

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

// serveMetrics serves n.prom on addr (-metrics): GET /metrics in the
// Prometheus text format, GET /health (503 while the TLS port or a TCP
// media listener is not accepting) and, with -pprof, /debug/pprof/. It is
// a listener of its own, never the public TLS port: operators scrape it
// from inside their network.
func (n *node) serveMetrics(addr string) error {
	n.prom.Register(n.promSources())
	mux := n.prom.Handler()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tls, tcp := n.edge.Accepting(), n.r.Stats().TCPAccepting
		if !tls || !tcp {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "tls_accepting %v\ntcp_accepting %v\n", tls, tcp)
	})
	var err error
	n.met, err = prom.Serve(addr, "-metrics", mux, n.log)
	return err
}
