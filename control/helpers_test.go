package control

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/openmmr/mmr/internal/leaktest"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/stretchr/testify/require"
)

// waitLimit bounds every wait for something the test expects to happen; it
// is a hang guard, never a measurement.
const waitLimit = 10 * time.Second

var testSecret = []byte("unit-test-secret-0123456789")

// env is a control server on loopback with what a client needs to reach it.
type env struct {
	srv *Server
	fp  string // certificate fingerprint
	cfg Config
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// cert is generated once: key generation is the slow part of a server.
var (
	certOnce sync.Once
	certVal  tls.Certificate
	certErr  error
)

func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() { certVal, certErr = tlsutil.SelfSigned() })
	require.NoError(t, certErr)
	return certVal
}

// startServer starts a server on 127.0.0.1:0 driving rt; mod adjusts the
// config. The server is closed at cleanup.
func startServer(t testing.TB, rt Router, mod func(*Config)) *env {
	t.Helper()
	cert := testCert(t)
	cfg := Config{
		Addr:          "127.0.0.1:0",
		TLS:           tlsutil.ServerConfig(cert),
		Secret:        testSecret,
		Logger:        quietLogger(),
		MaxConnsPerIP: 10_000,
		MaxConns:      10_000,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, rt)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return &env{srv: srv, fp: tlsutil.Fingerprint(cert), cfg: cfg}
}

func (e *env) addr() string { return e.srv.Addr().String() }

func (e *env) clientTLS(t testing.TB) *tls.Config {
	tc, err := tlsutil.PinnedClientConfig(e.fp)
	require.NoError(t, err)
	return tc
}

func mint(t testing.TB, meeting, identity string, role token.Role) string {
	return mintWith(t, testSecret, meeting, identity, role, time.Now().Add(time.Hour))
}

func mintWith(t testing.TB, secret []byte, meeting, identity string, role token.Role, exp time.Time) string {
	tok, err := token.Mint(secret, token.Claims{Meeting: meeting, Identity: identity, Role: role, Expiry: exp})
	require.NoError(t, err)
	return tok
}

// events records what a client's OnEvent receives.
type events struct {
	mu   sync.Mutex
	msgs []proto.Message
	ch   chan struct{} // signalled on every new message
}

func newEvents() *events { return &events{ch: make(chan struct{}, 1)} }

func (e *events) add(m proto.Message) {
	e.mu.Lock()
	e.msgs = append(e.msgs, m)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

func (e *events) all() []proto.Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]proto.Message(nil), e.msgs...)
}

// waitFor waits until some recorded message satisfies pred and returns it.
func (e *events) waitFor(t testing.TB, what string, pred func(proto.Message) bool) proto.Message {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		for _, m := range e.all() {
			if pred(m) {
				return m
			}
		}
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("no %s among events %v", what, typesOf(e.all()))
		}
	}
}

func typesOf(ms []proto.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type())
	}
	return out
}

// member is a joined Go client with its recorded events.
type member struct {
	c      *ctlclient.Client
	j      *proto.Joined
	ev     *events
	connEv chan ctlclient.ConnEvent
}

func (m *member) id() uint64 { return m.j.Participant }

type joinOpts struct {
	autoResume bool
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
}

// join dials and joins meeting as identity with role; the client is closed
// at cleanup.
func (e *env) join(t testing.TB, meeting, identity string, role token.Role, o ...joinOpts) *member {
	t.Helper()
	var opt joinOpts
	if len(o) > 0 {
		opt = o[0]
	}
	m := &member{ev: newEvents(), connEv: make(chan ctlclient.ConnEvent, 16)}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := ctlclient.Dial(ctx, e.addr(), ctlclient.Config{
		TLS: e.clientTLS(t), OnEvent: m.ev.add, AutoResume: opt.autoResume, Dial: opt.dial,
		Logger:       quietLogger(),
		OnConnection: func(ev ctlclient.ConnEvent) { m.connEv <- ev },
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	m.c = c
	m.j, err = c.Join(ctx, meeting, mint(t, meeting, identity, role), identity)
	require.NoError(t, err)
	return m
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// rawConn speaks frames over TLS without the Go client, to send what a
// well-behaved client never would.
type rawConn struct {
	t  testing.TB
	tc *tls.Conn
	fr *proto.FrameReader
}

func (e *env) raw(t testing.TB) *rawConn {
	t.Helper()
	d := tls.Dialer{Config: e.clientTLS(t)}
	nc, err := d.DialContext(ctxT(t), "tcp", e.addr())
	require.NoError(t, err)
	tc := nc.(*tls.Conn)
	t.Cleanup(func() { tc.Close() })
	require.NoError(t, tc.SetDeadline(time.Now().Add(waitLimit)))
	return &rawConn{t: t, tc: tc, fr: proto.NewFrameReader(tc, proto.ClientMaxFrame)}
}

func (r *rawConn) writeRaw(b []byte) {
	_, err := r.tc.Write(b)
	require.NoError(r.t, err)
}

func (r *rawConn) payload(p string) {
	b, err := proto.AppendFrame(nil, []byte(p))
	require.NoError(r.t, err)
	r.writeRaw(b)
}

func (r *rawConn) send(id uint32, m proto.Message) {
	b, err := proto.Encode(id, m)
	require.NoError(r.t, err)
	r.writeRaw(b)
}

// next reads the next message, skipping server pings and the media-key
// events of Standard meetings (re-keys after the joins and leaves of the
// other test clients).
func (r *rawConn) next() (uint32, proto.Message) {
	r.t.Helper()
	for {
		p, err := r.fr.Next()
		require.NoError(r.t, err)
		id, m, err := proto.Decode(p)
		require.NoError(r.t, err)
		switch m.(type) {
		case *proto.Ping, *proto.MediaKey:
			continue
		}
		return id, m
	}
}

func (r *rawConn) hello() {
	r.send(1, &proto.Hello{Versions: []int{proto.Version}})
	_, m := r.next()
	require.IsType(r.t, &proto.Welcome{}, m)
}

// expectFatal reads an error with the given code and then the end of the
// connection.
func (r *rawConn) expectFatal(code string) {
	r.t.Helper()
	_, m := r.next()
	e, ok := m.(*proto.Error)
	require.True(r.t, ok, "want error %s, got %#v", code, m)
	require.Equal(r.t, code, e.Code, e.Message)
	require.True(r.t, e.Fatal)
	r.expectClosed()
}

// expectClosed reads until the server closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	for {
		_, err := r.fr.Next()
		if err == nil {
			continue
		}
		var ne net.Error
		require.False(r.t, errors.As(err, &ne) && ne.Timeout(), "server did not close the connection")
		return
	}
}

// noLeaks fails the test if goroutines started during it are still running
// at cleanup (registered first, so it runs after every other cleanup).
func noLeaks(t testing.TB) { leaktest.Check(t) }

// openFDs counts the process's open file descriptors, or -1 where
// /proc/self/fd does not exist.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// tlsDial connects and completes a TLS handshake.
func tlsDial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctxT(t), "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	return nc.(*tls.Conn), nil
}
