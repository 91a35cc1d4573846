package zone

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"github.com/openmmr/mmr/internal/leaktest"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone/proto"
	"github.com/openmmr/mmr/zone/zclient"
)

var (
	testCert   = mustCert()
	testSecret = []byte("zone-secret-for-tests-0123456789")
)

func mustCert() tls.Certificate {
	c, err := tlsutil.SelfSigned()
	if err != nil {
		panic(err)
	}
	return c
}

// noLeaks fails the test when goroutines started during it outlive it. Call
// it first, so its cleanup runs after every other.
func noLeaks(t *testing.T) { leaktest.Check(t) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startZC starts a ZC on 127.0.0.1:0 with test defaults, changed by mod.
func startZC(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		ID: "zc-test", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Certificate: testCert,
		Secrets: [][]byte{testSecret}, ReportInterval: 100 * time.Millisecond, Logger: quietLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func clientTLS(t *testing.T) *tls.Config {
	c, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(testCert))
	require.NoError(t, err)
	c.NextProtos = []string{proto.ALPN}
	return c
}

// peer is a raw protocol peer, for driving the server frame by frame.
type peer struct {
	t  *testing.T
	c  *tls.Conn
	fr *proto.FrameReader
}

func dialPeer(t *testing.T, s *Server) *peer {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr().String(), clientTLS(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return &peer{t: t, c: c, fr: proto.NewFrameReader(c)}
}

func (p *peer) send(m proto.Message) {
	p.t.Helper()
	f, err := proto.AppendMessage(nil, m)
	require.NoError(p.t, err)
	_, err = p.c.Write(f)
	require.NoError(p.t, err)
}

func (p *peer) raw(b []byte) {
	p.t.Helper()
	_, err := p.c.Write(b)
	require.NoError(p.t, err)
}

func (p *peer) recv() (proto.Type, []byte) {
	p.t.Helper()
	typ, body, err := p.fr.Read(proto.MaxFrame)
	require.NoError(p.t, err)
	return typ, bytes.Clone(body)
}

// expectError reads an Error with code, then the end of the connection.
func (p *peer) expectError(code string) {
	p.t.Helper()
	typ, body := p.recv()
	require.Equal(p.t, proto.TypeError, typ, string(body))
	m, err := proto.Decode(typ, body)
	require.NoError(p.t, err)
	require.Equal(p.t, code, m.(*proto.Error).Code)
	p.expectClosed()
}

func (p *peer) expectClosed() {
	p.t.Helper()
	_, _, err := p.fr.Read(proto.MaxFrame)
	require.Error(p.t, err)
	var ne net.Error
	require.False(p.t, errors.As(err, &ne) && ne.Timeout(), "connection still open: %v", err)
}

func (p *peer) proof(secret []byte, id string) []byte {
	exp, err := proto.Exporter(p.c.ConnectionState())
	require.NoError(p.t, err)
	return proto.MMRProof(secret, exp, id)
}

// registerPeer registers id and sends a first report; it returns the peer.
func registerPeer(t *testing.T, s *Server, id string, rep proto.Report) *peer {
	t.Helper()
	p := dialPeer(t, s)
	p.send(&proto.Hello{Version: proto.Version, MMR: id, Proof: p.proof(testSecret, id)})
	typ, body := p.recv()
	w, err := proto.DecodeAs[proto.Welcome](typ, body)
	require.NoError(t, err)
	exp, err := proto.Exporter(p.c.ConnectionState())
	require.NoError(t, err)
	require.True(t, proto.VerifyProof(proto.ZCProof(testSecret, exp, id), w.Proof), "the ZC proves the zone secret")
	require.Equal(t, int(s.cfg.ReportInterval/time.Millisecond), w.IntervalMS)
	p.send(&proto.Register{Endpoints: proto.Endpoints{TLS: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:443")}}, Capacity: proto.Capacity{Meetings: 10}})
	p.report(rep)
	return p
}

func (p *peer) report(rep proto.Report) {
	p.t.Helper()
	p.send(&rep)
	typ, body := p.recv()
	ack, err := proto.DecodeAs[proto.ReportAck](typ, body)
	require.NoError(p.t, err)
	require.Equal(p.t, rep.Seq, ack.Seq)
}

func lookupClient(t *testing.T, s *Server) *zclient.Client {
	c, err := zclient.Dial(context.Background(), s.Addr().String(), clientTLS(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRegisterLookupBye(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil)
	ctx := context.Background()
	c := lookupClient(t, s)

	_, err := c.Lookup(ctx, "m1")
	require.ErrorIs(t, err, &proto.Error{Code: proto.ErrCodeNoCapacity}, "no MMR yet")

	p := registerPeer(t, s, "mmr-a", proto.Report{Seq: 1, Hosted: &[]proto.Hosted{{ID: "m0", Participants: 2}}})
	pl, err := c.Lookup(ctx, "m1") // the connection survived the refusal
	require.NoError(t, err)
	require.Equal(t, "mmr-a", pl.MMR)
	require.Equal(t, "192.0.2.7:443", pl.Endpoints.TLS[0].String())
	require.False(t, pl.Existing)
	pl, err = c.Lookup(ctx, "m0")
	require.NoError(t, err)
	require.True(t, pl.Existing)

	mmrs := s.MMRs()
	require.Len(t, mmrs, 1)
	require.Equal(t, []string{"m0"}, mmrs[0].Hosted)
	require.True(t, mmrs[0].Selectable)

	p.send(&proto.Bye{Reason: "test"})
	p.expectClosed()
	require.Eventually(t, func() bool { return len(s.MMRs()) == 0 }, 2*time.Second, 5*time.Millisecond,
		"bye removes at once, not after expiry")
	st := s.Stats()
	require.EqualValues(t, 1, st.Registrations)
	require.EqualValues(t, 1, st.Reports)
	require.Zero(t, st.Expired)
}

func TestAuthRefused(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil)
	other := []byte("some-other-zone-secret-000000000")
	cases := []struct {
		name  string
		hello func(p *peer) *proto.Hello
		code  string
	}{
		{"wrong secret", func(p *peer) *proto.Hello {
			return &proto.Hello{Version: 1, MMR: "x", Proof: p.proof(other, "x")}
		}, proto.ErrCodeAuth},
		{"proof for another id", func(p *peer) *proto.Hello {
			return &proto.Hello{Version: 1, MMR: "x", Proof: p.proof(testSecret, "y")}
		}, proto.ErrCodeAuth},
		{"replayed from another session", func(p *peer) *proto.Hello {
			q := dialPeer(t, s)
			return &proto.Hello{Version: 1, MMR: "x", Proof: q.proof(testSecret, "x")}
		}, proto.ErrCodeAuth},
		{"zero proof", func(p *peer) *proto.Hello {
			return &proto.Hello{Version: 1, MMR: "x", Proof: make([]byte, proto.ProofSize)}
		}, proto.ErrCodeAuth},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPeer(t, s)
			p.send(tc.hello(p))
			p.expectError(tc.code)
		})
	}
	t.Run("version", func(t *testing.T) {
		p := dialPeer(t, s)
		p.raw(proto.AppendFrame(nil, proto.TypeHello, []byte(`{"v":9,"mmr":"x","proof":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`)))
		p.expectError(proto.ErrCodeVersion)
	})
	require.Empty(t, s.MMRs())
	require.EqualValues(t, len(cases), s.Stats().AuthFailures)
}

func TestGarbageClosesConnection(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.HandshakeTimeout = time.Second })
	tlsCases := []struct {
		name  string
		bytes []byte
		code  string // "" when the ZC just closes
	}{
		{"http inside tls", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), proto.ErrCodeBadRequest},
		{"zero length", []byte{0, 0, 0, 0}, proto.ErrCodeBadRequest},
		{"oversize", []byte{0, 0, 0x10, 1, byte(proto.TypeLookup)}, proto.ErrCodeBadRequest},
		{"unknown type", proto.AppendFrame(nil, 99, []byte("{}")), proto.ErrCodeBadRequest},
		{"report first", proto.AppendFrame(nil, proto.TypeReport, []byte(`{"seq":1}`)), proto.ErrCodeBadRequest},
		{"bad json lookup", proto.AppendFrame(nil, proto.TypeLookup, []byte(`{"meeting":`)), proto.ErrCodeBadRequest},
		{"bad hello", proto.AppendFrame(nil, proto.TypeHello, []byte(`[]`)), proto.ErrCodeBadRequest},
		{"short probe", proto.AppendFrame(nil, proto.TypeProbe, []byte{1, 2}), proto.ErrCodeBadRequest},
		{"truncated frame", []byte{0, 0, 0, 9, byte(proto.TypeLookup)}, ""},
	}
	for _, tc := range tlsCases {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPeer(t, s)
			p.raw(tc.bytes)
			if tc.code == "" {
				p.expectClosed() // after the handshake timeout
				return
			}
			p.expectError(tc.code)
		})
	}
	t.Run("not tls", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		require.NoError(t, err)
		_, err = io.ReadAll(c) // the ZC answers with at most a TLS alert, then closes
		require.NoError(t, err)
	})
	t.Run("wrong alpn", func(t *testing.T) {
		cfg := clientTLS(t)
		cfg.NextProtos = []string{"h2"}
		_, err := tls.Dial("tcp", s.Addr().String(), cfg)
		require.Error(t, err)
	})
	t.Run("garbage report after registration", func(t *testing.T) {
		p := registerPeer(t, s, "mmr-g", proto.Report{Seq: 1})
		p.raw(proto.AppendFrame(nil, proto.TypeReport, []byte(`{"seq":2,"cpu":7}`)))
		p.expectError(proto.ErrCodeBadRequest)
	})
	t.Run("lookup from an mmr", func(t *testing.T) {
		p := registerPeer(t, s, "mmr-h", proto.Report{Seq: 1})
		p.send(&proto.Lookup{Meeting: "m"})
		p.expectError(proto.ErrCodeBadRequest)
	})
	// The server still serves.
	_, err := lookupClient(t, s).Probe(context.Background(), zclient.ProbeOptions{Count: 2, Interval: time.Millisecond})
	require.NoError(t, err)
	st := s.Stats()
	require.GreaterOrEqual(t, st.HandshakeFailures, uint64(2))
	require.GreaterOrEqual(t, st.BadRequests, uint64(len(tlsCases)+1))
}

