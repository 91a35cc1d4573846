package control_test

import (
	"context"
	"crypto/tls"
	"github.com/openmmr/mmr/internal/leaktest"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/control"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/tlsutil"
)

const waitLimit = 10 * time.Second

var secret = []byte("client-test-secret-0123456789")

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var (
	certOnce sync.Once
	cert     tls.Certificate
)

func testCert(t *testing.T) tls.Certificate {
	certOnce.Do(func() {
		var err error
		cert, err = tlsutil.SelfSigned()
		require.NoError(t, err)
	})
	return cert
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func pinned(t *testing.T) *tls.Config {
	tc, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(testCert(t)))
	require.NoError(t, err)
	return tc
}

func noLeaks(t *testing.T) { leaktest.Check(t) }

// realServer starts the real router and control server on loopback.
func realServer(t *testing.T) string {
	rt, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Shards: 1, Logger: quiet(), SocketBuffer: 256 << 10})
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	srv, err := control.New(control.Config{
		Addr: "127.0.0.1:0", TLS: tlsutil.ServerConfig(testCert(t)), Secret: secret, Logger: quiet(),
		Endpoints: control.UDPEndpoints(rt.UDPAddrs()),
	}, rt)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { srv.Close() })
	return srv.Addr().String()
}

func mint(t *testing.T, meeting, who string, r token.Role) string {
	return mintClaims(t, token.Claims{Meeting: meeting, Identity: who, Role: r})
}

// mintClaims mints c, valid for an hour.
func mintClaims(t *testing.T, c token.Claims) string {
	c.Expiry = time.Now().Add(time.Hour)
	tok, err := token.Mint(secret, c)
	require.NoError(t, err)
	return tok
}

func TestClientSession(t *testing.T) {
	noLeaks(t)
	addr := realServer(t)
	ctx := ctxT(t)
	var mu sync.Mutex
	var got []string
	bob, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet(), OnEvent: func(m proto.Message) {
		mu.Lock()
		got = append(got, m.Type())
		mu.Unlock()
	}})
	require.NoError(t, err)
	defer bob.Close()
	require.Equal(t, proto.Version, bob.Welcome().Version)
	_, err = bob.MediaToken()
	require.ErrorIs(t, err, ctlclient.ErrNotJoined)
	jb, err := bob.Join(ctx, "m", mint(t, "m", "bob", token.Participant), "Bob")
	require.NoError(t, err)
	require.Len(t, jb.Endpoints, 3, "one UDP endpoint per kind")

	ann, err := ctlclient.Dial(ctx, addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
	require.NoError(t, err)
	ja, err := ann.Join(ctx, "m", mint(t, "m", "ann", token.Host), "")
	require.NoError(t, err)
	require.Equal(t, "Bob", ja.Roster[0].Name)
	require.NoError(t, ann.Publish(ctx, media.Audio, 1, 2))
	require.NoError(t, ann.Unpublish(ctx, media.Audio))
	require.NoError(t, ann.Subscribe(ctx, media.Video, jb.Participant))
	require.NoError(t, ann.Unsubscribe(ctx, media.Video))
	rtt, _, err := ann.Ping(ctx)
	require.NoError(t, err)
	require.Positive(t, rtt)
	require.NoError(t, ann.Leave(ctx))
	require.Error(t, ann.Publish(ctx, media.Audio, 3), "closed after leave")
	require.NoError(t, ann.Close(), "Close after Leave is fine")

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, ",") == "participant-joined,stream-added,stream-removed,participant-left"
	}, waitLimit, time.Millisecond)
	require.NoError(t, bob.Close())
	require.NoError(t, bob.Close(), "idempotent")
}

func TestDialErrors(t *testing.T) {
	noLeaks(t)
	addr := realServer(t)
	_, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{})
	require.Error(t, err, "TLS config required")

	other, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	wrong, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(other))
	require.NoError(t, err)
	_, err = ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: wrong, Logger: quiet()})
	require.ErrorIs(t, err, tlsutil.ErrFingerprint)

	pool := &tls.Config{} // system roots do not know a self-signed certificate
	_, err = ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: pool, Logger: quiet()})
	require.Error(t, err)
}

