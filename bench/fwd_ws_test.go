package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/webclient"
)

// wsMedia is the ws child's media listener: HTTPS (HTTP/1.1) on 127.0.0.1
// with a fresh self-signed certificate serving the web client's
// WebSocket endpoints (webclient.Handler), whose media WebSockets enter
// Router.ServeStream through the bridge, as in mmr.
type wsMedia struct {
	ln          net.Listener
	srv         *http.Server
	wc          *webclient.Handler
	addr        netip.AddrPort
	fingerprint string
	wg          sync.WaitGroup
	once        sync.Once
	closeErr    error
}

// noControl refuses control connections: the bench has no control server.
type noControl struct{}

func (noControl) HandleConn(c net.Conn) { c.Close() }

func newWSMedia(r *router.Router, log *slog.Logger) (*wsMedia, error) {
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		return nil, err
	}
	wc, err := webclient.New(webclient.Config{Control: noControl{}, Media: r, Logger: log, MaxPerSource: maxStreams + 1})
	if err != nil {
		return nil, err
	}
	conf := tlsutil.ServerConfig(cert)
	conf.NextProtos = []string{"http/1.1"}
	ln, err := tls.Listen("tcp4", localhost0().String(), conf)
	if err != nil {
		return nil, errors.Join(err, wc.Close())
	}
	addr, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: WebSocket listener address: %w", err), ln.Close(), wc.Close())
	}
	m := &wsMedia{ln: ln, wc: wc, addr: addr, fingerprint: tlsutil.Fingerprint(cert), srv: &http.Server{Handler: wc}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("bench: WebSocket server", "err", err)
		}
	}()
	return m, nil
}

// closeListener stops accepting and closes every WebSocket. Idempotent.
func (m *wsMedia) closeListener() error {
	m.once.Do(func() { m.closeErr = errors.Join(m.srv.Close(), m.wc.Close()) })
	return m.closeErr
}

// wait waits for the server goroutine.
func (m *wsMedia) wait() { m.wg.Wait() }