func TestRateLimits(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.LookupRate, c.ProbeRate, c.RegisterRate, c.ReportRate = 1, 1, 1, 1 })
	t.Run("lookups", func(t *testing.T) {
		p := registerPeer(t, s, "mmr-r", proto.Report{Seq: 1}) // gives lookups an answer
		_ = p
		c := dialPeer(t, s)
		for range 2 { // burst of 2×rate
			c.send(&proto.Lookup{Meeting: "m"})
			typ, _ := c.recv()
			require.Equal(t, proto.TypePlacement, typ)
		}
		c.send(&proto.Lookup{Meeting: "m"})
		c.expectError(proto.ErrCodeRateLimited)
	})
	t.Run("probes", func(t *testing.T) {
		c := dialPeer(t, s)
		for i := range 3 {
			f, err := proto.AppendProbe(nil, proto.TypeProbe, proto.Probe{Seq: uint32(i)})
			require.NoError(t, err)
			c.raw(f)
		}
		typ, _ := c.recv()
		require.Equal(t, proto.TypeProbeEcho, typ)
		typ, _ = c.recv()
		require.Equal(t, proto.TypeProbeEcho, typ)
		c.expectError(proto.ErrCodeRateLimited)
	})
	t.Run("reports", func(t *testing.T) {
		// RegisterRate 1 with burst 2: the lookups subtest used one token,
		// this registration takes the second.
		p := registerPeer(t, s, "mmr-s", proto.Report{Seq: 1})
		p.report(proto.Report{Seq: 2})
		p.send(&proto.Report{Seq: 3})
		p.expectError(proto.ErrCodeRateLimited)
	})
	t.Run("registrations", func(t *testing.T) {
		p := dialPeer(t, s)
		p.send(&proto.Hello{Version: 1, MMR: "mmr-t", Proof: p.proof(testSecret, "mmr-t")})
		p.expectError(proto.ErrCodeRateLimited)
	})
	require.EqualValues(t, 4, s.Stats().RateLimited)
}

