// Package web is the web tier: the service a client asks, over HTTPS 443,
// for the meeting it wants to join (phase 1 of the connection process). It
// serves the admin meetings API (authenticated with API keys) and the
// unauthenticated meeting lookup, which answers with the meeting's details,
// the participant's role and join token, and the meeting zones ranked for
// this client by Geo-IP (web/geo) and health (web/zonehealth). State lives
// in web/store (SQLite or PostgreSQL), shared by every web node.
//
// Every route, field, error code and limit is in docs/PROTOCOL.md, "Web
// tier (HTTPS 443)".
//
// # Brute force
//
// A meeting passcode of 6 digits has 10^6 values. Per meeting, Limits
// allows MeetingFailures (10) wrong passcodes, host keys or panelist keys
// per MeetingWindow (15 min) from all sources together, then locks every
// lookup presenting one of the meeting's secrets (also the right one) for
// MeetingLockout (15 min), doubling with every
// further lockout up to MeetingLockoutMax (24 h). Sustained guessing thus
// gets 10 guesses per 15 + 15 min, then 10 per 15 + 30, +60, ..., and from
// the eighth lockout on 10 guesses per day: about 3,700 guesses a year,
// a 0.4% chance of finding a 6-digit passcode in a year (50% needs 500,000
// guesses: over a century). Per source address, SourceFailures (20) failed
// lookups of any kind (wrong passcode, wrong host key, unknown meeting ID,
// which also stops meeting-ID enumeration) per SourceWindow lock the source
// for SourceLockout (1 min), doubling up to SourceLockoutMax (24 h). Both
// counters live in the database, so every web node sees the same ones.
// The price is that an attacker can keep a meeting's passcode path locked;
// the lockout answer says so (locked-out, Retry-After), and the host can
// change the passcode, which does not reset the lockout, or the meeting.
//
// On top, LookupRate/LookupBurst is a token bucket per source address per
// node (in memory) against floods of any lookup.
//
// A Server is safe for concurrent use.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/web/geo"
	"github.com/openmmr/mmr/web/store"
	"github.com/openmmr/mmr/web/zonehealth"
)

// HTTP hardening. A lookup or admin request is a few hundred bytes: these
// bound what a slow or hostile client can hold.
const (
	// ReadHeaderTimeout bounds the request line and headers (slowloris).
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds the whole request, body included.
	ReadTimeout = 10 * time.Second
	// WriteTimeout bounds writing the answer (from the end of the headers).
	WriteTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout = 60 * time.Second
	// MaxHeaderBytes bounds request headers (the largest real ones, with
	// cookies and a bearer token, are a few KiB).
	MaxHeaderBytes = 8 << 10
	// MaxLookupBody and MaxAdminBody are the request body limits of the
	// lookup and of the meetings API.
	MaxLookupBody = 4 << 10
	MaxAdminBody  = 16 << 10
	// requestTimeout bounds one request's work (store calls, and hashing
	// queued behind others): a safety net well above any normal request,
	// whose client has usually given up by then.
	requestTimeout = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Site is the configuration file: [web], [[zones]], [[tunnels]].
	Site config.File
	// Store is the database; required. The caller closes it after the
	// Server.
	Store store.Store
	// Secret is the join-token secret shared with the MMRs; required.
	Secret []byte
	// Logger: default slog.Default().
	Logger *slog.Logger
	// Argon2 are the cost parameters of new secret hashes; zero:
	// DefaultArgon2(). (Tests lower them: the race detector makes argon2id
	// some ten times slower.)
	Argon2 Argon2Params
	// Extra are more handlers to mount, by http.ServeMux pattern (the web
	// client's, webclient.Handler.Routes). A pattern equal to one of the
	// tier's own page routes, "/" or "/j/{id}", replaces that page; the
	// API routes (/v1/lookup, /v1/meetings, /v1/healthz) cannot be
	// replaced (New fails).
	Extra map[string]http.Handler
}

