package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/internal/onebox"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web"
	"github.com/openmmr/mmr/web/sniff"
	"github.com/openmmr/mmr/web/store"
	"github.com/openmmr/mmr/webclient"
)

// webTier is the web tier served on the node's TLS port: ALPN h2 and
// http/1.1, and HTTP clients that negotiate no ALPN (told from control
// clients by web/sniff).
type webTier struct {
	srv   *web.Server
	st    store.Store
	http  *http.Server
	sniff *sniff.Router
	wc    *webclient.Handler      // the web client's page and WebSocket endpoints
	wt    *webclient.WebTransport // its media over WebTransport on UDP; nil when off
	url   string                  // https://HOST[:PORT] as a local client reaches it
	wg    sync.WaitGroup
}

// Files of the one-box web tier in the state directory (mode 0600).
const (
	// firstMeetingFile records the meeting created on first start, so
	// every start can say how to join it.
	firstMeetingFile = "web-meeting.json"
	// adminKeyFile holds the admin API key created on first start.
	adminKeyFile = "web-admin.key"
)

// firstMeeting is the content of firstMeetingFile.
type firstMeeting struct {
	ID       string `json:"id"`
	Passcode string `json:"passcode"`
}

// startWeb serves the web tier on n's edge: SQLite in the state directory
// (or -web-db), the zones of -web-config, else one zone named "local" whose
// ZC is this node's in-process one (its address and fingerprint). It is
// called before the edge serves.
func (n *node) startWeb(o *options, secret []byte, tlsAddr netip.AddrPort, cert tls.Certificate) (err error) {
	site := config.Default()
	if o.webConfig != "" {
		if site, err = config.Load(o.webConfig); err != nil {
			return err
		}
	}
	local := publicURLAddr(tlsAddr, o.public)
	w := &webTier{url: "https://" + hostPort(local)}
	n.web = w
	if len(site.Zones) == 0 {
		if n.zc == nil {
			n.log.Warn("mmr: web tier off: external zone controllers (-zc) and no zones in -web-config")
			n.web = nil
			return nil
		}
		site.Zones = []config.Zone{{Name: "local", ZCs: []config.ZC{{Addr: local.String(), Fingerprint: n.fp}}}}
	}
	if site.Web.WebClientURL == "" {
		site.Web.WebClientURL = w.url + "/j/"
	}
	dsn := o.webDB // the flag, else [web] db of -web-config, else SQLite in the state directory
	if dsn == "" {
		dsn = site.Web.DB
	}
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(o.state, "web.db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w.st, err = store.Open(ctx, dsn); err != nil {
		return err
	}
	if o.webTransport {
		w.startWebTransport(n, tlsAddr, cert)
	}
	if w.wc, err = webclient.New(webclient.Config{Control: n.ctl, Media: n.r, Logger: n.log, WebTransport: w.wt != nil}); err != nil {
		return err
	}
	if w.srv, err = web.New(web.Config{Site: site, Store: w.st, Secret: secret, Logger: n.log, Extra: w.wc.Routes()}); err != nil {
		return err
	}
	w.http = w.srv.HTTPServer()
	sniffed := sniff.NewListener(n.edge.Addr())
	w.sniff = sniff.New(sniffed.Deliver, n.ctl.HandleConn)
	n.edge.Handle("", w.sniff.Route)
	for _, l := range []net.Listener{n.edge.Listener("h2"), n.edge.Listener("http/1.1"), sniffed} {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := w.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				n.log.Error("mmr: web tier stopped", "err", err)
			}
		}()
	}
	return w.firstStart(ctx, n, o.state)
}