func TestConnectionLimits(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	dialPeer(t, s).send(&proto.Lookup{Meeting: "a"})
	dialPeer(t, s).send(&proto.Lookup{Meeting: "b"})
	require.Eventually(t, func() bool { return s.Stats().Accepted == 2 }, 2*time.Second, 5*time.Millisecond)
	_, err := tls.Dial("tcp", s.Addr().String(), clientTLS(t))
	require.Error(t, err, "third connection from one address is closed before the handshake")
	require.EqualValues(t, 1, s.Stats().Refused)
}

func TestHungMMRExpires(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil) // interval 100 ms: out after 300 ms of silence
	p := registerPeer(t, s, "hung", proto.Report{Seq: 1, Hosted: &[]proto.Hosted{{ID: "m"}}})
	lastReport := time.Now()
	c := lookupClient(t, s)
	pl, err := c.Lookup(context.Background(), "m")
	require.NoError(t, err)
	require.Equal(t, "hung", pl.MMR)
	// Stop reporting but keep the connection open.
	require.Eventually(t, func() bool {
		_, err := s.Lookup("m") // in process: the network path is rate limited
		return errors.Is(err, ErrNoCapacity)
	}, 2*time.Second, 5*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(lastReport), 300*time.Millisecond-10*time.Millisecond, "not before three intervals")
	// The sweeper closes the hung peer's connection, or, when it runs late
	// on a loaded machine, the connection's own read deadline (four
	// intervals) does first; either way the sweeper then counts the expiry.
	p.expectClosed()
	require.Eventually(t, func() bool { return s.Stats().Expired == 1 }, 5*time.Second, 5*time.Millisecond)
}

