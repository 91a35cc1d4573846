// Package prom exposes openmmr's counters to Prometheus with
// github.com/prometheus/client_golang: custom Collectors that read each
// component's existing Stats() snapshot at scrape time (the packet path
// does no extra work and the core packages do not import client_golang),
// the Go runtime and process collectors, histograms of the control
// channel's join latency and RTT (fed through control.Config.Observe),
// optional per-meeting gauges, and net/http/pprof on the same listener
// behind a flag.
//
// The metric names are those of the hand-written metrics package it
// replaces (mmr_packets_in_total, mmr_drops_total{reason}, ...), so
// dashboards keep working; docs/grafana/openmmr.json charts them.
package prom

import (
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tunnel"
	"github.com/openmmr/mmr/web"
	"github.com/openmmr/mmr/web/sniff"
	"github.com/openmmr/mmr/zone"
)

// Interfaces of the components, each the one method read at scrape time.
type (
	// RouterStats is *router.Router.
	RouterStats interface{ Stats() router.Stats }
	// MeetingLister is *router.Router, for the per-meeting gauges.
	MeetingLister interface {
		Meetings() []router.MeetingInfo
		MeetingStats(id string) (stats.Counters, error)
	}
	// EdgeStats is *edge.Edge.
	EdgeStats interface{ Stats() edge.Stats }
	// ControlStats is *control.Server.
	ControlStats interface{ Stats() control.Stats }
	// ZoneStats is *zone.Server.
	ZoneStats interface{ Stats() zone.Stats }
	// WebStats is *web.Server.
	WebStats interface{ Stats() web.Stats }
	// SniffStats is *sniff.Router.
	SniffStats interface{ Stats() sniff.Stats }
	// TunnelStats is *tunnel.Server.
	TunnelStats interface{ Stats() tunnel.Stats }
)

// Sources are the components a process runs; nil ones are left out.
type Sources struct {
	Router  RouterStats
	Edge    EdgeStats
	Control ControlStats
	Zone    ZoneStats
	Web     WebStats
	Sniff   SniffStats
	Tunnel  TunnelStats
	// Meetings, with Options.PerMeeting, adds one gauge set per meeting.
	Meetings MeetingLister
}

// Options configures New.
type Options struct {
	// PerMeeting adds mmr_meeting_participants and
	// mmr_meeting_packets_{in,out}_total per meeting ID: one series per
	// meeting, so off by default (cardinality).
	PerMeeting bool
	// Pprof serves net/http/pprof under /debug/pprof/ on the same handler.
	Pprof bool
	// Prefix of the component metrics (default "mmr": the MMR binary; a
	// standalone ZC uses "zc", the web binary "web", the tunnel "ht").
	Prefix string
}

// Metrics is a registry with openmmr's collectors. Safe for concurrent use.
type Metrics struct {
	// Registry holds every collector; register more on it freely.
	Registry *prometheus.Registry
	opts     Options
	obsOnce  sync.Once
	obs      *observer
}

// latencyBuckets: 1 ms to ~16 s, doubling: joins on loopback take a few
// ms, over a long path with resumes seconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

type observer struct{ join, rtt prometheus.Histogram }

func (o *observer) JoinLatency(d time.Duration) { o.join.Observe(d.Seconds()) }
func (o *observer) ControlRTT(d time.Duration)  { o.rtt.Observe(d.Seconds()) }

// New returns a registry with the Go runtime and process collectors.
// Add the components with Register, and pass Observer() to the control
// server, in either order.
func New(opts Options) *Metrics {
	if opts.Prefix == "" {
		opts.Prefix = "mmr"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Metrics{Registry: reg, opts: opts}
}

// Register adds a collector reading src's snapshots at each scrape. Call
// it once per set of sources.
func (m *Metrics) Register(src Sources) {
	m.Registry.MustRegister(&collector{p: m.opts.Prefix, src: src, perMeeting: m.opts.PerMeeting && src.Meetings != nil})
}

// Observer returns the control.Observer feeding the join latency and
// control RTT histograms (PREFIX_control_join_seconds,
// PREFIX_control_rtt_seconds), registering them on the first call: pass
// it as control.Config.Observe.
func (m *Metrics) Observer() control.Observer {
	m.obsOnce.Do(func() {
		m.obs = &observer{
			join: prometheus.NewHistogram(prometheus.HistogramOpts{Name: m.opts.Prefix + "_control_join_seconds",
				Help: "Control channel joins: from the control server taking the connection to the joined answer.", Buckets: latencyBuckets}),
			rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: m.opts.Prefix + "_control_rtt_seconds",
				Help: "Control channel round-trip times measured by the server's pings.", Buckets: latencyBuckets}),
		}
		m.Registry.MustRegister(m.obs.join, m.obs.rtt)
	})
	return m.obs
}

