// Package connecttest starts real openmmr zones in process for tests of
// clients: a router (UDP and TCP media), the TLS 443 edge with the control
// channel, TLS media and an in-process zone controller, and the MMR's
// registration agent, assembled as cmd/mmr does for its one-box zone.
// Nothing is faked: every listener is a real socket.
package connecttest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/control"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/zcagent"
	"github.com/openmmr/mmr/edge"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	zproto "github.com/openmmr/mmr/zone/proto"
)

// ZoneConfig configures StartZone. Zero fields take defaults.
type ZoneConfig struct {
	// Name is the zone's and its MMR's name. Default "z1".
	Name string
	// IP is the address every listener binds. Default 127.0.0.1.
	IP netip.Addr
	// MediaPort is the UDP and TCP media port (0: ephemeral, UDP and TCP
	// then get the same port number only by chance).
	MediaPort uint16
	// TLSPort is the TLS port of control, TLS media and the ZC (0: ephemeral).
	TLSPort uint16
	// JoinSecret is the control channel's join-token secret (required, ≥16 bytes).
	JoinSecret []byte
	// Logger: default a discarding logger.
	Logger *slog.Logger
}

// Zone is one running one-MMR zone.
type Zone struct {
	Name        string
	Cert        tls.Certificate
	Fingerprint string         // the TLS certificate's SHA-256 (ZC and MMR share it)
	TLSAddr     netip.AddrPort // ZC, control channel and TLS media
	UDPAddr     netip.AddrPort
	TCPAddr     netip.AddrPort
	Router      *router.Router
	Control     *control.Server
	ZC          *zone.Server

	edge  *edge.Edge
	agent *zcagent.Agent
	done  chan struct{}
}

// StartZone starts a zone and waits (up to 20 s) until its MMR is
// registered, so that a lookup places meetings at once.
func StartZone(cfg ZoneConfig) (z *Zone, err error) {
	if cfg.Name == "" {
		cfg.Name = "z1"
	}
	if !cfg.IP.IsValid() {
		cfg.IP = netip.MustParseAddr("127.0.0.1")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	z = &Zone{Name: cfg.Name, done: make(chan struct{})}
	defer func() {
		if err != nil {
			z.Close()
		}
	}()
	if z.Cert, err = tlsutil.SelfSigned(cfg.IP.String(), "localhost"); err != nil {
		return nil, err
	}
	z.Fingerprint = tlsutil.Fingerprint(z.Cert)
	media := netip.AddrPortFrom(cfg.IP, cfg.MediaPort)
	if z.Router, err = router.New(router.Config{UDP: []netip.AddrPort{media}, TCP: []netip.AddrPort{media}, Shards: 1, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	z.UDPAddr, z.TCPAddr = z.Router.UDPAddrs()[0], z.Router.TCPAddrs()[0]
	ln, err := net.Listen("tcp", netip.AddrPortFrom(cfg.IP, cfg.TLSPort).String())
	if err != nil {
		return nil, err
	}
	z.TLSAddr = ln.Addr().(*net.TCPAddr).AddrPort()
	if z.edge, err = edge.New(ln, edge.Config{TLS: tlsutil.ServerConfig(z.Cert), Logger: cfg.Logger}); err != nil {
		ln.Close()
		return nil, err
	}
	eps := control.UDPEndpoints(z.Router.UDPAddrs())
	eps = append(eps, endpoints(ctlproto.TransportTCP, z.TCPAddr)...)
	eps = append(eps, endpoints(ctlproto.TransportTLS, z.TLSAddr)...)
	if z.Control, err = control.New(control.Config{TLS: tlsutil.ServerConfig(z.Cert), Secret: cfg.JoinSecret, Endpoints: eps, Logger: cfg.Logger}, z.Router); err != nil {
		return nil, err
	}
	z.edge.Handle(ctlproto.ALPN, z.Control.HandleConn)
	z.edge.Handle("", z.Control.HandleConn)
	z.edge.Handle(streammedia.ALPN, func(c net.Conn) { _ = z.Router.ServeStream(c) })
	zoneSecret := []byte("connecttest-zone-secret-" + cfg.Name + "-0123456789")
	if z.ZC, err = zone.New(zone.Config{ID: "zc-" + cfg.Name, DisableListen: true, Certificate: z.Cert, Secrets: [][]byte{zoneSecret}, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	z.edge.Handle(zproto.ALPN, z.ZC.HandleConn)
	e := z.edge
	go func() {
		defer close(z.done)
		_ = e.Serve()
	}()
	zcTLS, err := tlsutil.PinnedClientConfig(z.Fingerprint)
	if err != nil {
		return nil, err
	}
	zeps := zproto.Endpoints{UDP: []netip.AddrPort{z.UDPAddr}, TCP: []netip.AddrPort{z.TCPAddr}, TLS: []netip.AddrPort{z.TLSAddr}}
	if z.agent, err = zcagent.New(zcagent.Config{ID: "mmr-" + cfg.Name, ZCs: []string{z.TLSAddr.String()}, Secret: zoneSecret, TLS: zcTLS,
		Endpoints: zeps, Fingerprint: z.Fingerprint, Logger: cfg.Logger}, zcagent.LoadFunc(z.load)); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(z.ZC.MMRs()) == 0 || !z.ZC.MMRs()[0].Selectable {
		if time.Now().After(deadline) {
			return nil, errors.New("connecttest: the MMR did not register with its ZC within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return z, nil
}

func (z *Zone) load() zcagent.Load {
	st := z.Router.Stats()
	l := zcagent.Load{Participants: st.Participants, Meetings: st.Meetings, Traffic: st.Counters}
	for _, m := range z.Router.Meetings() {
		l.Hosted = append(l.Hosted, zcagent.Meeting{ID: m.ID, Participants: m.Participants})
	}
	return l
}

// ZCTLS returns a client TLS configuration pinning the zone's certificate.
func (z *Zone) ZCTLS() *tls.Config {
	c, err := tlsutil.PinnedClientConfig(z.Fingerprint)
	if err != nil {
		panic(fmt.Sprintf("connecttest: %v", err)) // a fingerprint we computed
	}
	return c
}

// Close stops the zone. Idempotent; waits for its goroutines.
func (z *Zone) Close() {
	if z.agent != nil {
		z.agent.Close()
	}
	if z.edge != nil {
		z.edge.Close()
		<-z.done
		z.edge = nil
	}
	if z.Control != nil {
		z.Control.Close()
	}
	if z.ZC != nil {
		z.ZC.Close()
	}
	if z.Router != nil {
		z.Router.Close()
	}
}

// Wait is a helper for polling: it returns nil once cond holds, or an
// error after timeout.
func Wait(ctx context.Context, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func endpoints(transport string, a netip.AddrPort) []ctlproto.Endpoint {
	var eps []ctlproto.Endpoint
	for _, k := range media.Kinds {
		eps = append(eps, ctlproto.Endpoint{Kind: ctlproto.Kind(k), Transport: transport, Addr: a})
	}
	return eps
}
