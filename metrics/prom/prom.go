// Package prom exposes openmmr's counters to Prometheus with
// github.com/prometheus/client_golang: a custom Collector that reads each
// component's existing Stats() snapshot at scrape time (the packet path
// does no extra work and the core packages do not import client_golang),
// the Go runtime, process and build-info collectors, histograms of the
// control channel's join latency and RTT (fed through
// control.Config.Observe), optional per-meeting gauges, net/http/pprof on
// the same listener behind a flag, and the hardened listener every
// command's -metrics flag serves it on.
//
// Names: the router's, TLS edge's and control channel's families are
// PREFIX_name (mmr_packets_in_total, mmr_drops_total{reason}, ...). A
// component that also runs as its own binary (zone controller "zc", web
// tier "web", tunnel "ht") is PREFIX_COMPONENT_name inside the MMR
// (mmr_zone_lookups_total, mmr_web_lookups_total) and BINARY_name in its
// own binary (zc_lookups_total, web_lookups_total, ht_streams). These are
// the names of the hand-written text writers this package replaced;
// docs/PROTOCOL.md ("Load tool and metrics") lists them all and
// docs/grafana/openmmr.json charts them.
package prom

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
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
	// PerMeeting adds PREFIX_meeting_participants and
	// PREFIX_meeting_packets_{in,out}_total per meeting ID: one series per
	// meeting, so off by default (cardinality).
	PerMeeting bool
	// Pprof serves net/http/pprof under /debug/pprof/ on the same handler;
	// without it those paths answer 404.
	Pprof bool
	// Prefix of the metric names: the binary, "mmr" (the default), "zc",
	// "web" or "ht" (see the package comment).
	Prefix string
}

// Standalone binaries' prefixes: a component whose binary this is drops
// its component part from its names.
const (
	zonePrefix   = "zc"
	webPrefix    = "web"
	tunnelPrefix = "ht"
)

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

