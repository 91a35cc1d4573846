package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/control"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/metrics/prom"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	zproto "github.com/openmmr/mmr/zone/proto"
)

// node is one running MMR: the router, the control channel and TLS media on
// the shared TLS port, and its zone membership (an in-process zone
// controller unless external ones are named).
type node struct {
	r         *router.Router
	edge      *edge.Edge
	ctl       *control.Server
	zc        *zone.Server // nil with external ZCs
	agent     *zcagent.Agent
	log       *slog.Logger
	fp        string
	prom      *prom.Metrics // nil unless -metrics
	met       *prom.Server  // nil unless -metrics
	stopDrops func()        // the drop-reason log (startDropLog); nil before the router runs
	web       *webTier      // nil with -web=false
}

// start builds a node from o. On error everything started is closed.
func start(o *options, log *slog.Logger) (_ *node, err error) {
	n := &node{log: log}
	defer func() {
		if err != nil {
			n.close() // n, not the result: that is nil on error
		}
	}()
	cert, created, err := tlsutil.LoadOrCreate(o.state)
	if err != nil {
		return nil, err
	}
	n.fp = tlsutil.Fingerprint(cert)
	if created {
		log.Info("mmr: created a self-signed certificate; clients pin its fingerprint", "dir", o.state, "sha256", n.fp)
	} else {
		log.Info("mmr: certificate", "dir", o.state, "sha256", n.fp)
	}
	joinSecret, err := loadOrCreateHexSecret(o.joinSecretFile)
	if err != nil {
		return nil, fmt.Errorf("join secret: %w", err)
	}

	o.cfg.Logger = log
	raiseGOMAXPROCS(o.cfg, log)
	if n.r, err = router.New(o.cfg); err != nil {
		return nil, fmt.Errorf("%w (pick other addresses with -udp and -tcp)", err)
	}
	ln, err := listenControl(o, log)
	if err != nil {
		return nil, err
	}
	tlsAddr := addrPort(ln.Addr())
	if n.edge, err = edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(cert), Logger: log}); err != nil {
		ln.Close()
		return nil, err
	}
	eps := control.UDPEndpoints(n.r.UDPAddrs())
	eps = append(eps, endpoints(ctlproto.TransportTCP, n.r.TCPAddrs())...)
	eps = append(eps, endpoints(ctlproto.TransportTLS, dualStack(tlsAddr))...)
	ccfg := control.Config{TLS: tlsutil.ServerConfig(cert), Secret: joinSecret, Endpoints: eps, Logger: log}
	if o.metrics != "" {
		n.prom = prom.New(prom.Options{PerMeeting: o.perMeeting, Pprof: o.pprof})
		ccfg.Observe = n.prom.Observer() // join latency and RTT histograms
	}
	n.ctl, err = control.New(ccfg, n.r)
	if err != nil {
		return nil, err
	}
	n.edge.Handle(ctlproto.ALPN, n.ctl.HandleConn)
	n.edge.Handle("", n.ctl.HandleConn)
	n.edge.Handle(streammedia.ALPN, func(c net.Conn) { _ = n.r.ServeStream(c) })

	zoneSecret, _, err := zone.LoadOrCreateSecret(o.zoneSecretFile)
	if err != nil {
		return nil, fmt.Errorf("zone secret: %w", err)
	}
	zcs := o.zcs
	if len(zcs) == 0 { // a one-MMR zone out of the box: the ZC runs in process
		if n.zc, err = zone.New(zone.Config{DisableListen: true, Certificate: cert, Secrets: [][]byte{zoneSecret}, Logger: log}); err != nil {
			return nil, err
		}
		n.edge.Handle(zproto.ALPN, n.zc.HandleConn)
		zcs = []string{loopbackOf(tlsAddr).String()}
	}
	if o.web {
		if err := n.startWeb(o, joinSecret, tlsAddr, cert); err != nil {
			return nil, fmt.Errorf("web tier: %w", err)
		}
	}
	go func() {
		if err := n.edge.Serve(); err != nil {
			log.Error("mmr: TLS listener stopped", "err", err)
		}
	}()
	zeps := zproto.Endpoints{
		UDP: public(n.r.UDPAddrs(), o.public),
		TCP: public(n.r.TCPAddrs(), o.public),
		TLS: public(dualStack(tlsAddr), o.public),
	}
	var zcTLS *tls.Config
	if n.zc != nil {
		if zcTLS, err = tlsutil.PinnedClientConfig(n.fp); err != nil {
			return nil, err
		}
	}
	n.agent, err = zcagent.New(zcagent.Config{ID: o.id, ZCs: zcs, Secret: zoneSecret, TLS: zcTLS, Endpoints: zeps, Fingerprint: n.fp, Logger: log}, zcagent.LoadFunc(n.load))
	if err != nil {
		return nil, err
	}
	if o.metrics != "" {
		if err := n.serveMetrics(o.metrics); err != nil {
			return nil, err
		}
	}
	n.stopDrops = startDropLog(n.r, log, 0)
	log.Info("mmr: running", "udp", n.r.UDPAddrs(), "tcp", n.r.TCPAddrs(), "tls", tlsAddr, "zone", zcs, "embedded_zc", n.zc != nil, "dscp", o.cfg.DSCP)
	return n, nil
}

