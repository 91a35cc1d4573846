package connecttest

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/tunnel"
)

// Tunnel is a running HTTP tunnel server (package tunnel) with a
// self-signed certificate.
type Tunnel struct {
	URL         string // https://IP:PORT/v1/tunnel
	Fingerprint string
	Server      *tunnel.Server
	done        chan struct{}
}

// TunnelConfig configures StartTunnelWith.
type TunnelConfig struct {
	// IP and Port are where the server listens (port 0: ephemeral).
	IP   netip.Addr
	Port uint16
	// Secret verifies the clients' join tokens.
	Secret []byte
	// Zones are the addresses it relays to (ZCs, MMR TLS and TCP endpoints).
	Zones []string
	// Delay, when positive, makes the server slow: every connection it
	// accepts waits this long before its first byte is read (the TLS
	// handshake, hence every ping and stream, starts Delay late), as a
	// distant or overloaded tunnel server would.
	Delay time.Duration
}

// StartTunnel starts a tunnel server on ip:port (port 0: ephemeral) that
// relays to the zones' addresses (ZCs, MMR TLS and TCP endpoints) for
// clients holding a join token signed with secret.
func StartTunnel(ip netip.Addr, port uint16, secret []byte, zones []string) (*Tunnel, error) {
	return StartTunnelWith(TunnelConfig{IP: ip, Port: port, Secret: secret, Zones: zones})
}

// StartTunnelWith starts a tunnel server as configured.
func StartTunnelWith(cfg TunnelConfig) (*Tunnel, error) {
	cert, err := tlsutil.SelfSigned(cfg.IP.String(), "localhost")
	if err != nil {
		return nil, err
	}
	s, err := tunnel.NewServer(tunnel.Config{Name: "connecttest", Secret: cfg.Secret, Zones: cfg.Zones})
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	ln, err = net.Listen("tcp", netip.AddrPortFrom(cfg.IP, cfg.Port).String())
	if err != nil {
		s.Close()
		return nil, err
	}
	t := &Tunnel{URL: "https://" + ln.Addr().String() + "/v1/tunnel", Fingerprint: tlsutil.Fingerprint(cert), Server: s, done: make(chan struct{})}
	if cfg.Delay > 0 {
		ln = &slowListener{Listener: ln, delay: cfg.Delay}
	}
	go func() {
		defer close(t.done)
		_ = s.Serve(ln, cert)
	}()
	return t, nil
}

// Close stops the server and waits for it.
func (t *Tunnel) Close() {
	t.Server.Close()
	<-t.done
}

// slowListener hands out connections whose first Read waits delay.
type slowListener struct {
	net.Listener
	delay time.Duration
}

func (l *slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, delay: l.delay}, nil
}

type slowConn struct {
	net.Conn
	delay time.Duration
	once  sync.Once
}

// Read waits the delay before the connection's first read (the TLS
// handshake runs on the connection's own goroutine, so only it is slowed).
func (c *slowConn) Read(p []byte) (int, error) {
	c.once.Do(func() { time.Sleep(c.delay) }) // the injected slowness itself, not synchronisation
	return c.Conn.Read(p)
}