// scripted is a TLS server that runs script on each connection.
func scripted(t *testing.T, script func(fr *proto.FrameReader, w io.Writer)) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsutil.ServerConfig(testCert(t)))
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitLimit))
				script(proto.NewFrameReader(c, 0), c)
			})
		}
	})
	return ln.Addr().String()
}

func write(w io.Writer, id uint32, m proto.Message) {
	b, _ := proto.Encode(id, m)
	w.Write(b)
}

// TestMisbehavingServer: whatever a server sends, the client returns an
// error and leaks nothing.
func TestMisbehavingServer(t *testing.T) {
	noLeaks(t)
	welcome := &proto.Welcome{Version: 1, MaxFrame: 65536, IdleTimeoutMS: 30000, PingIntervalMS: 10000, GraceMS: 10000}
	tests := []struct {
		name   string
		script func(fr *proto.FrameReader, w io.Writer)
	}{
		{"garbage", func(fr *proto.FrameReader, w io.Writer) { fr.Next(); w.Write([]byte{0, 0, 0, 3, 'x', 'y', 'z'}) }},
		{"oversize", func(fr *proto.FrameReader, w io.Writer) { fr.Next(); w.Write([]byte{0x7f, 0xff, 0xff, 0xff}) }},
		{"silence then close", func(fr *proto.FrameReader, w io.Writer) { fr.Next() }},
		{"wrong answer", func(fr *proto.FrameReader, w io.Writer) { fr.Next(); write(w, 1, &proto.OK{}) }},
		{"unsolicited", func(fr *proto.FrameReader, w io.Writer) { fr.Next(); write(w, 77, welcome) }},
		{"fatal error", func(fr *proto.FrameReader, w io.Writer) {
			fr.Next()
			write(w, 1, &proto.Error{Code: proto.CodeVersion, Fatal: true})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := scripted(t, tc.script)
			c, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
			require.Error(t, err)
			require.Nil(t, c)
		})
	}
	t.Run("join answered wrongly", func(t *testing.T) {
		addr := scripted(t, func(fr *proto.FrameReader, w io.Writer) {
			fr.Next()
			write(w, 1, welcome)
			fr.Next()
			write(w, 2, &proto.Pong{})
		})
		c, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Join(ctxT(t), "m", "t", "")
		require.Error(t, err)
	})
	t.Run("context cancelled", func(t *testing.T) {
		addr := scripted(t, func(fr *proto.FrameReader, w io.Writer) {
			fr.Next()
			write(w, 1, welcome)
			fr.Next() // never answers the join
			fr.Next()
		})
		c, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: pinned(t), Logger: quiet()})
		require.NoError(t, err)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = c.Join(ctx, "m", "t", "")
		require.ErrorIs(t, err, context.Canceled)
	})
}

// TestServerDrops: a drop is reported and requests fail.
func TestServerDrops(t *testing.T) {
	noLeaks(t)
	welcome := &proto.Welcome{Version: 1, MaxFrame: 65536, IdleTimeoutMS: 30000, PingIntervalMS: 10000, GraceMS: 10000}
	addr := scripted(t, func(fr *proto.FrameReader, w io.Writer) {
		fr.Next()
		write(w, 1, welcome)
	})
	events := make(chan ctlclient.ConnEvent, 1)
	c, err := ctlclient.Dial(ctxT(t), addr, ctlclient.Config{TLS: pinned(t), Logger: quiet(),
		OnConnection: func(e ctlclient.ConnEvent) { events <- e }})
	require.NoError(t, err)
	defer c.Close()
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("drop not seen")
	}
	require.Error(t, c.Err())
	require.Error(t, c.Publish(ctxT(t), media.Audio, 1))
	_, err = c.Resume(ctxT(t))
	require.ErrorIs(t, err, ctlclient.ErrNotJoined)
	select {
	case e := <-events:
		require.False(t, e.Up)
		require.Error(t, e.Err)
	case <-time.After(waitLimit):
		t.Fatal("drop not reported")
	}
}