// Server is the web tier's HTTP handler and its background work (Geo-IP
// reload, zone health checks).
type Server struct {
	cfg      config.Web
	zones    []config.Zone
	tunnels  []tunnelJSON
	zoneIdx  map[string]int
	st       store.Store
	secret   []byte
	log      *slog.Logger
	geo      *geo.DB // nil without a database
	ranker   *geo.Ranker
	health   *zonehealth.Checker
	proxies  []netip.Prefix
	limiter  *rateLimiter
	verify   *verifier
	refused  refusals
	meeting  store.Policy
	source   store.Policy
	lookups  atomic.Uint64
	mux      *http.ServeMux
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	now      func() time.Time
	argon    Argon2Params
	zcsJSON  [][]zcJSON // per zone, immutable
	clientID func() (string, [token.IDSize]byte, error)
}

// Lockout scopes in the store.
const (
	scopeMeeting = "meeting"
	scopeSource  = "source"
)

// New validates cfg, opens the Geo-IP database (if configured) and starts
// the zone health checks.
func New(cfg Config) (_ *Server, err error) {
	if cfg.Store == nil {
		return nil, errors.New("web: a store is required")
	}
	if len(cfg.Secret) < token.MinSecret {
		return nil, fmt.Errorf("web: join secret shorter than %d bytes", token.MinSecret)
	}
	if err := cfg.Site.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := cfg.Site.Web
	l := w.Limits
	s := &Server{
		cfg: w, zones: cfg.Site.Zones, st: cfg.Store, secret: append([]byte(nil), cfg.Secret...), log: cfg.Logger,
		limiter: newRateLimiter(l.LookupRate, l.LookupBurst), verify: newVerifier(runtime.GOMAXPROCS(0)),
		refused: newRefusals(), done: make(chan struct{}), now: time.Now, zoneIdx: map[string]int{}, tunnels: []tunnelJSON{},
		meeting:  store.Policy{Limit: l.MeetingFailures, Window: l.MeetingWindow.D(), Lockout: l.MeetingLockout.D(), LockoutMax: l.MeetingLockoutMax.D()},
		source:   store.Policy{Limit: l.SourceFailures, Window: l.SourceWindow.D(), Lockout: l.SourceLockout.D(), LockoutMax: l.SourceLockoutMax.D()},
		clientID: newIdentity, argon: cfg.Argon2,
	}
	if s.argon == (Argon2Params{}) {
		s.argon = DefaultArgon2()
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, p := range w.TrustedProxies {
		pf, _ := config.ParsePrefix(p) // validated
		s.proxies = append(s.proxies, pf)
	}
	for _, t := range cfg.Site.Tunnels {
		s.tunnels = append(s.tunnels, tunnelJSON{URL: t.URL, Fingerprint: t.Fingerprint})
	}
	gz := make([]geo.Zone, len(s.zones))
	hz := make([]zonehealth.Zone, len(s.zones))
	for i, z := range s.zones {
		s.zoneIdx[z.Name] = i
		gz[i] = geo.Zone{Name: z.Name, Lat: z.Latitude, Lon: z.Longitude, Countries: z.Countries, Continents: z.Continents}
		hz[i].Name = z.Name
		var zj []zcJSON
		for _, c := range z.ZCs {
			tc, err := zonehealth.TLSConfig(c)
			if err != nil {
				return nil, err
			}
			hz[i].ZCs = append(hz[i].ZCs, zonehealth.ZC{Addr: c.Addr, TLS: tc})
			zj = append(zj, zcJSON{Addr: c.Addr, Fingerprint: c.Fingerprint, CAPEM: c.CAPEM, ServerName: c.ServerName})
		}
		s.zcsJSON = append(s.zcsJSON, zj)
	}
	if s.ranker, err = geo.NewRanker(gz, w.DefaultOrder, w.CountryOverrides); err != nil {
		return nil, err
	}
	if w.GeoIPDB != "" {
		if s.geo, err = geo.Open(w.GeoIPDB, w.GeoIPPoll.D(), s.log); err != nil {
			return nil, err
		}
	}
	s.health = zonehealth.New(hz, w.ZoneCheckInterval.D(), w.ZoneCheckTimeout.D(), s.log)
	if err := s.routes(cfg.Extra); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.prune()
	return s, nil
}

// pruneEvery is how often idle lockout counters are deleted.
const pruneEvery = 10 * time.Minute

func (s *Server) prune() {
	defer s.wg.Done()
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		keep := max(s.meeting.LockoutMax, s.meeting.Window, s.source.LockoutMax, s.source.Window)
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		if _, err := s.st.Prune(ctx, s.now().Add(-keep)); err != nil {
			s.log.Warn("web: pruning lockout counters", "err", err)
		}
		cancel()
	}
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.mux }

