package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/webclient"
)

// wtMedia is the wt child's media listener: the web client's WebTransport
// server (HTTP/3 on a UDP loopback port, a fresh self-signed certificate),
// whose sessions enter Router.ServeStream through its datagram bridge, as
// in mmr.
type wtMedia struct {
	wt          *webclient.WebTransport
	addr        netip.AddrPort
	fingerprint string
	wg          sync.WaitGroup
	once        sync.Once
	closeErr    error
}

func newWTMedia(r *router.Router, log *slog.Logger) (*wtMedia, error) {
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		return nil, err
	}
	wt, err := webclient.NewWebTransport(webclient.WebTransportConfig{Media: r, TLS: tlsutil.ServerConfig(cert), Logger: log, MaxPerSource: maxStreams + 1})
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp4", localhost0().String())
	if err != nil {
		return nil, errors.Join(err, wt.Close())
	}
	addr, err := netip.ParseAddrPort(pc.LocalAddr().String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: WebTransport address: %w", err), pc.Close(), wt.Close())
	}
	m := &wtMedia{wt: wt, addr: addr, fingerprint: tlsutil.Fingerprint(cert)}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := wt.Serve(pc); err != nil {
			log.Error("bench: WebTransport server", "err", err)
		}
	}()
	return m, nil
}

// closeListener closes every session and the socket. Idempotent.
func (m *wtMedia) closeListener() error {
	m.once.Do(func() { m.closeErr = m.wt.Close() })
	return m.closeErr
}

// wait waits for the server goroutine.
func (m *wtMedia) wait() { m.wg.Wait() }
