package connecttest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web"
	"github.com/openmmr/mmr/web/store"
)

// realWeb is the project's web tier (package web) with a SQLite store in a
// temporary directory, as the one-box mmr runs it.
type realWeb struct {
	cert tls.Certificate
	dir  string
	st   store.Store
	srv  *web.Server
}

// StartWeb starts the real web tier (package web: SQLite store, the
// meetings of cfg created through its API, the zones of cfg, lookup rate
// limits raised for tests) over HTTPS with a self-signed certificate. A
// negative TokenTTL, which the web tier refuses, starts the contract
// stand-in instead (it mints tokens already expired).
func StartWeb(cfg WebConfig) (*Web, error) {
	if cfg.TokenTTL < 0 {
		return startContractWeb(cfg)
	}
	if !cfg.IP.IsValid() {
		cfg.IP = netip.MustParseAddr("127.0.0.1")
	}
	if len(cfg.JoinSecret) == 0 {
		return nil, errors.New("connecttest: WebConfig.JoinSecret required")
	}
	cert, err := tlsutil.SelfSigned(cfg.IP.String(), "localhost")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "connecttest-web-")
	if err != nil {
		return nil, err
	}
	w := &Web{cfg: cfg, Fingerprint: tlsutil.Fingerprint(cert), real: &realWeb{cert: cert, dir: dir}}
	if err := w.listen(netip.AddrPortFrom(cfg.IP, cfg.Port).String()); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := w.serveReal(); err != nil {
		w.ln.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return w, nil
}

func (w *Web) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	w.ln, w.URL = ln, "https://"+ln.Addr().String()
	return nil
}

// serveReal builds the web.Server for the current zones on w.ln.
func (w *Web) serveReal() error {
	r := w.real
	w.mu.Lock()
	cfg := w.cfg
	w.mu.Unlock()
	site := config.Default()
	site.Web.WebClientURL = w.URL + "/j/"
	if cfg.TokenTTL > 0 {
		site.Web.TokenTTL = config.Duration(cfg.TokenTTL)
	}
	site.Web.Limits.LookupRate, site.Web.Limits.LookupBurst = 1e6, 1e6 // tests join in bursts from one address
	for _, t := range cfg.Tunnels {
		site.Tunnels = append(site.Tunnels, config.Tunnel{URL: t.URL, Fingerprint: t.Fingerprint})
	}
	for _, z := range cfg.Zones {
		cz := config.Zone{Name: z.Name}
		for _, zc := range z.ZCs {
			cz.ZCs = append(cz.ZCs, config.ZC{Addr: zc.Addr, Fingerprint: zc.Fingerprint, CAPEM: zc.CAPEM, ServerName: zc.ServerName})
		}
		site.Zones = append(site.Zones, cz)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if r.st == nil {
		if r.st, err = store.Open(ctx, "sqlite:"+filepath.Join(r.dir, "web.db")); err != nil {
			return err
		}
	}
	if r.srv, err = web.New(web.Config{Site: site, Store: r.st, Secret: cfg.JoinSecret, Logger: quiet()}); err != nil {
		return err
	}
	for id, pass := range cfg.Meetings {
		id, pass := id, pass
		if _, err := r.srv.CreateMeeting(ctx, web.MeetingRequest{ID: &id, Passcode: &pass}); err != nil && !isExists(err) {
			return fmt.Errorf("connecttest: create meeting %s: %w", id, err)
		}
	}
	for id, pass := range cfg.E2EEMeetings {
		id, pass, e2ee := id, pass, true
		if _, err := r.srv.CreateMeeting(ctx, web.MeetingRequest{ID: &id, Passcode: &pass, E2EE: &e2ee}); err != nil && !isExists(err) {
			return fmt.Errorf("connecttest: create E2EE meeting %s: %w", id, err)
		}
	}
	w.srv = r.srv.HTTPServer()
	w.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{r.cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	w.done = make(chan struct{})
	srv, ln, done := w.srv, w.ln, w.done
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "") // ends with http.ErrServerClosed at Close

	}()
	return nil
}

// restart serves the current zones: a new web.Server on the same address
// (the meetings persist in the store).
func (w *Web) restart() error {
	addr := w.ln.Addr().String()
	_ = w.srv.Close()
	<-w.done
	w.real.srv.Close()
	if err := w.listen(addr); err != nil {
		return err
	}
	return w.serveReal()
}

func (r *realWeb) close() {
	if r.srv != nil {
		r.srv.Close()
	}
	if r.st != nil {
		r.st.Close()
	}
	os.RemoveAll(r.dir)
}

// isExists reports a meeting ID already in the store (after a restart).
func isExists(err error) bool {
	return errors.Is(err, store.ErrExists) || strings.Contains(err.Error(), "exist")
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