func TestLostConnectionExpiresAfterOneInterval(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.ReportInterval = time.Second })
	p := registerPeer(t, s, "crashed", proto.Report{Seq: 1})
	p.c.NetConn().Close() // no Bye: like a killed process
	require.Eventually(t, func() bool { return len(s.MMRs()) == 1 && !s.MMRs()[0].Connected }, 2*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(s.MMRs()) == 0 }, 3*time.Second, 10*time.Millisecond)
}

func TestReRegistrationReplacesSession(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil)
	old := registerPeer(t, s, "same", proto.Report{Seq: 1})
	registerPeer(t, s, "same", proto.Report{Seq: 1})
	old.expectClosed()
	require.Len(t, s.MMRs(), 1)
	require.True(t, s.MMRs()[0].Connected)
}

func TestProbe(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil)
	res, err := lookupClient(t, s).Probe(context.Background(), zclient.ProbeOptions{Count: 5, Interval: 2 * time.Millisecond, Pad: proto.MaxProbePad})
	require.NoError(t, err)
	require.Len(t, res.RTTs, 5)
	require.Positive(t, res.Min)
	require.LessOrEqual(t, res.Min, res.Median)
	require.LessOrEqual(t, res.Median, res.Max)
	require.EqualValues(t, 5, s.Stats().Probes)
}