// Handler serves GET /metrics and, with Options.Pprof, /debug/pprof/.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if m.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// collector reads every source's snapshot on each scrape. Its metrics are
// unchecked (Describe sends none): which families exist depends on the
// sources and, per meeting and per web refusal code, on the moment.
type collector struct {
	p          string
	src        Sources
	perMeeting bool
}

func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch: ch, p: c.p}
	if r := c.src.Router; r != nil {
		rs := r.Stats()
		e.gauge("meetings", "Meetings hosted by the router.", float64(rs.Meetings))
		e.gauge("participants", "Participants in the router's meetings.", float64(rs.Participants))
		e.counter("packets_in_total", "Datagrams and stream frames received.", float64(rs.PacketsIn))
		e.counter("bytes_in_total", "Bytes received (payload).", float64(rs.BytesIn))
		e.counter("packets_out_total", "Copies handed to the kernel, one per destination.", float64(rs.PacketsOut))
		e.counter("bytes_out_total", "Bytes of the copies handed to the kernel.", float64(rs.BytesOut))
		d := prometheus.NewDesc(c.p+"_drops_total", "Packets or copies dropped, by reason (docs/PROTOCOL.md, Drop reasons).", []string{"reason"}, nil)
		for i := range stats.NumDropReasons {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(rs.Drops[i]), i.String())
		}
	}
	if c.perMeeting {
		ms := c.src.Meetings.Meetings()
		parts := prometheus.NewDesc(c.p+"_meeting_participants", "Participants per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
		in := prometheus.NewDesc(c.p+"_meeting_packets_in_total", "Packets received per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
		out := prometheus.NewDesc(c.p+"_meeting_packets_out_total", "Copies sent per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
		for _, m := range ms {
			ch <- prometheus.MustNewConstMetric(parts, prometheus.GaugeValue, float64(m.Participants), m.ID)
			if st, err := c.src.Meetings.MeetingStats(m.ID); err == nil {
				ch <- prometheus.MustNewConstMetric(in, prometheus.CounterValue, float64(st.PacketsIn), m.ID)
				ch <- prometheus.MustNewConstMetric(out, prometheus.CounterValue, float64(st.PacketsOut), m.ID)
			}
		}
	}
	if s := c.src.Edge; s != nil {
		es := s.Stats()
		e.counter("tls_accepted_total", "Connections accepted on the shared TLS port.", float64(es.Accepted))
		e.counter("tls_refused_total", "TLS port connections closed at once: too many handshakes in progress.", float64(es.Refused))
		e.counter("tls_handshake_failed_total", "TLS handshakes that failed or timed out on the shared port.", float64(es.HandshakeFailed))
		e.counter("tls_unrouted_total", "TLS connections whose ALPN protocol has no service.", float64(es.Unrouted))
	}
	if s := c.src.Control; s != nil {
		cs := s.Stats()
		e.gauge("control_connections", "Open control connections, joined or not.", float64(cs.Conns))
		e.gauge("control_meetings", "Meetings with at least one control participant.", float64(cs.Meetings))
		e.gauge("control_participants", "Control participants, those in their grace period included.", float64(cs.Participants))
		for _, x := range []struct {
			name, help string
			v          uint64
		}{
			{"accepted", "Control connections accepted.", cs.Accepted},
			{"rejected", "Control connections refused by the connection limits.", cs.Rejected},
			{"handshake_failed", "Control TLS handshakes that failed or timed out.", cs.HandshakeFailed},
			{"protocol_errors", "Control connections closed for bad frames or messages.", cs.ProtocolErrors},
			{"auth_failures", "Joins and resumes refused: bad, expired or other-meeting tokens.", cs.AuthFailures},
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
			e.counter("control_"+x.name+"_total", x.help, float64(x.v))
		}
	}
	if s := c.src.Zone; s != nil {
		zs := s.Stats()
		e.gauge("zone_mmrs", "Live MMRs known to the zone controller.", float64(zs.MMRs))
		for _, x := range []struct {
			name, help string
			v          uint64
		}{
			{"accepted", "Zone controller connections taken into service.", zs.Accepted},
			{"refused", "Zone controller connections refused by the connection limits.", zs.Refused},
			{"handshake_failures", "Zone controller TLS handshakes that failed.", zs.HandshakeFailures},
			{"bad_requests", "Malformed, oversize or unexpected zone frames.", zs.BadRequests},
			{"auth_failures", "MMR registrations whose zone-secret proof failed.", zs.AuthFailures},
			{"rate_limited", "Zone connections closed for exceeding a rate.", zs.RateLimited},
			{"registrations", "MMR registrations.", zs.Registrations},
			{"reports", "MMR load reports applied.", zs.Reports},
			{"lookups", "Zone lookups answered.", zs.Lookups},
			{"probes", "Zone probes echoed.", zs.Probes},
			{"expired", "MMRs removed for missed reports or a lost connection.", zs.Expired},
		} {
			e.counter("zone_"+x.name+"_total", x.help, float64(x.v))
		}
	}
	if s := c.src.Web; s != nil {
		ws := s.Stats()
		e.counter("web_lookups_total", "Meeting lookups answered 200 by the web tier.", float64(ws.Lookups))
		e.counter("web_zone_checks_total", "Zone health rounds of the web tier.", float64(ws.ZoneChecks))
		e.counter("web_geo_reloads_total", "Geo-IP database reloads.", float64(ws.GeoReloads))
		e.counter("web_geo_reload_failures_total", "Geo-IP database reloads that failed.", float64(ws.GeoReloadFailures))
		d := prometheus.NewDesc(c.p+"_web_refused_total", "Web tier error answers, by code (docs/PROTOCOL.md, Web tier).", []string{"code"}, nil)
		codes := make([]string, 0, len(ws.Refused))
		for code := range ws.Refused {
			codes = append(codes, code)
		}
		slices.Sort(codes)
		for _, code := range codes {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ws.Refused[code]), code)
		}
	}
	if s := c.src.Sniff; s != nil {
		ss := s.Stats()
		d := prometheus.NewDesc(c.p+"_web_sniffed_total", "TLS connections without ALPN, by what their first byte said.", []string{"as"}, nil)
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.HTTP), "http")
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.Other), "control")
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.Failed), "failed")
	}
	if s := c.src.Tunnel; s != nil {
		ts := s.Stats()
		e.gauge("tunnel_connections", "Tunnel TCP connections open now.", float64(ts.Conns))
		e.gauge("tunnel_streams", "Tunnel streams open now.", float64(ts.Streams))
		e.counter("tunnel_accepted_total", "Tunnel connections accepted.", float64(ts.Accepted))
		e.counter("tunnel_pings_total", "Tunnel pings answered.", float64(ts.Pings))
		e.counter("tunnel_opened_total", "Tunnel streams opened.", float64(ts.Opened))
		e.counter("tunnel_bytes_up_total", "Tunnel bytes client to destination.", float64(ts.BytesUp))
		e.counter("tunnel_bytes_down_total", "Tunnel bytes destination to client.", float64(ts.BytesDown))
		e.counter("tunnel_conn_timeouts_total", "Tunnel connections closed before a request.", float64(ts.ConnTimeout))
		e.counter("tunnel_log_dropped_total", "Tunnel refusal log lines suppressed by the rate limit.", float64(ts.LogDropped))
		e.counter("tunnel_placements_total", "Tunnel placement lookups at the ZCs.", float64(ts.Placements))
		e.counter("tunnel_place_failed_total", "Tunnel placement lookups that failed.", float64(ts.PlaceFailed))
		rd := prometheus.NewDesc(c.p+"_tunnel_refused_total", "Tunnel streams refused, by reason.", []string{"reason"}, nil)
		for i, v := range ts.Refused {
			ch <- prometheus.MustNewConstMetric(rd, prometheus.CounterValue, float64(v), snake(tunnel.Refusal(i).String()))
		}
		ed := prometheus.NewDesc(c.p+"_tunnel_ended_total", "Tunnel streams ended, by cause.", []string{"cause"}, nil)
		for i, v := range ts.Ended {
			ch <- prometheus.MustNewConstMetric(ed, prometheus.CounterValue, float64(v), snake(tunnel.End(i).String()))
		}
	}
}

func snake(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "-", "_"), " ", "_") }

type emitter struct {
	ch chan<- prometheus.Metric
	p  string
}

func (e emitter) counter(name, help string, v float64) {
	e.ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(e.p+"_"+name, help, nil, nil), prometheus.CounterValue, v)
}

func (e emitter) gauge(name, help string, v float64) {
	e.ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(e.p+"_"+name, help, nil, nil), prometheus.GaugeValue, v)
}