// New returns a registry with the Go runtime, process and build-info
// collectors. Add the components with Register, and pass Observer() to the
// control server, in either order.
func New(opts Options) *Metrics {
	if opts.Prefix == "" {
		opts.Prefix = "mmr"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
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

// Handler returns a mux serving GET /metrics and, with Options.Pprof,
// /debug/pprof/. The caller may add routes (cmd/mmr adds /health).
func (m *Metrics) Handler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	if m.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, ...
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is a -metrics listener: plain HTTP on an operator's address,
// never the public TLS port. Safe for concurrent use.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	once sync.Once
}

// Serve listens on addr (host:port; port 0 picks one) and serves h until
// Close; flag names the command-line flag in errors. Its timeouts keep a
// stalled scraper from holding anything; the write timeout leaves room
// for a 30 s CPU profile.
func Serve(addr, flag string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	s := &Server{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics: listener stopped", "err", err)
		}
	}()
	log.Info("metrics: serving", "url", "http://"+ln.Addr().String()+"/metrics")
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() netip.AddrPort {
	ap := s.ln.Addr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Close stops the listener and its connections and waits for the serving
// goroutine. Idempotent.
func (s *Server) Close() {
	s.once.Do(func() {
		_ = s.srv.Close()
		<-s.done
	})
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

// ns is the name prefix of a component that has a binary of its own.
func (c *collector) ns(component, binary string) string {
	if c.p == binary {
		return c.p
	}
	return c.p + "_" + component
}

// count is a counter family of one sample.
type count struct {
	name, help string
	v          uint64
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch: ch, p: c.p}
	if r := c.src.Router; r != nil {
		rs := r.Stats()
		e.gauge("meetings", "Meetings hosted by the router.", float64(rs.Meetings))
		e.gauge("participants", "Participants in the router's meetings.", float64(rs.Participants))
		e.gauge("streams", "Live TCP and TLS media streams.", float64(rs.Streams))
		e.gauge("streams_max", "Router-wide cap on media streams (descriptors kept in reserve for the control port).", float64(rs.MaxStreams))
		e.gauge("tcp_accepting", "1 while every TCP media listener takes connections, 0 while Accept fails or after one stopped.", b2f(rs.TCPAccepting))
		e.counters([]count{
			{"packets_in_total", "Datagrams and stream frames received.", rs.PacketsIn},
			{"bytes_in_total", "Bytes received (payload).", rs.BytesIn},
			{"packets_out_total", "Copies handed to the kernel, one per destination.", rs.PacketsOut},
			{"bytes_out_total", "Bytes of the copies handed to the kernel.", rs.BytesOut},
			{"gso_sent_total", "UDP GSO super-packets handed to the kernel (each carries several copies).", rs.GSOSent},
			{"gso_fallbacks_total", "Runs of copies sent one datagram per message because GSO was refused for the destination.", rs.GSOFallbacks},
			{"coalesced_reads_total", "Reads after a coalescing pause that found datagrams (several packets forwarded per wake-up).", rs.Coalesced},
			{"tcp_accept_errors_total", "TCP media listener Accept errors (EMFILE and the like), each retried after a back-off.", rs.TCPAcceptErrors},
			{"kernel_drops_total", "Datagrams the kernel dropped because a UDP socket's receive buffer was full (SO_RXQ_OVFL / SO_MEMINFO).", rs.KernelDrops},
			{"bind_challenges_total", "Return-routability challenges sent (BindAck status 1).", rs.BindChallenges},
		})
		d := prometheus.NewDesc(c.p+"_drops_total", "Packets or copies dropped, by reason (docs/PROTOCOL.md, Drop reasons).", []string{"reason"}, nil)
		for i := range stats.NumDropReasons {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(rs.Drops[i]), i.String())
		}
	}
	if c.perMeeting {
		c.collectMeetings(ch)
	}
	if s := c.src.Edge; s != nil {
		es := s.Stats()
		e.gauge("tls_accepting", "1 while the shared TLS port takes connections, 0 while Accept fails or after it stopped.", b2f(es.Accepting))
		e.counters([]count{
			{"tls_accepted_total", "Connections accepted on the shared TLS port.", es.Accepted},
			{"tls_accept_errors_total", "TLS port Accept errors (EMFILE and the like), each retried after a back-off.", es.AcceptErrors},
			{"tls_refused_total", "TLS port connections closed at once: too many handshakes in progress.", es.Refused},
			{"tls_refused_source_total", "TLS port connections closed at once: their source (IPv4 address, IPv6 /64) had its share of handshakes in progress.", es.RefusedSource},
			{"tls_handshake_failed_total", "TLS handshakes that failed or timed out on the shared port.", es.HandshakeFailed},
			{"tls_unrouted_total", "TLS connections whose ALPN protocol has no service.", es.Unrouted},
		})
	}
	if s := c.src.Control; s != nil {
		cs := s.Stats()
		e.gauge("control_connections", "Open control connections, joined or not.", float64(cs.Conns))
		e.gauge("control_meetings", "Meetings with at least one control participant.", float64(cs.Meetings))
		e.gauge("control_participants", "Control participants, those in their grace period included.", float64(cs.Participants))
		e.counters([]count{
			{"control_accepted_total", "Control connections accepted.", cs.Accepted},
			{"control_rejected_total", "Control connections refused by the connection limits.", cs.Rejected},
			{"control_handshake_failed_total", "Control TLS handshakes that failed or timed out.", cs.HandshakeFailed},
			{"control_protocol_errors_total", "Control connections closed for bad frames or messages.", cs.ProtocolErrors},
			{"control_auth_failures_total", "Joins and resumes refused: bad, expired or other-meeting tokens.", cs.AuthFailures},
			{"control_auth_delayed_total", "Refused joins and resumes answered late: their address kept failing.", cs.AuthDelayed},
			{"control_joins_total", "Successful joins.", cs.Joins},
			{"control_resumes_total", "Successful resumes.", cs.Resumes},
			{"control_grace_expired_total", "Participants removed when their grace period ran out.", cs.GraceExpired},
			{"control_timeouts_total", "Control connections closed by the handshake or idle timeout.", cs.Timeouts},
			{"control_slow_consumers_total", "Control connections closed because their send queue was full.", cs.SlowConsumers},
			{"control_rate_limited_total", "Control messages refused by the request rate limit.", cs.RateLimited},
			{"control_rate_cut_off_total", "Control connections closed for sending on while rate limited.", cs.RateCutOff},
			{"control_media_keys_total", "Standard-mode meeting keys made after membership changes (each sent in one media-key event).", cs.MediaKeys},
			{"control_wraps_relayed_total", "E2EE key wraps relayed to their recipient.", cs.WrapsRelayed},
			{"control_wraps_refused_total", "E2EE key wraps refused (bad, forged, unknown recipient, over budget).", cs.WrapsRefused},
		})
	}
	if s := c.src.Zone; s != nil {
		zs := s.Stats()
		z := emitter{ch: ch, p: c.ns("zone", zonePrefix)}
		z.gauge("mmrs", "Live MMRs known to the zone controller.", float64(zs.MMRs))
		z.counters([]count{
			{"accepted_total", "Zone controller connections taken into service.", zs.Accepted},
			{"refused_total", "Zone controller connections refused by the connection limits.", zs.Refused},
			{"handshake_failures_total", "Zone controller TLS handshakes that failed.", zs.HandshakeFailures},
			{"bad_requests_total", "Malformed, oversize or unexpected zone frames.", zs.BadRequests},
			{"auth_failures_total", "MMR registrations whose zone-secret proof failed.", zs.AuthFailures},
			{"rate_limited_total", "Zone connections closed for exceeding a rate.", zs.RateLimited},
			{"registrations_total", "MMR registrations.", zs.Registrations},
			{"reports_total", "MMR load reports applied.", zs.Reports},
			{"lookups_total", "Zone lookups answered.", zs.Lookups},
			{"probes_total", "Zone probes echoed.", zs.Probes},
			{"expired_total", "MMRs removed for missed reports or a lost connection.", zs.Expired},
		})
	}
	wp := c.ns("web", webPrefix)
	if s := c.src.Web; s != nil {
		ws := s.Stats()
		w := emitter{ch: ch, p: wp}
		w.counters([]count{
			{"lookups_total", "Meeting lookups answered 200 by the web tier.", ws.Lookups},
			{"zone_checks_total", "Zone health rounds of the web tier.", ws.ZoneChecks},
			{"geo_reloads_total", "Geo-IP database reloads.", ws.GeoReloads},
			{"geo_reload_failures_total", "Geo-IP database reloads that failed.", ws.GeoReloadFailures},
		})
		d := prometheus.NewDesc(wp+"_refused_total", "Web tier error answers, by code (docs/PROTOCOL.md, Web tier).", []string{"code"}, nil)
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
		d := prometheus.NewDesc(wp+"_sniffed_total", "TLS connections without ALPN, by what their first byte said.", []string{"as"}, nil)
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.HTTP), "http")
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.Other), "control")
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(ss.Failed), "failed")
	}
	if s := c.src.Tunnel; s != nil {
		c.collectTunnel(ch, s.Stats())
	}
}

