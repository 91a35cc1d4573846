package zcagent

import (
	"context"
	"crypto/tls"
	"github.com/openmmr/mmr/internal/leaktest"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
)

var testSecret = []byte("zone-secret-for-tests-0123456789")

func noLeaks(t *testing.T) { leaktest.Check(t) }

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testCert(t *testing.T) tls.Certificate {
	c, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	return c
}

func startZC(t *testing.T, listen netip.AddrPort, interval time.Duration) *zone.Server {
	t.Helper()
	s, err := zone.New(zone.Config{
		ID: "zc", Listen: listen, Certificate: testCert(t), Secrets: [][]byte{testSecret},
		ReportInterval: interval, Logger: quiet(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

var loopback0 = netip.MustParseAddrPort("127.0.0.1:0")

// fakeLoad is a LoadSource the test drives. Safe for concurrent use.
type fakeLoad struct {
	mu sync.Mutex
	l  Load
}

func (f *fakeLoad) Load() Load {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.l
	l.Hosted = slices.Clone(f.l.Hosted) // keeps nil (not tracked) apart from empty
	return l
}

func (f *fakeLoad) set(fn func(*Load)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.l)
}

func agentConfig(zcs ...string) Config {
	return Config{
		ID: "mmr-1", ZCs: zcs, Secret: testSecret,
		Endpoints:  proto.Endpoints{UDP: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:8801")}},
		Capacity:   proto.Capacity{Meetings: 10},
		Interval:   50 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		CPU:    func() float64 { return 0.1 },
		Logger: quiet(),
	}
}

func startAgent(t *testing.T, cfg Config, src LoadSource) *Agent {
	t.Helper()
	a, err := New(cfg, src)
	require.NoError(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

func mmrOn(s *zone.Server, id string) (zone.MMRStatus, bool) {
	for _, m := range s.MMRs() {
		if m.ID == id {
			return m, true
		}
	}
	return zone.MMRStatus{}, false
}

func TestRegistersWithEveryZC(t *testing.T) {
	noLeaks(t)
	zc1, zc2 := startZC(t, loopback0, 50*time.Millisecond), startZC(t, loopback0, 50*time.Millisecond)
	src := &fakeLoad{l: Load{Participants: 3, Meetings: 1, Hosted: []Meeting{{ID: "m1", Participants: 3}}}}
	a := startAgent(t, agentConfig(zc1.Addr().String(), zc2.Addr().String()), src)

	// Traffic grows by 1000 packets of 100 bytes per interval.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				src.set(func(l *Load) {
					l.Traffic.PacketsIn += 100
					l.Traffic.BytesIn += 100 * 100
				})
			}
		}
	}()
	for _, zc := range []*zone.Server{zc1, zc2} {
		require.Eventually(t, func() bool {
			m, ok := mmrOn(zc, "mmr-1")
			return ok && m.Report.PacketsIn > 0
		}, 5*time.Second, 10*time.Millisecond)
		m, _ := mmrOn(zc, "mmr-1")
		require.InDelta(t, 800*m.Report.PacketsIn, m.Report.BitsIn, 800, "100-byte packets: 800 bits each")
		require.Equal(t, []string{"m1"}, m.Hosted)
		require.Equal(t, 3, m.Report.Participants)
		require.InDelta(t, 0.1, m.Report.CPU, 1e-9)
		require.Equal(t, DefaultCPUCap, m.Capacity.CPU)
		pl, err := zc.Lookup("m1")
		require.NoError(t, err)
		require.True(t, pl.Existing)
	}
	for _, st := range a.Status() {
		require.True(t, st.Connected)
		require.Equal(t, "zc", st.ZC)
	}

	// A meeting starts: Update reports it without waiting for the interval.
	src.set(func(l *Load) { l.Hosted = append(l.Hosted, Meeting{ID: "m2", Participants: 1}) })
	a.Update()
	require.Eventually(t, func() bool {
		m, _ := mmrOn(zc2, "mmr-1")
		return len(m.Hosted) == 2
	}, 5*time.Second, 5*time.Millisecond)

	// Close says bye: both ZCs drop the MMR without counting an expiry.
	require.NoError(t, a.Close())
	require.NoError(t, a.Close())
	for _, zc := range []*zone.Server{zc1, zc2} {
		require.Eventually(t, func() bool { _, ok := mmrOn(zc, "mmr-1"); return !ok }, 5*time.Second, 5*time.Millisecond)
		require.Zero(t, zc.Stats().Expired)
	}
}

func TestWrongSecretIsRefused(t *testing.T) {
	noLeaks(t)
	zc := startZC(t, loopback0, 50*time.Millisecond)
	cfg := agentConfig(zc.Addr().String())
	cfg.Secret = []byte("not-the-zone-secret-00000000000")
	a := startAgent(t, cfg, &fakeLoad{})
	require.Eventually(t, func() bool { return zc.Stats().AuthFailures >= 2 }, 5*time.Second, 10*time.Millisecond)
	require.Empty(t, zc.MMRs())
	st := a.Status()[0]
	require.False(t, st.Connected)
	require.Contains(t, st.LastError, "zone secret")
}

// fakeZC accepts TLS connections and misbehaves as told.
type fakeZC struct {
	ln        net.Listener
	badProof  bool // Welcome with a proof made without the secret
	noAck     bool // accept reports, never ack
	registers atomic.Int32
	conns     atomic.Int32
	wg        sync.WaitGroup
}

func startFakeZC(t *testing.T, f *fakeZC) *fakeZC {
	cfg := tlsutil.ServerConfig(testCert(t))
	cfg.NextProtos = []string{proto.ALPN}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	f.ln = ln
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(c.(*tls.Conn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeZC) serve(c *tls.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if c.Handshake() != nil {
		return
	}
	fr := proto.NewFrameReader(c)
	typ, body, err := fr.Read(proto.MaxSmallFrame)
	if err != nil {
		return
	}
	h, err := proto.DecodeAs[proto.Hello](typ, body)
	if err != nil {
		return
	}
	exp, _ := proto.Exporter(c.ConnectionState())
	secret := testSecret
	if f.badProof {
		secret = []byte("guessing-the-secret-00000000000")
	}
	w, _ := proto.AppendMessage(nil, &proto.Welcome{Version: 1, ZC: "fake", Proof: proto.ZCProof(secret, exp, h.MMR), IntervalMS: 50})
	c.Write(w)
	for {
		typ, _, err := fr.Read(proto.MaxFrame)
		if err != nil {
			return
		}
		if typ == proto.TypeRegister {
			f.registers.Add(1)
		}
		if typ == proto.TypeReport && !f.noAck {
			ack, _ := proto.AppendMessage(nil, &proto.ReportAck{Seq: 1})
			c.Write(ack)
		}
	}
}

func TestAgentChecksTheZC(t *testing.T) {
	noLeaks(t)
	t.Run("zc without the secret", func(t *testing.T) {
		f := startFakeZC(t, &fakeZC{badProof: true})
		a := startAgent(t, agentConfig(f.ln.Addr().String()), &fakeLoad{})
		require.Eventually(t, func() bool { return f.conns.Load() >= 2 }, 5*time.Second, 10*time.Millisecond)
		require.Zero(t, f.registers.Load(), "nothing is announced to a ZC that did not prove the secret")
		require.Contains(t, a.Status()[0].LastError, "did not prove the zone secret")
	})
	t.Run("zc that stops acking", func(t *testing.T) {
		f := startFakeZC(t, &fakeZC{noAck: true})
		a := startAgent(t, agentConfig(f.ln.Addr().String()), &fakeLoad{})
		require.Eventually(t, func() bool { return f.conns.Load() >= 2 }, 5*time.Second, 10*time.Millisecond,
			"a ZC that acks nothing for three intervals is abandoned and dialled again")
		require.Eventually(t, func() bool { return strings.Contains(a.Status()[0].LastError, "ack") }, 5*time.Second, 10*time.Millisecond)
	})
}

func TestReconnectsWhenZCReturns(t *testing.T) {
	noLeaks(t)
	// Reserve a port, free it: nothing listens there at first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()

	src := &fakeLoad{l: Load{Meetings: 1, Hosted: []Meeting{{ID: "m", Participants: 2}}}}
	a := startAgent(t, agentConfig(addr.String()), src)
	require.Eventually(t, func() bool { return a.Status()[0].Failures >= 2 }, 5*time.Second, 5*time.Millisecond)
	// The MMR keeps working meanwhile: Update and Drain never block.
	a.Update()

	zc := startZC(t, addr, 50*time.Millisecond)
	require.Eventually(t, func() bool { _, ok := mmrOn(zc, "mmr-1"); return ok }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return a.Status()[0].Connected }, 5*time.Second, 5*time.Millisecond)
	m, _ := mmrOn(zc, "mmr-1")
	require.Equal(t, []string{"m"}, m.Hosted, "the first report of a connection carries the meeting list")

	// The ZC restarts: the agent comes back to the new one.
	zc.Close()
	require.Eventually(t, func() bool { return !a.Status()[0].Connected }, 5*time.Second, 5*time.Millisecond)
	zc2 := startZC(t, addr, 50*time.Millisecond)
	require.Eventually(t, func() bool { m, ok := mmrOn(zc2, "mmr-1"); return ok && len(m.Hosted) == 1 }, 5*time.Second, 10*time.Millisecond)
}

func TestDrain(t *testing.T) {
	noLeaks(t)
	zc := startZC(t, loopback0, time.Second) // long interval: Drain must not wait for it
	src := &fakeLoad{l: Load{Meetings: 1, Hosted: []Meeting{{ID: "old"}}}}
	cfg := agentConfig(zc.Addr().String())
	cfg.Interval = time.Second
	a := startAgent(t, cfg, src)
	require.Eventually(t, func() bool { m, ok := mmrOn(zc, "mmr-1"); return ok && m.Selectable }, 5*time.Second, 5*time.Millisecond)
	a.Drain()
	a.Drain()
	require.True(t, a.Draining())
	require.Eventually(t, func() bool { m, _ := mmrOn(zc, "mmr-1"); return m.Report.Draining }, 900*time.Millisecond, 5*time.Millisecond,
		"the draining report is sent at once, not at the next interval")
	_, err := zc.Lookup("new")
	require.ErrorIs(t, err, zone.ErrNoCapacity)
	pl, err := zc.Lookup("old")
	require.NoError(t, err)
	require.Equal(t, "mmr-1", pl.MMR, "existing meetings stay on a draining MMR")
}

func TestWaitDrained(t *testing.T) {
	noLeaks(t)
	cases := []struct {
		name     string
		meetings int
		endAfter time.Duration // 0: never ends
		deadline time.Duration
		cancel   bool
		want     error
	}{
		{"already empty", 0, 0, time.Second, false, nil},
		{"last meeting ends", 2, 100 * time.Millisecond, 10 * time.Second, false, nil},
		{"deadline", 1, 0, 300 * time.Millisecond, false, ErrDrainDeadline},
		{"cancelled", 1, 0, 10 * time.Second, true, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeLoad{l: Load{Meetings: tc.meetings}}
			if tc.endAfter > 0 {
				time.AfterFunc(tc.endAfter, func() { src.set(func(l *Load) { l.Meetings = 0 }) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			err := WaitDrained(ctx, src, time.Now().Add(tc.deadline))
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestCloseWhileUnreachable(t *testing.T) {
	noLeaks(t)
	// A black hole: accepts TCP, never answers TLS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	cfg := agentConfig(ln.Addr().String(), "127.0.0.1:1")
	cfg.HandshakeTimeout = time.Minute
	a, err := New(cfg, &fakeLoad{})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // let the dial reach the black hole
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on an unresponsive ZC")
	}
}

func TestSampler(t *testing.T) {
	src := &fakeLoad{}
	cpu := 0.0
	s := sampler{src: src, cpuFn: func() float64 { return cpu }}
	now := time.Unix(1000, 0)
	s.sample(now, true, false)

	src.set(func(l *Load) {
		l.Traffic = stats.Counters{PacketsIn: 500, BytesIn: 50000, PacketsOut: 2000, BytesOut: 400000}
		l.Participants, l.Meetings = 7, -1
		l.NotAccepting = true
	})
	cpu = 0.42
	snap := s.sample(now.Add(500*time.Millisecond), true, true)
	require.Equal(t, proto.Report{Participants: 7, Meetings: 0, PacketsIn: 1000, PacketsOut: 4000, BitsIn: 800000, BitsOut: 6400000, CPU: 0.42, Draining: true, NotAccepting: true}, snap.rep)
	src.set(func(l *Load) { l.NotAccepting = false })
	require.Nil(t, snap.hosted, "a source that does not track meetings sends no list")

	// An Update between ticks keeps the rates; a counter reset gives 0, not a wrap.
	src.set(func(l *Load) { l.Traffic = stats.Counters{} })
	cpu = 7 // out of range: clamped
	require.Equal(t, uint64(1000), s.sample(now.Add(600*time.Millisecond), false, false).rep.PacketsIn)
	snap = s.sample(now.Add(1500*time.Millisecond), true, false)
	require.Zero(t, snap.rep.PacketsIn)
	require.Equal(t, 1.0, snap.rep.CPU)

	// Hosted lists are cleaned and versioned.
	src.set(func(l *Load) {
		l.Hosted = []Meeting{{ID: "a", Participants: 2}, {ID: ""}, {ID: "a"}, {ID: "b", Participants: -3}, {ID: strings.Repeat("x", 200)}}
	})
	s1 := s.sample(now.Add(1600*time.Millisecond), false, false)
	require.Equal(t, []proto.Hosted{{ID: "a", Participants: 2}, {ID: "b"}}, s1.hosted)
	s2 := s.sample(now.Add(1700*time.Millisecond), false, false)
	require.Equal(t, s1.version, s2.version, "unchanged list keeps its version")
	src.set(func(l *Load) { l.Hosted = []Meeting{} })
	s3 := s.sample(now.Add(1800*time.Millisecond), false, false)
	require.NotEqual(t, s1.version, s3.version)
	require.Empty(t, s3.hosted)
	require.NotNil(t, s3.hosted)
}

func TestProcessCPU(t *testing.T) {
	var m cpuMeter
	start := time.Now()
	require.Zero(t, m.sample(start))
	for time.Since(start) < 50*time.Millisecond { // burn some CPU
	}
	f := m.sample(time.Now())
	if runtime.GOOS == "windows" {
		t.Skip("no process CPU time here")
	}
	require.Greater(t, f, 0.0)
	require.LessOrEqual(t, f, 1.0)
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
	}{
		{"no zcs", func(c *Config) { c.ZCs = nil }},
		{"bad zc address", func(c *Config) { c.ZCs = []string{"nohostport"} }},
		{"duplicate zc", func(c *Config) { c.ZCs = []string{"a:1", "a:1"} }},
		{"short secret", func(c *Config) { c.Secret = []byte("x") }},
		{"no endpoints", func(c *Config) { c.Endpoints = proto.Endpoints{} }},
		{"bad capacity", func(c *Config) { c.Capacity.CPU = 2 }},
		{"bad fingerprint", func(c *Config) { c.Fingerprint = "zz" }},
		{"interval", func(c *Config) { c.Interval = time.Millisecond }},
		{"backoff", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }},
		{"bad id", func(c *Config) { c.ID = strings.Repeat("i", 300) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := agentConfig("127.0.0.1:1")
			tc.mod(&cfg)
			_, err := New(cfg, &fakeLoad{})
			require.Error(t, err)
		})
	}
}
