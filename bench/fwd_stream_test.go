package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
)

// errALPN refuses a TLS connection that did not negotiate the media ALPN.
var errALPN = errors.New("bench: TLS media connection without ALPN " + streammedia.ALPN)

// tlsMedia is the tls child's media listener: TLS on 127.0.0.1 with a
// fresh self-signed certificate, offering the ALPN protocol
// streammedia.ALPN ("openmmr-media/1") and requiring it, each accepted
// connection handed to Router.ServeStream (which runs the handshake on its
// first read, under the router's bind timeout). It stands in for the MMR's
// shared TLS 443 listener, which routes connections by ALPN. Close the
// listener, then the router (which ends the streams it serves), then wait.
type tlsMedia struct {
	ln          net.Listener
	addr        netip.AddrPort
	fingerprint string
	wg          sync.WaitGroup // the accept loop and every ServeStream
	once        sync.Once
	closeErr    error
}

func newTLSMedia(r *router.Router, log *slog.Logger) (*tlsMedia, error) {
	cert, err := tlsutil.SelfSigned()
	if err != nil {
		return nil, err
	}
	conf := tlsutil.ServerConfig(cert)
	conf.NextProtos = []string{streammedia.ALPN}
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.NegotiatedProtocol != streammedia.ALPN {
			return errALPN
		}
		return nil
	}
	ln, err := tls.Listen("tcp4", localhost0().String(), conf)
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("bench: TLS listener address: %w", err), ln.Close())
	}
	m := &tlsMedia{ln: ln, addr: addr, fingerprint: tlsutil.Fingerprint(cert)}
	m.wg.Add(1)
	go m.accept(r, log)
	return m, nil
}

// accept serves connections until the listener closes.
func (m *tlsMedia) accept(r *router.Router, log *slog.Logger) {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Error("bench: TLS media accept", "err", err)
			}
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			// The stream's end (router closed, peer gone) is its normal
			// end here; a bad handshake is the client's failure to report.
			_ = r.ServeStream(c)
		}()
	}
}

// closeListener stops accepting. Idempotent.
func (m *tlsMedia) closeListener() error {
	m.once.Do(func() { m.closeErr = m.ln.Close() })
	return m.closeErr
}

// wait waits for the accept loop and every stream it started; call it
// after closing the listener and the router.
func (m *tlsMedia) wait() { m.wg.Wait() }
