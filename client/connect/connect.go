// Package connect is the openmmr client's connection process, end to end
// (docs/PROTOCOL.md, "Client connection process"): meeting lookup at the
// web tier, zone selection by a network performance test against every
// zone's ZCs at once, MMR selection through the chosen zone's ZC, the
// control channel, and one media flow per kind tried independently over
// UDP 8801, TCP 8801 and TLS 443, with proxies (explicit, environment, PAC)
// honoured throughout.
//
// Connect walks the phases, logs each decision at info level and reports
// them in a Result; the Session it returns carries media until Close. It
// is meant to be embedded: cmd/openmmr's join is one user.
package connect

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/secure"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/tunnel"
	"github.com/openmmr/mmr/wire"
	zproto "github.com/openmmr/mmr/zone/proto"
)

// Phases, as named in Error.Phase and the logs.
const (
	PhaseConfig  = "config"
	PhaseProxy   = "proxy"
	PhaseLookup  = "lookup"
	PhaseZone    = "zone"
	PhaseMMR     = "mmr"
	PhaseControl = "control"
	PhaseMedia   = "media"
)

// NextStepTunnel is Result.NextStep when no ZC answered within the zone
// timeout: the HTTPS tunnel is the next path to try.
const NextStepTunnel = "tunnel"

// Result reports what every phase decided and why. It is filled as far as
// the process got, also when Connect fails.
type Result struct {
	Started  time.Time     `json:"started"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Proxy    ProxyReport   `json:"proxy"`
	Lookup   LookupReport  `json:"lookup"`
	Zones    []ZoneReport  `json:"zones"`
	ZoneTook time.Duration `json:"zone_took_ns"` // the zone phase: handshakes and probes
	Zone     string        `json:"zone,omitempty"`
	ZoneWhy  string        `json:"zone_why,omitempty"`
	NextStep string        `json:"next_step,omitempty"` // NextStepTunnel
	Tunnel   TunnelReport  `json:"tunnel"`
	Advice   string        `json:"advice,omitempty"` // one line for the user when nothing worked
	MMR      MMRReport     `json:"mmr"`
	Control  ControlReport `json:"control"`
	Media    []MediaReport `json:"media"`
}

// ProxyReport is the proxy decision.
type ProxyReport struct {
	Detected bool   `json:"detected"`
	Source   string `json:"source"` // ProxyNone, ProxyFlag, ProxyEnv, ProxyPAC, ProxyLookup
	URL      string `json:"url,omitempty"`
	Why      string `json:"why"`
}

// TunnelReport is the tunnel step: the tunnel server picked (the first of
// the lookup's tunnels to answer an authenticated ping) or why none was.
type TunnelReport struct {
	Used   bool          `json:"used"`
	URL    string        `json:"url,omitempty"`
	Server string        `json:"server,omitempty"`
	RTT    time.Duration `json:"rtt_ns,omitempty"`
	Proxy  string        `json:"proxy,omitempty"`
	Err    string        `json:"error,omitempty"`
}

// LookupReport is the lookup phase.
type LookupReport struct {
	URL          string        `json:"url"`
	Took         time.Duration `json:"took_ns"`
	Meeting      string        `json:"meeting,omitempty"`
	Topic        string        `json:"topic,omitempty"`
	Role         string        `json:"role,omitempty"`
	Identity     string        `json:"identity,omitempty"`
	Zones        int           `json:"zones"`
	Tunnels      int           `json:"tunnels"`
	WebClientURL string        `json:"web_client_url,omitempty"`
	Client       LookupClient  `json:"client"`
	Err          string        `json:"error,omitempty"`
}

// MMRReport is the MMR selection.
type MMRReport struct {
	ID          string        `json:"id,omitempty"`
	Zone        string        `json:"zone,omitempty"`
	ControlAddr string        `json:"control_addr,omitempty"`
	Fingerprint string        `json:"fingerprint,omitempty"`
	Existing    bool          `json:"existing"`
	Took        time.Duration `json:"took_ns"`
	Err         string        `json:"error,omitempty"`
}

// ControlReport is the control channel phase.
type ControlReport struct {
	Addr        string `json:"addr,omitempty"`
	Participant uint64 `json:"participant,omitempty"`
	Role        string `json:"role,omitempty"`
	Proxied     bool   `json:"proxied"`
	// MediaProtection is the joined's mode: "standard" or "e2ee".
	MediaProtection string        `json:"media_protection,omitempty"`
	Took            time.Duration `json:"took_ns"`
	Err             string        `json:"error,omitempty"`
}

// Error is Connect's failure: the phase, the cause and, when nothing
// worked, the one-line advice for the user.
type Error struct {
	Phase  string
	Err    error
	Advice string
}

// Error returns "connect: PHASE: cause".
func (e *Error) Error() string { return "connect: " + e.Phase + ": " + e.Err.Error() }

// Unwrap returns the cause (a *LookupError, a *ctlproto.Error, ...).
func (e *Error) Unwrap() error { return e.Err }

// Session is a connected participant: its control channel and a Flow per
// kind. Safe for concurrent use; Close ends every goroutine.
type Session struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dial   *dialer
	ctl    *control.Client
	sec    *secure.State // the participant's media protection (from ctl)
	joined *ctlproto.Joined
	token  wire.Token
	mmrTLS *tls.Config
	tunnel *tunnel.Session // nil unless the HTTP tunnel carries the session
	flows  []*Flow
	res    Result
	once   sync.Once
}

// Connect runs the connection process. On success the Session is joined
// and every kind's media flows; on failure everything opened is closed and
// the error is an *Error. The Result is filled as far as the process got,
// in both cases.
func Connect(ctx context.Context, cfg Config) (*Session, Result, error) {
	res := Result{Started: time.Now()}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, res, &Error{Phase: PhaseConfig, Err: err}
	}
	s := &Session{cfg: cfg, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	err = s.run(ctx, &res)
	res.Elapsed = time.Since(res.Started)
	if err != nil {
		if s.joined != nil { // joined, then failed: leave at once rather than linger for the grace period
			lctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.ctl.Leave(lctx)
			cancel()
		}
		s.Close()
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Phase: PhaseControl, Err: err} // run returns *Error; be safe
			err = e
		}
		// The web client advice is for network trouble, not for a refusal
		// (wrong passcode, expired token, meeting ended): a browser would
		// be refused the same way.
		var refused *ctlproto.Error
		if e.Advice == "" && res.Lookup.WebClientURL != "" && e.Phase != PhaseLookup && !errors.As(err, &refused) {
			e.Advice = advice(res.Lookup.WebClientURL)
		}
		res.Advice = e.Advice
		s.log.Warn("connect: failed", "phase", e.Phase, "err", e.Err, "advice", e.Advice)
		return nil, res, err
	}
	s.res = res
	s.log.Info("connect: media flowing", "elapsed", res.Elapsed)
	return s, res, nil
}

func advice(webURL string) string {
	return "Cannot connect to the meeting from this network: open " + webURL + " in a browser to join with the web client."
}

func fail(phase string, err error) error { return &Error{Phase: phase, Err: err} }

func (s *Session) run(ctx context.Context, res *Result) error {
	cfg := &s.cfg
	log := s.log

	// Proxy discovery: flag, then environment, then PAC.
	proxies, err := newProxyResolver(ctx, cfg)
	if err != nil {
		res.Proxy = ProxyReport{Source: ProxyNone, Why: err.Error()}
		return fail(PhaseProxy, err)
	}
	s.dial = &dialer{proxies: proxies, local: cfg.LocalAddr}

	// 1. Lookup.
	res.Lookup.URL = cfg.Web
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, cfg.LookupTimeout)
	lk, proxyURL, err := lookup(lctx, cfg.Web, cfg.WebTLS, s.dial, LookupRequest{
		MeetingID: cfg.MeetingID, Passcode: cfg.Passcode, Name: cfg.Name, HostKey: cfg.HostKey, PanelistKey: cfg.PanelistKey,
		Capabilities: []string{UDP, TCP, TLS},
	})
	cancel()
	res.Lookup.Took = time.Since(start)
	res.Proxy = s.proxyDecision(proxies, proxyURL, lk)
	log.Info("connect: proxy", "detected", res.Proxy.Detected, "source", res.Proxy.Source, "url", res.Proxy.URL, "why", res.Proxy.Why)
	if err != nil {
		res.Lookup.Err = err.Error()
		log.Info("connect: lookup failed", "web", cfg.Web, "err", err, "took", res.Lookup.Took)
		return fail(PhaseLookup, err)
	}
	res.Lookup.Meeting, res.Lookup.Topic, res.Lookup.Role, res.Lookup.Identity = lk.Meeting.ID, lk.Meeting.Topic, lk.Role, lk.Identity
	res.Lookup.Zones, res.Lookup.Tunnels, res.Lookup.WebClientURL, res.Lookup.Client = len(lk.Zones), len(lk.Tunnels), lk.WebClientURL, lk.Client
	log.Info("connect: lookup", "meeting", lk.Meeting.ID, "role", lk.Role, "zones", len(lk.Zones), "via_proxy", lk.Client.ViaProxy, "took", res.Lookup.Took)

	// 2. Zone selection.
	zstart := time.Now()
	ranked, reports, answered := selectZones(ctx, cfg, s.dial, lk.Zones)
	res.ZoneTook = time.Since(zstart)
	res.Zones = reports
	defer func() {
		for _, z := range ranked {
			z.c.Close()
		}
	}()
	for _, r := range reports {
		log.Info("connect: zone tested", "zone", r.Name, "rank", r.Rank, "zc", r.ZC, "rtt", r.Median, "jitter", r.Jitter, "loss", r.Loss, "score", r.Score, "skipped", r.Err)
	}
	if ctx.Err() != nil {
		return fail(PhaseZone, ctx.Err())
	}
	tunneled := false
	if !answered {
		res.NextStep = NextStepTunnel
		why := fmt.Sprintf("no zone controller answered within %v; next step: the HTTP tunnel", cfg.ZoneTimeout)
		res.ZoneWhy = why
		log.Info("connect: tunnel step", "why", why, "tunnels", len(lk.Tunnels))
		if err := s.openTunnel(ctx, proxies, lk, res); err != nil {
			res.ZoneWhy = why + ": " + err.Error()
			return &Error{Phase: PhaseZone, Err: errors.New(res.ZoneWhy), Advice: advice(lk.WebClientURL)}
		}
		tunneled = true
		zstart = time.Now()
		ranked, reports, answered = selectZones(ctx, cfg, s.dial, lk.Zones)
		res.Zones = append(res.Zones, reports...)
		log.Info("connect: zones through the tunnel", "answered", answered, "took", time.Since(zstart))
		if !answered {
			res.ZoneWhy = why + ": no zone controller answered through the tunnel either"
			return &Error{Phase: PhaseZone, Err: errors.New(res.ZoneWhy), Advice: advice(lk.WebClientURL)}
		}
	}
	if len(ranked) == 0 {
		res.ZoneWhy = "every zone that answered failed its performance test"
		return fail(PhaseZone, errors.New(res.ZoneWhy))
	}

	// 3. MMR selection: the best zone first, the next ones if it has no room.
	var pl zproto.Placement
	var errs []error
	start = time.Now()
	for i, z := range ranked {
		mctx, cancel := context.WithTimeout(ctx, cfg.MMRTimeout)
		p, err := z.c.Lookup(mctx, lk.Meeting.ID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", z.rep.Name, err))
			z.rep.Err = "MMR lookup: " + err.Error()
			continue
		}
		z.rep.Chosen = true
		res.Zone = z.rep.Name
		res.ZoneWhy = fmt.Sprintf("lowest score %v (median %v + 2×jitter %v + loss %.0f%%×1s; ties within %v go to the web order)",
			z.rep.Score, z.rep.Median, z.rep.Jitter, 100*z.rep.Loss, cfg.ScoreTie)
		if i > 0 {
			res.ZoneWhy = "better zones could not place the meeting; " + res.ZoneWhy
		}
		if cfg.Zone != "" {
			res.ZoneWhy = "forced by -zone"
		}
		pl = p
		break
	}
	res.MMR.Took = time.Since(start)
	log.Info("connect: zone chosen", "zone", res.Zone, "why", res.ZoneWhy)
	if res.Zone == "" {
		res.MMR.Err = errors.Join(errs...).Error()
		return fail(PhaseMMR, errors.Join(errs...))
	}
	ctlAddr, err := controlAddr(pl)
	if err != nil {
		res.MMR.Err = err.Error()
		return fail(PhaseMMR, err)
	}
	res.MMR = MMRReport{ID: pl.MMR, Zone: res.Zone, ControlAddr: ctlAddr, Fingerprint: pl.Fingerprint, Existing: pl.Existing, Took: res.MMR.Took}
	log.Info("connect: MMR", "mmr", pl.MMR, "control", ctlAddr, "existing", pl.Existing, "fingerprint", pl.Fingerprint)
	if pl.Fingerprint == "" {
		err := errors.New("the placement names no certificate fingerprint for the MMR")
		res.MMR.Err = err.Error()
		return fail(PhaseMMR, err)
	}
	if s.mmrTLS, err = tlsutil.PinnedClientConfig(pl.Fingerprint); err != nil {
		return fail(PhaseMMR, err)
	}
	for _, z := range ranked { // the ZC connections are done
		z.c.Close()
	}
	ranked = nil

	// 4. Control channel, pinned to the placement's fingerprint.
	start = time.Now()
	// The MMR is behind a proxy when the proxy decision for its address
	// names one (NO_PROXY or a PAC DIRECT may exempt it while the web tier
	// is proxied), or when the web tier saw a proxy the client did not
	// configure (a transparent one): then only TLS 443 is likely to pass.
	proxied := lk.Client.ViaProxy || tunneled
	if p, _, _ := proxies.forAddr(ctlAddr); p != nil {
		proxied = true
	}
	res.Control = ControlReport{Addr: ctlAddr, Proxied: proxied}
	cctx, cancel := context.WithTimeout(ctx, cfg.ControlTimeout)
	defer cancel()
	s.ctl, err = control.Dial(cctx, ctlAddr, control.Config{TLS: s.mmrTLS, Dial: s.dial.DialContext, AutoResume: true, Logger: log,
		E2EE: lk.Meeting.E2EE, Media: cfg.Media,
		OnEvent: func(m ctlproto.Message) {
			if cfg.OnEvent != nil {
				cfg.OnEvent(m)
			}
		}})
	if err != nil {
		res.Control.Err = err.Error()
		return fail(PhaseControl, err)
	}
	j, err := s.ctl.Join(cctx, lk.Meeting.ID, lk.JoinToken, cfg.Name)
	res.Control.Took = time.Since(start)
	if err != nil {
		res.Control.Err = err.Error()
		return fail(PhaseControl, err)
	}
	s.joined = j
	if s.token, err = wire.ParseToken(j.MediaToken); err != nil {
		return fail(PhaseControl, err)
	}
	res.Control.Participant, res.Control.Role, res.Control.MediaProtection = j.Participant, j.Role, j.MediaProtection
	s.sec = s.ctl.Media()
	log.Info("connect: joined", "control", ctlAddr, "participant", j.Participant, "role", j.Role, "roster", len(j.Roster),
		"media_protection", j.MediaProtection, "took", res.Control.Took)

	// 5. Media, per kind, independently.
	order, why := []string{UDP, TCP, TLS}, "UDP 8801 first, then TCP 8801, then TLS 443"
	switch {
	case cfg.Transport != "":
		order, why = []string{cfg.Transport}, "forced by Config.Transport"
	case tunneled:
		order, why = []string{TLS}, "through the HTTP tunnel: TLS 443 only (UDP and TCP 8801 not attempted)"
	case proxied:
		order, why = []string{TLS}, "a proxy is in the path: TLS 443 through it only (UDP and TCP 8801 not attempted)"
	}
	res.Media = make([]MediaReport, len(cfg.Kinds))
	var wg sync.WaitGroup
	ferrs := make([]error, len(cfg.Kinds))
	for _, k := range cfg.Kinds { // all before any dial: links look their Flow up (Session.protection)
		s.flows = append(s.flows, &Flow{kind: k, s: s, order: order, log: log, dead: make(chan *link, 1)})
	}
	for i, k := range cfg.Kinds {
		f := s.flows[i]
		res.Media[i] = MediaReport{Kind: k.String(), Order: order, Why: why}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ferrs[i] = s.connectFlow(ctx, f, &res.Media[i])
		}()
	}
	wg.Wait()
	for i, k := range cfg.Kinds {
		m := &res.Media[i]
		if ferrs[i] != nil {
			m.Err = ferrs[i].Error()
		}
		log.Info("connect: media", "kind", k, "transport", m.Transport, "addr", m.Addr, "order", m.Order, "why", m.Why, "attempts", len(m.Attempts), "err", m.Err)
	}
	if err := errors.Join(ferrs...); err != nil {
		return fail(PhaseMedia, err)
	}
	for _, f := range s.flows {
		s.wg.Add(1)
		go f.maintain()
	}
	if j.Role != "viewer" {
		for _, k := range cfg.Kinds {
			if ssrcs := cfg.SSRCs[k]; len(ssrcs) > 0 {
				if err := s.ctl.Publish(cctx, k, ssrcs...); err != nil {
					return fail(PhaseControl, fmt.Errorf("publish %s: %w", k, err))
				}
			}
		}
	}
	for _, k := range cfg.Kinds {
		if err := s.ctl.Subscribe(cctx, k); err != nil {
			return fail(PhaseControl, fmt.Errorf("subscribe %s: %w", k, err))
		}
	}
	return nil
}

// openTunnel pings the lookup's tunnel servers at once (through the proxy
// their address gets, if any) and routes every later connection through
// the first to answer.
func (s *Session) openTunnel(ctx context.Context, proxies *proxyResolver, lk *LookupResponse, res *Result) error {
	if len(lk.Tunnels) == 0 {
		res.Tunnel.Err = "the web tier lists no tunnel server"
		return errors.New(res.Tunnel.Err)
	}
	d := &tunnel.Dialer{Token: lk.JoinToken, HandshakeTimeout: s.cfg.TunnelTimeout, LocalAddr: s.cfg.LocalAddr}
	var eps []tunnel.Endpoint
	for _, t := range lk.Tunnels {
		eps = append(eps, tunnel.Endpoint{URL: t.URL, Fingerprint: t.Fingerprint})
		if d.Proxy == nil {
			if u, err := url.Parse(t.URL); err == nil {
				host := u.Host
				if u.Port() == "" {
					host = net.JoinHostPort(u.Hostname(), "443")
				}
				if p, _, _ := proxies.forAddr(host); p != nil {
					d.Proxy = p
					res.Tunnel.Proxy = p.Redacted()
				}
			}
		}
	}
	// The tunnel session keeps the tunnel across streams: when it dies
	// (a dial through it fails, or it says it is leaving) it is skipped
	// for 30 s and the next dial pings the others again, so the control
	// channel's resume and the media flows' re-dials go through the next
	// tunnel to answer.
	sess := d.NewSession(eps)
	tctx, cancel := context.WithTimeout(ctx, s.cfg.TunnelTimeout)
	defer cancel()
	t, err := sess.Use(tctx)
	if err != nil {
		res.Tunnel.Err = oneLineErr(err)
		s.log.Info("connect: no tunnel server answered", "err", res.Tunnel.Err)
		return err
	}
	res.Tunnel = TunnelReport{Used: true, URL: t.Endpoint.URL, Server: t.Server.Server, RTT: t.RTT, Proxy: res.Tunnel.Proxy}
	s.log.Info("connect: tunnel", "url", t.Endpoint.URL, "server", t.Server.Server, "rtt", t.RTT, "proxy", res.Tunnel.Proxy)
	s.tunnel = sess
	s.dial = &dialer{proxies: proxies, local: s.cfg.LocalAddr, tunnel: func(ctx context.Context, addr string) (net.Conn, error) {
		return sess.DialContext(ctx, "tcp", addr)
	}}
	return nil
}

// Tunnel returns the URL of the tunnel server the session's connections go
// through now ("" when not tunnelled, or between a tunnel's death and the
// next dial, which picks another).
func (s *Session) Tunnel() string {
	if s.tunnel == nil {
		return ""
	}
	if t := s.tunnel.Current(); t != nil {
		return t.Endpoint.URL
	}
	return ""
}

func oneLineErr(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// proxyDecision reports whether a proxy is in the path and why.
func (s *Session) proxyDecision(p *proxyResolver, used string, lk *LookupResponse) ProxyReport {
	switch {
	case used != "":
		src := ProxyFlag
		if p.explicit == nil {
			if p.env != nil {
				src = ProxyEnv
			} else {
				src = ProxyPAC
			}
		}
		return ProxyReport{Detected: true, Source: src, URL: used, Why: "the " + src + " proxy carries the web tier lookup"}
	case lk != nil && lk.Client.ViaProxy:
		return ProxyReport{Detected: true, Source: ProxyLookup, URL: lk.Client.Proxy, Why: "the web tier saw the lookup arrive through a proxy"}
	case p.configured():
		return ProxyReport{Source: ProxyNone, Why: "a proxy is configured but not for the web tier (NO_PROXY or DIRECT)"}
	}
	return ProxyReport{Source: ProxyNone, Why: "no -proxy, no HTTPS_PROXY, no PAC file, and the web tier saw no proxy"}
}

// controlAddr is where the placement's MMR runs its control channel: its
// TLS endpoint (docs/PROTOCOL.md: the control channel shares the MMR's TLS
// port with TLS media), IPv4 first.
func controlAddr(p zproto.Placement) (string, error) {
	var best netip.AddrPort
	for _, a := range p.Endpoints.TLS {
		if !best.IsValid() || (a.Addr().Is4() && !best.Addr().Is4()) {
			best = a
		}
	}
	if !best.IsValid() {
		return "", fmt.Errorf("placement of MMR %s lists no TLS endpoint", p.MMR)
	}
	return best.String(), nil
}

// Result returns the connection process's report.
func (s *Session) Result() Result { return s.res }

// Flows returns the media flows, one per kind, in Config.Kinds order.
func (s *Session) Flows() []*Flow { return s.flows }

// Flow returns the flow of kind k, or nil.
func (s *Session) Flow(k media.Kind) *Flow {
	for _, f := range s.flows {
		if f.kind == k {
			return f
		}
	}
	return nil
}

// Media returns the participant's media protection: its mode, security
// code (Info) and counters (Stats). Every flow seals and opens through it.
func (s *Session) Media() *secure.State { return s.sec }

// Control returns the control channel client (roster, ping, publish).
func (s *Session) Control() *control.Client { return s.ctl }

// Joined returns the control channel's joined body.
func (s *Session) Joined() *ctlproto.Joined { return s.ctl.Joined() }

// Leave leaves the meeting (no grace period) and closes the session.
func (s *Session) Leave(ctx context.Context) error {
	var err error
	if s.ctl != nil {
		err = s.ctl.Leave(ctx)
	}
	s.Close()
	return err
}

// Close closes media and the control channel without leaving (the server
// keeps the participant for its grace period). Idempotent; waits for every
// goroutine of the session.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.cancel()
		for _, f := range s.flows {
			f.close()
		}
		if s.ctl != nil {
			s.ctl.Close()
		}
		s.wg.Wait()
	})
	return nil
}