// collectMeetings sends the per-meeting gauges (Options.PerMeeting).
func (c *collector) collectMeetings(ch chan<- prometheus.Metric) {
	parts := prometheus.NewDesc(c.p+"_meeting_participants", "Participants per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
	in := prometheus.NewDesc(c.p+"_meeting_packets_in_total", "Packets received per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
	out := prometheus.NewDesc(c.p+"_meeting_packets_out_total", "Copies sent per meeting (-metrics-per-meeting).", []string{"meeting"}, nil)
	for _, m := range c.src.Meetings.Meetings() {
		ch <- prometheus.MustNewConstMetric(parts, prometheus.GaugeValue, float64(m.Participants), m.ID)
		if st, err := c.src.Meetings.MeetingStats(m.ID); err == nil { // it may have ended since Meetings
			ch <- prometheus.MustNewConstMetric(in, prometheus.CounterValue, float64(st.PacketsIn), m.ID)
			ch <- prometheus.MustNewConstMetric(out, prometheus.CounterValue, float64(st.PacketsOut), m.ID)
		}
	}
}

// collectTunnel sends the tunnel server's families: ht_* in cmd/ht.
func (c *collector) collectTunnel(ch chan<- prometheus.Metric, ts tunnel.Stats) {
	p := c.ns("tunnel", tunnelPrefix)
	t := emitter{ch: ch, p: p}
	t.gauge("connections", "Open TCP connections (idle, pinging or tunnelling).", float64(max(ts.Conns, 0)))
	t.gauge("streams", "Open tunnelled streams.", float64(max(ts.Streams, 0)))
	t.counters([]count{
		{"accepted_total", "TCP connections accepted within the connection limit.", ts.Accepted},
		{"pings_total", "Pings answered.", ts.Pings},
		{"streams_opened_total", "Streams opened.", ts.Opened},
		{"bytes_up_total", "Bytes relayed from clients to destinations.", ts.BytesUp},
		{"bytes_down_total", "Bytes relayed from destinations to clients.", ts.BytesDown},
		{"conn_timeouts_total", "Connections closed before any request: handshake or header timeout, bad TLS, idle keep-alive.", ts.ConnTimeout},
		{"log_suppressed_total", "Refusal log lines suppressed by the log rate limit.", ts.LogDropped},
		{"placements_total", "Placement lookups at the ZCs (-zc).", ts.Placements},
		{"place_failed_total", "Placement lookups at the ZCs that failed.", ts.PlaceFailed},
	})
	rd := prometheus.NewDesc(p+"_refused_total", "Connections, pings and streams refused, by reason (docs/PROTOCOL.md, HTTP tunnel).", []string{"reason"}, nil)
	for i, v := range ts.Refused {
		ch <- prometheus.MustNewConstMetric(rd, prometheus.CounterValue, float64(v), tunnel.Refusal(i).String())
	}
	ed := prometheus.NewDesc(p+"_stream_ends_total", "Streams ended, by reason.", []string{"reason"}, nil)
	for i, v := range ts.Ended {
		ch <- prometheus.MustNewConstMetric(ed, prometheus.CounterValue, float64(v), tunnel.End(i).String())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// emitter sends unlabelled samples named p_name.
type emitter struct {
	ch chan<- prometheus.Metric
	p  string
}

func (e emitter) counters(cs []count) {
	for _, c := range cs {
		e.ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(e.p+"_"+c.name, c.help, nil, nil), prometheus.CounterValue, float64(c.v))
	}
}

func (e emitter) gauge(name, help string, v float64) {
	e.ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(e.p+"_"+name, help, nil, nil), prometheus.GaugeValue, v)
}