func TestHandleConnSharedListener(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.DisableListen = true })
	require.False(t, s.Addr().IsValid())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.HandleConn(c)
		}
	}()
	c, err := zclient.Dial(context.Background(), ln.Addr().String(), clientTLS(t))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Probe(context.Background(), zclient.ProbeOptions{Count: 1})
	require.NoError(t, err)
}

func TestCloseIdempotent(t *testing.T) {
	noLeaks(t)
	s := startZC(t, nil)
	registerPeer(t, s, "a", proto.Report{Seq: 1})
	p := dialPeer(t, s)
	p.send(&proto.Lookup{Meeting: "m"})
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.Lookup("m")
	require.ErrorIs(t, err, ErrClosed)
	_, err = net.Dial("tcp", s.Addr().String())
	require.Error(t, err)
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
	}{
		{"no certificate", func(c *Config) { c.Certificate = tls.Certificate{} }},
		{"no secret", func(c *Config) { c.Secrets = nil }},
		{"short secret", func(c *Config) { c.Secrets = [][]byte{[]byte("short")} }},
		{"negative", func(c *Config) { c.MaxConns = -1 }},
		{"interval", func(c *Config) { c.ReportInterval = 2 * time.Minute }},
		{"bad id", func(c *Config) { c.ID = string(make([]byte, 200)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Certificate: testCert, Secrets: [][]byte{testSecret}, DisableListen: true}
			tc.mod(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
		})
	}
	t.Run("listen error names the address", func(t *testing.T) {
		s := startZC(t, nil)
		_, err := New(Config{Listen: s.Addr(), Certificate: testCert, Secrets: [][]byte{testSecret}})
		require.ErrorContains(t, err, s.Addr().String())
	})
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/sub/zone.secret"
	s1, created, err := LoadOrCreateSecret(path)
	require.NoError(t, err)
	require.True(t, created)
	require.Len(t, s1, 64)
	s2, created, err := LoadOrCreateSecret(path)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, s1, s2)
	short := dir + "/short"
	require.NoError(t, writeFile(short, " abc \n"))
	_, err = ReadSecretFile(short)
	require.ErrorIs(t, err, proto.ErrSecretShort)
	_, _, err = LoadOrCreateSecret(short)
	require.Error(t, err, "an existing bad file is not replaced")
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// A connection handed over after a TLS 1.2 handshake (a shared port whose
// listener allows 1.2 for other services) is refused: the ZC is TLS 1.3
// only, and the MMR proofs need the TLS 1.3 exporter.
func TestHandleConnRefusesTLS12(t *testing.T) {
	noLeaks(t)
	s := startZC(t, func(c *Config) { c.DisableListen = true })
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testCert}, MinVersion: tls.VersionTLS12, NextProtos: []string{proto.ALPN}})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if err := c.(*tls.Conn).Handshake(); err != nil {
				c.Close()
				continue
			}
			s.HandleConn(c)
		}
	}()
	for _, tc := range []struct {
		max uint16
		ok  bool
	}{{tls.VersionTLS12, false}, {tls.VersionTLS13, true}} {
		ct := clientTLS(t)
		ct.MaxVersion = tc.max
		conn, err := tls.Dial("tcp", ln.Addr().String(), ct)
		require.NoError(t, err)
		frame, err := proto.AppendProbe(nil, proto.TypeProbe, proto.Probe{Seq: 1})
		require.NoError(t, err)
		_, err = conn.Write(frame)
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		typ, _, err := proto.NewFrameReader(conn).Read(proto.MaxSmallFrame)
		if tc.ok {
			require.NoError(t, err)
			require.Equal(t, proto.TypeProbeEcho, typ)
		} else {
			require.Error(t, err, "TLS 1.2 must be refused")
		}
		conn.Close()
	}
	require.NoError(t, connWait(func() bool { return s.Stats().HandshakeFailures >= 1 }))
}

func connWait(cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