// startWebTransport serves the web client's WebTransport endpoint on UDP
// at the TLS port's address and number (443, or 8443 where the TLS port fell
// back to it), with the TLS port's certificate. A UDP port that cannot be
// bound is logged and leaves WebTransport off: the page then uses
// WebSockets only.
func (w *webTier) startWebTransport(n *node, tlsAddr netip.AddrPort, cert tls.Certificate) {
	pc, err := net.ListenPacket("udp", tlsAddr.String())
	if err != nil {
		n.log.Warn("mmr: WebTransport off: cannot bind UDP on the TLS port's number (the web client uses WebSockets)", "addr", tlsAddr, "err", err)
		return
	}
	wt, err := webclient.NewWebTransport(webclient.WebTransportConfig{Media: n.r, TLS: tlsutil.ServerConfig(cert), Logger: n.log})
	if err != nil {
		pc.Close()
		n.log.Warn("mmr: WebTransport off", "err", err)
		return
	}
	w.wt = wt
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := wt.Serve(pc); err != nil {
			n.log.Error("mmr: WebTransport stopped", "err", err)
		}
	}()
	n.log.Info("mmr: web client media over WebTransport", "udp", pc.LocalAddr(), "path", webclient.WebTransportPath)
}

// firstStart creates, once, a meeting with a passcode and an admin API key,
// and logs how to join the meeting (every start).
func (w *webTier) firstStart(ctx context.Context, n *node, state string) error {
	path := filepath.Join(state, firstMeetingFile)
	var fm firstMeeting
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &fm); err != nil {
			return fmt.Errorf("%s: %w (delete it to create a new meeting)", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		topic := "openmmr one-box meeting"
		c, err := w.srv.CreateMeeting(ctx, web.MeetingRequest{Topic: &topic})
		if err != nil {
			return fmt.Errorf("first meeting: %w", err)
		}
		fm = firstMeeting{ID: c.ID, Passcode: c.Passcode}
		b, _ := json.Marshal(fm)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
		key, _, err := web.CreateAPIKey(ctx, w.st, "one-box admin", time.Now())
		if err != nil {
			return err
		}
		kp := filepath.Join(state, adminKeyFile)
		if err := os.WriteFile(kp, []byte(key+"\n"), 0o600); err != nil {
			return err
		}
		n.log.Info("mmr: web tier: created an admin API key for /v1/meetings (Authorization: Bearer KEY)", "file", kp)
	default:
		return err
	}
	if err := onebox.Write(state, onebox.Join{Web: w.url, Pin: n.fp, Meeting: fm.ID, Passcode: fm.Passcode}); err != nil {
		return err
	}
	n.log.Info("mmr: join the meeting", "meeting", fm.ID, "passcode", fm.Passcode, "web", w.url,
		"command", fmt.Sprintf("go run ./cmd/openmmr join -web %s -pin %s -passcode %s %s", w.url, n.fp, fm.Passcode, fm.ID),
		"or", "go run ./cmd/openmmr join -local")
	return nil
}

// close stops serving HTTP, then the web tier and its store. Idempotent.
func (w *webTier) close() {
	if w.http != nil {
		w.http.Close()
	}
	if w.wc != nil {
		w.wc.Close() // hijacked WebSockets: http.Server.Close leaves them
	}
	if w.wt != nil {
		w.wt.Close()
	}
	w.wg.Wait()
	if w.srv != nil {
		w.srv.Close()
	}
	if w.st != nil {
		w.st.Close()
	}
}

// publicURLAddr is the address a client of this machine reaches the TLS
// port on: -public, else loopback for wildcards (IPv4 preferred).
func publicURLAddr(tlsAddr netip.AddrPort, ip netip.Addr) netip.AddrPort {
	addrs := public(dualStack(tlsAddr), ip)
	for _, a := range addrs {
		if a.Addr().Is4() {
			return a
		}
	}
	if len(addrs) > 0 {
		return addrs[0]
	}
	return loopbackOf(tlsAddr)
}

// hostPort prints a, without the port when it is 443.
func hostPort(a netip.AddrPort) string {
	if a.Port() == 443 {
		if a.Addr().Is6() {
			return "[" + a.Addr().String() + "]"
		}
		return a.Addr().String()
	}
	return a.String()
}