// HTTPServer returns an http.Server for the handler with the hardening
// timeouts and limits above; the caller serves it (Serve, ServeTLS) and
// shuts it down.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Stats are the web tier's counters for metrics. Each only grows.
type Stats struct {
	Lookups           uint64            // successful lookups
	Refused           map[string]uint64 // error answers by code
	GeoReloads        uint64            // Geo-IP database reloads
	GeoReloadFailures uint64
	ZoneChecks        uint64 // zone health rounds
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{Lookups: s.lookups.Load(), Refused: map[string]uint64{}, ZoneChecks: s.health.Rounds()}
	for c, n := range s.refused {
		st.Refused[c] = n.Load()
	}
	if s.geo != nil {
		st.GeoReloads, st.GeoReloadFailures = s.geo.Reloads()
	}
	return st
}

// ZoneHealth returns the health of the configured zones, in file order.
func (s *Server) ZoneHealth() []zonehealth.Status { return s.health.Status() }

// Close stops the background work. It does not close the store or the
// HTTP servers. Idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.wg.Wait()
		if s.health != nil {
			s.health.Close()
		}
		if s.geo != nil {
			s.geo.Close()
		}
	})
	return nil
}

func (s *Server) routes(extra map[string]http.Handler) error {
	m := http.NewServeMux()
	for p, h := range extra {
		switch p {
		case "/v1/lookup", "/v1/meetings", "/v1/meetings/{id}", "/v1/healthz":
			return fmt.Errorf("web: Extra route %q would replace an API route", p)
		}
		m.Handle(p, h)
	}
	m.HandleFunc("/v1/lookup", s.methods(map[string]http.HandlerFunc{http.MethodPost: s.handleLookup}))
	m.HandleFunc("/v1/meetings", s.methods(map[string]http.HandlerFunc{http.MethodGet: s.admin(s.handleList), http.MethodPost: s.admin(s.handleCreate)}))
	m.HandleFunc("/v1/meetings/{id}", s.methods(map[string]http.HandlerFunc{
		http.MethodGet: s.admin(s.handleGet), http.MethodPatch: s.admin(s.handleUpdate), http.MethodDelete: s.admin(s.handleDelete)}))
	m.HandleFunc("/v1/healthz", s.methods(map[string]http.HandlerFunc{http.MethodGet: s.handleHealthz}))
	if _, ok := extra["/j/{id}"]; !ok {
		m.HandleFunc("/j/{id}", s.methods(map[string]http.HandlerFunc{http.MethodGet: s.handleJoinPage}))
	}
	if _, ok := extra["/"]; !ok {
		m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				s.handleHome(w, r)
				return
			}
			s.writeError(w, errorf(http.StatusNotFound, CodeNotFound, "no such route: "+r.URL.Path))
		})
	}
	s.mux = m
	return nil
}

// methods dispatches by method, answering 405 with Allow (and a JSON body)
// for the others. HEAD is served by GET.
func (s *Server) methods(hs map[string]http.HandlerFunc) http.HandlerFunc {
	var allow []string
	for m := range hs {
		allow = append(allow, m)
	}
	allowed := strings.Join(allow, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		h, ok := hs[method]
		if !ok {
			w.Header().Set("Allow", allowed)
			s.writeError(w, errorf(http.StatusMethodNotAllowed, CodeMethod, r.Method+" not allowed here (allowed: "+allowed+")"))
			return
		}
		h(w, r)
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
