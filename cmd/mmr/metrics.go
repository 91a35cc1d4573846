package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/openmmr/mmr/metrics"
	"github.com/openmmr/mmr/stats"
)

// metricsServer serves GET /metrics (Prometheus text format) on its own
// listener: operators scrape it from inside their network, so it is off by
// default and never shares the public TLS port.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// serveMetrics listens on addr and serves n's counters until close.
func serveMetrics(addr string, n *node) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tls, tcp := n.edge.Accepting(), n.r.Stats().TCPAccepting
		if !tls || !tcp {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "tls_accepting %v\ntcp_accepting %v\n", tls, tcp)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metrics.ContentType)
		n.writeMetrics(metrics.NewWriter(w))
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
			n.log.Error("mmr: metrics listener stopped", "err", err)
		}
	}()
	n.log.Info("mmr: metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return m, nil
}

// addr returns the bound address.
func (m *metricsServer) addr() netip.AddrPort { return addrPort(m.ln.Addr()) }

// close stops the server and its connections. Idempotent.
func (m *metricsServer) close() { _ = m.srv.Close() }

// writeMetrics writes a snapshot of the router, control channel and
// in-process zone controller counters.
func (n *node) writeMetrics(w *metrics.Writer) {
	rs := n.r.Stats()
	w.One("mmr_meetings", "Meetings hosted by the router.", metrics.Gauge, uint64(rs.Meetings))
	w.One("mmr_participants", "Participants in the router's meetings.", metrics.Gauge, uint64(rs.Participants))
	w.One("mmr_packets_in_total", "Datagrams and stream frames received.", metrics.Counter, rs.PacketsIn)
	w.One("mmr_bytes_in_total", "Bytes received (payload).", metrics.Counter, rs.BytesIn)
	w.One("mmr_packets_out_total", "Copies handed to the kernel, one per destination.", metrics.Counter, rs.PacketsOut)
	w.One("mmr_bytes_out_total", "Bytes of the copies handed to the kernel.", metrics.Counter, rs.BytesOut)
	w.One("mmr_gso_sent_total", "UDP GSO super-packets handed to the kernel (each carries several copies).", metrics.Counter, rs.GSOSent)
	w.One("mmr_gso_fallbacks_total", "Runs of copies sent one datagram per message because GSO was refused for the destination.", metrics.Counter, rs.GSOFallbacks)
	w.One("mmr_streams", "Live TCP and TLS media streams.", metrics.Gauge, uint64(rs.Streams))
	w.One("mmr_streams_max", "Router-wide cap on media streams (descriptors kept in reserve for the control port).", metrics.Gauge, uint64(rs.MaxStreams))
	w.One("mmr_tcp_accepting", "1 while every TCP media listener takes connections, 0 while Accept fails or after one stopped.", metrics.Gauge, b2u(rs.TCPAccepting))
	w.One("mmr_tcp_accept_errors_total", "TCP media listener Accept errors (EMFILE and the like), each retried after a back-off.", metrics.Counter, rs.TCPAcceptErrors)
	w.One("mmr_kernel_drops_total", "Datagrams the kernel dropped because a UDP socket's receive buffer was full (SO_RXQ_OVFL / SO_MEMINFO).", metrics.Counter, rs.KernelDrops)
	w.One("mmr_bind_challenges_total", "Return-routability challenges sent (BindAck status 1).", metrics.Counter, rs.BindChallenges)
	w.Family("mmr_drops_total", "Packets or copies dropped, by reason (docs/PROTOCOL.md, Drop reasons).", metrics.Counter)
	for r := range stats.NumDropReasons {
		w.Sample("mmr_drops_total", rs.Drops[r], "reason", r.String())
	}

	es := n.edge.Stats()
	w.One("mmr_tls_accepting", "1 while the shared TLS port takes connections, 0 while Accept fails or after it stopped.", metrics.Gauge, b2u(es.Accepting))
	w.One("mmr_tls_accept_errors_total", "TLS port Accept errors (EMFILE and the like), each retried after a back-off.", metrics.Counter, es.AcceptErrors)
	w.One("mmr_tls_accepted_total", "Connections accepted on the shared TLS port.", metrics.Counter, es.Accepted)
	w.One("mmr_tls_refused_total", "TLS port connections closed at once: too many handshakes in progress.", metrics.Counter, es.Refused)
	w.One("mmr_tls_refused_source_total", "TLS port connections closed at once: their source (IPv4 address, IPv6 /64) had its share of handshakes in progress.", metrics.Counter, es.RefusedSource)
	w.One("mmr_tls_handshake_failed_total", "TLS handshakes that failed or timed out on the shared port.", metrics.Counter, es.HandshakeFailed)
	w.One("mmr_tls_unrouted_total", "TLS connections whose ALPN protocol has no service.", metrics.Counter, es.Unrouted)

	cs := n.ctl.Stats()
	w.One("mmr_control_connections", "Open control connections, joined or not.", metrics.Gauge, uint64(cs.Conns))
	for _, c := range []struct {
		name, help string
		v          uint64
	}{
		{"accepted", "Control connections accepted.", cs.Accepted},
		{"rejected", "Control connections refused by the connection limits.", cs.Rejected},
		{"handshake_failed", "Control TLS handshakes that failed or timed out.", cs.HandshakeFailed},
		{"protocol_errors", "Control connections closed for bad frames or messages.", cs.ProtocolErrors},
		{"auth_failures", "Joins and resumes refused: bad, expired or other-meeting tokens.", cs.AuthFailures},
		{"auth_delayed", "Refused joins and resumes answered late: their address kept failing.", cs.AuthDelayed},
		{"joins", "Successful joins.", cs.Joins},
		{"resumes", "Successful resumes.", cs.Resumes},
		{"grace_expired", "Participants removed when their grace period ran out.", cs.GraceExpired},
		{"timeouts", "Control connections closed by the handshake or idle timeout.", cs.Timeouts},
		{"slow_consumers", "Control connections closed because their send queue was full.", cs.SlowConsumers},
		{"rate_limited", "Control messages refused by the request rate limit.", cs.RateLimited},
		{"rate_cut_off", "Control connections closed for sending on while rate limited.", cs.RateCutOff},
		{"media_keys", "Standard-mode meeting keys made after membership changes (each sent in one media-key event).", cs.MediaKeys},
		{"wraps_relayed", "E2EE key wraps relayed to their recipient.", cs.WrapsRelayed},
		{"wraps_refused", "E2EE key wraps refused (bad, forged, unknown recipient, over budget).", cs.WrapsRefused},
	} {
		w.One("mmr_control_"+c.name+"_total", c.help, metrics.Counter, c.v)
	}

	if n.zc != nil {
		zs := n.zc.Stats()
		w.One("mmr_zone_mmrs", "Live MMRs known to the in-process zone controller.", metrics.Gauge, uint64(zs.MMRs))
		w.One("mmr_zone_lookups_total", "Zone lookups answered.", metrics.Counter, zs.Lookups)
		w.One("mmr_zone_registrations_total", "MMR registrations.", metrics.Counter, zs.Registrations)
		w.One("mmr_zone_auth_failures_total", "MMR registrations whose zone-secret proof failed.", metrics.Counter, zs.AuthFailures)
		w.One("mmr_zone_rate_limited_total", "Zone connections closed for exceeding a rate.", metrics.Counter, zs.RateLimited)
	}
	if n.web != nil {
		ws := n.web.srv.Stats()
		w.One("mmr_web_lookups_total", "Meeting lookups answered 200 by the web tier.", metrics.Counter, ws.Lookups)
		w.Family("mmr_web_refused_total", "Web tier error answers, by code (docs/PROTOCOL.md, Web tier).", metrics.Counter)
		codes := make([]string, 0, len(ws.Refused))
		for c := range ws.Refused {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for _, c := range codes {
			w.Sample("mmr_web_refused_total", ws.Refused[c], "code", c)
		}
		ss := n.web.sniff.Stats()
		w.Family("mmr_web_sniffed_total", "TLS connections without ALPN, by what their first byte said.", metrics.Counter)
		w.Sample("mmr_web_sniffed_total", ss.HTTP, "as", "http")
		w.Sample("mmr_web_sniffed_total", ss.Other, "as", "control")
		w.Sample("mmr_web_sniffed_total", ss.Failed, "as", "failed")
	}
	_ = w.Flush() // a scraper that went away
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