// load is the agent's view of this MMR.
func (n *node) load() zcagent.Load {
	st := n.r.Stats()
	l := zcagent.Load{Participants: st.Participants, Meetings: st.Meetings, Traffic: st.Counters,
		NotAccepting: !n.edge.Accepting() || !st.TCPAccepting}
	for _, m := range n.r.Meetings() {
		l.Hosted = append(l.Hosted, zcagent.Meeting{ID: m.ID, Participants: m.Participants})
	}
	return l
}

// close stops everything, clients' side first. Idempotent enough: each part is.
func (n *node) close() {
	if n.stopDrops != nil {
		n.stopDrops()
	}
	if n.met != nil {
		n.met.Close()
	}
	if n.agent != nil {
		n.agent.Close()
	}
	if n.edge != nil {
		n.edge.Close()
	}
	if n.web != nil {
		n.web.close()
	}
	if n.ctl != nil {
		n.ctl.Close()
	}
	if n.zc != nil {
		n.zc.Close()
	}
	if n.r != nil {
		n.r.Close()
	}
}

func endpoints(transport string, addrs []netip.AddrPort) []ctlproto.Endpoint {
	var eps []ctlproto.Endpoint
	for _, a := range addrs {
		for _, k := range media.Kinds {
			eps = append(eps, ctlproto.Endpoint{Kind: ctlproto.Kind(k), Transport: transport, Addr: a})
		}
	}
	return eps
}

// public replaces unspecified addresses by ip (or loopback when ip is
// unset: a zone on one machine), as the ZC hands them to clients.
func public(addrs []netip.AddrPort, ip netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		if a.Addr().IsUnspecified() {
			if ip.IsValid() {
				if ip.Is4() != a.Addr().Is4() {
					continue
				}
				a = netip.AddrPortFrom(ip, a.Port())
			} else {
				a = loopbackOf(a)
			}
		}
		out = append(out, a)
	}
	return out
}

// dualStack expands the IPv6 wildcard of a dual-stack listener (":443")
// into both families' wildcards.
func dualStack(a netip.AddrPort) []netip.AddrPort {
	if a.Addr() == netip.IPv6Unspecified() {
		return []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), a.Port()), a}
	}
	return []netip.AddrPort{a}
}

func loopbackOf(a netip.AddrPort) netip.AddrPort {
	if !a.Addr().IsUnspecified() {
		return a
	}
	if a.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), a.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Loopback(), a.Port())
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return netip.AddrPortFrom(ta.AddrPort().Addr().Unmap(), ta.AddrPort().Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// loadOrCreateHexSecret reads a secret file (the bytes as written, one
// trailing newline ignored: what `mmr token -secret-file` reads), creating a
// random 32-byte hex secret there (mode 0600) when it does not exist.
func loadOrCreateHexSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		b = []byte(hex.EncodeToString(raw) + "\n")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(string(b), "\n")), nil
}

// controlFallback is where the TLS port goes when the default :443 may not
// be bound (a non-root user without CAP_NET_BIND_SERVICE), so that a plain
// `go run ./cmd/mmr` works for everyone: the conventional unprivileged
// HTTPS port, on every interface like the default.
const controlFallback = ":8443"

// listenControl binds the TLS port: o.control, or controlFallback when
// o.control is the default and the system refuses it for lack of privilege.
func listenControl(o *options, log *slog.Logger) (net.Listener, error) {
	ln, err := edge.Listen(o.control, "-control")
	if err == nil || o.controlSet || !errors.Is(err, syscall.EACCES) {
		return ln, err
	}
	log.Warn("mmr: port 443 needs root or CAP_NET_BIND_SERVICE; serving the TLS port on "+controlFallback+" instead (choose with -control)",
		"wanted", o.control, "addr", controlFallback)
	return edge.Listen(controlFallback, "-control")
}
