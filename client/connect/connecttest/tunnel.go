package connecttest

import (
	"net"
	"net/netip"

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

// StartTunnel starts a tunnel server on ip:port (port 0: ephemeral) that
// relays to the zones' addresses (ZCs, MMR TLS and TCP endpoints) for
// clients holding a join token signed with secret.
func StartTunnel(ip netip.Addr, port uint16, secret []byte, zones []string) (*Tunnel, error) {
	cert, err := tlsutil.SelfSigned(ip.String(), "localhost")
	if err != nil {
		return nil, err
	}
	s, err := tunnel.NewServer(tunnel.Config{Name: "connecttest", Secret: secret, Zones: zones})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		s.Close()
		return nil, err
	}
	t := &Tunnel{URL: "https://" + ln.Addr().String() + "/v1/tunnel", Fingerprint: tlsutil.Fingerprint(cert), Server: s, done: make(chan struct{})}
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
