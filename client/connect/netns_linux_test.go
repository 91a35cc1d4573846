package connect_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
)

// The network tests build a lab per test: a network namespace holding the
// zone (ZC, control, media on 8801 and 443) and the web tier, joined to
// the test's own namespace by a veth pair, with nftables rules inside the
// lab's namespace. The clients run in the test process. Names and the
// 10.x.y.0/24 subnet are random, so parallel runs do not collide; the
// namespace (and with it the veth pair and the rules) is deleted even when
// the test fails.

// helperEnv carries the lab's parameters to the server process.
const helperEnv = "CONNECT_NETNS_HELPER"

type helperParams struct {
	ZoneIP, WebIP string
	Secret        string           // hex
	Tunnels       []connect.Tunnel // the web tier's tunnel list; none: the helper starts one on WebIP:8443
}

type helperInfo struct {
	WebURL, WebFingerprint string
	Zone                   string
	ZoneTLS                string
}

// TestNetnsHelper is not a test: it is the server process of a lab, run by
// the network tests inside the lab's namespace.
func TestNetnsHelper(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("the network tests' server process (runs only when they start it)")
	}
	var p helperParams
	require.NoError(t, json.Unmarshal([]byte(raw), &p))
	secret, err := hex.DecodeString(p.Secret)
	require.NoError(t, err)
	z, err := connecttest.StartZone(connecttest.ZoneConfig{Name: "lab", IP: netip.MustParseAddr(p.ZoneIP), MediaPort: 8801, TLSPort: 443, JoinSecret: secret})
	require.NoError(t, err)
	defer z.Close()
	tunnels := p.Tunnels
	if len(tunnels) == 0 {
		tn, err := connecttest.StartTunnel(netip.MustParseAddr(p.WebIP), 8443, secret, []string{z.TLSAddr.String()})
		require.NoError(t, err)
		defer tn.Close()
		tunnels = []connect.Tunnel{{URL: tn.URL, Fingerprint: tn.Fingerprint}}
	}
	w, err := connecttest.StartWeb(connecttest.WebConfig{IP: netip.MustParseAddr(p.WebIP), Port: 443, JoinSecret: secret,
		Meetings: map[string]string{meetingID: "4242"}, Zones: []connect.LookupZone{z.LookupZone()},
		Tunnels: tunnels})
	require.NoError(t, err)
	defer w.Close()
	b, _ := json.Marshal(helperInfo{WebURL: w.URL, WebFingerprint: w.Fingerprint, Zone: z.Name, ZoneTLS: z.TLSAddr.String()})
	fmt.Printf("HELPER-INFO %s\n", b)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes our stdin
}

// requireRoot skips (or, in CI, fails) a test that needs root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		for _, tool := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s not installed (apt-get install iproute2 nftables)", tool)
				}
				t.Skipf("%s not installed (apt-get install iproute2 nftables)", tool)
			}
		}
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, veth, nftables) and CI=true: run the tests as root")
	}
	t.Skip("needs root: network namespaces, veth pairs and nftables rules")
}

type lab struct {
	t                              *testing.T
	ns, hostIf, nsIf               string
	hostIP, proxyIP, zoneIP, webIP string
	subnet, pfx                    string
	info                           helperInfo
	cmd                            *exec.Cmd
	stdin                          io.WriteCloser
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
}

// labOption adds to a lab before its server process starts (addresses,
// processes, the web tier's tunnel list).
type labOption func(l *lab, p *helperParams)

func newLab(t *testing.T, opts ...labOption) *lab {
	requireRoot(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:2])
	l := &lab{t: t, ns: "cxlab" + id, hostIf: "cx" + id + "h", nsIf: "cx" + id + "n"}
	pfx := fmt.Sprintf("10.%d.%d.", 200+int(b[2])%50, b[3])
	l.subnet, l.pfx = pfx+"0/24", pfx
	l.hostIP, l.zoneIP, l.webIP, l.proxyIP = pfx+"1", pfx+"2", pfx+"3", pfx+"5"
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.ns).Run()
		_ = exec.Command("ip", "link", "del", l.hostIf).Run() // gone with the namespace, unless moving it failed
	})
	run(t, "ip", "netns", "add", l.ns)
	run(t, "ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", l.nsIf)
	run(t, "ip", "link", "set", l.nsIf, "netns", l.ns)
	run(t, "ip", "addr", "add", l.hostIP+"/24", "dev", l.hostIf)
	run(t, "ip", "addr", "add", l.proxyIP+"/24", "dev", l.hostIf) // secondary: the proxy's source address
	run(t, "ip", "link", "set", l.hostIf, "up")
	run(t, "ip", "-n", l.ns, "addr", "add", l.zoneIP+"/24", "dev", l.nsIf)
	run(t, "ip", "-n", l.ns, "addr", "add", l.webIP+"/24", "dev", l.nsIf)
	run(t, "ip", "-n", l.ns, "link", "set", l.nsIf, "up")
	run(t, "ip", "-n", l.ns, "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", l.ns, "nft", "add table inet cxlab; add chain inet cxlab input { type filter hook input priority 0; policy accept; }")

	exe, err := os.Executable()
	require.NoError(t, err)
	hp := helperParams{ZoneIP: l.zoneIP, WebIP: l.webIP, Secret: hex.EncodeToString(joinSecret)}
	for _, o := range opts {
		o(l, &hp)
	}
	p, _ := json.Marshal(hp)
	l.cmd = exec.Command("ip", "netns", "exec", l.ns, exe, "-test.run=^TestNetnsHelper$", "-test.count=1")
	l.cmd.Env = append(os.Environ(), helperEnv+"="+string(p))
	l.cmd.Stderr = os.Stderr
	l.stdin, err = l.cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := l.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, l.cmd.Start())
	t.Cleanup(func() {
		l.stdin.Close()
		done := make(chan struct{})
		go func() {
			_ = l.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = l.cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "HELPER-INFO "); ok {
				lines <- s
			}
		}
	}()
	select {
	case s, ok := <-lines:
		require.True(t, ok, "the lab's server process exited")
		require.NoError(t, json.Unmarshal([]byte(s), &l.info))
	case <-time.After(60 * time.Second):
		t.Fatal("the lab's server process did not start within 60 s")
	}
	go func() { // drain the rest of stdout until the process ends
		for range lines {
		}
	}()
	return l
}

// rules replaces the lab's input rules (nft syntax, one rule per string).
func (l *lab) rules(rules ...string) {
	l.t.Helper()
	script := "flush chain inet cxlab input\n"
	for _, r := range rules {
		script += "add rule inet cxlab input " + r + "\n"
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	require.NoError(l.t, err, "nft: %s", out)
}

func (l *lab) config(t *testing.T, client int, rx *receiver) connect.Config {
	tc, err := tlsutil.PinnedClientConfig(l.info.WebFingerprint)
	require.NoError(t, err)
	ssrcs := map[media.Kind][]uint32{}
	for _, k := range media.Kinds {
		ssrcs[k] = []uint32{ssrcFor(client, k)}
	}
	return connect.Config{Web: l.info.WebURL, WebTLS: tc, MeetingID: meetingID, Passcode: "4242", Name: fmt.Sprintf("client%d", client),
		SSRCs: ssrcs, OnMedia: rx.onMedia, NoEnvProxy: true, Logger: testLogger(t), UDPRetry: 300 * time.Millisecond}
}

func connectOK(t *testing.T, cfg connect.Config) (*connect.Session, connect.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, res, err := connect.Connect(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, res
}

// connectTwo connects two clients at once (their phases' waiting overlaps).
func connectTwo(t *testing.T, ca, cb connect.Config) (a, b *connect.Session, ra, rb connect.Result) {
	t.Helper()
	cfgs := []connect.Config{ca, cb}
	ss := make([]*connect.Session, 2)
	rs := make([]connect.Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ss[i], rs[i], errs[i] = connect.Connect(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	for i := range ss {
		if ss[i] != nil {
			t.Cleanup(func() { ss[i].Close() })
		}
	}
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	return ss[0], ss[1], rs[0], rs[1]
}

func requireTransport(t *testing.T, s *connect.Session, res connect.Result, want string) {
	t.Helper()
	for _, k := range media.Kinds {
		require.Equal(t, want, s.Flow(k).Transport(), "%s: %+v", k, res.Media)
	}
}

func TestNetnsFallback(t *testing.T) {
	leaktest.Check(t)
	l := newLab(t)

	t.Run("open network: every kind on UDP", func(t *testing.T) {
		rxA, rxB := newReceiver(), newReceiver()
		a, ra := connectOK(t, l.config(t, 0, rxA))
		b, _ := connectOK(t, l.config(t, 1, rxB))
		requireTransport(t, a, ra, connect.UDP)
		requireTransport(t, b, ra, connect.UDP)
		exchange(t, a, 0, rxB)
		exchange(t, b, 1, rxA)
		require.NoError(t, a.Leave(context.Background()))
		require.NoError(t, b.Leave(context.Background()))
	})

	t.Run("UDP 8801 dropped: TCP, then back to UDP without a gap over 1 s", func(t *testing.T) {
		l.rules("udp dport 8801 drop")
		rxA, rxB := newReceiver(), newReceiver()
		start := time.Now()
		a, ra := connectOK(t, l.config(t, 0, rxA))
		took := time.Since(start)
		b, rb := connectOK(t, l.config(t, 1, rxB))
		requireTransport(t, a, ra, connect.TCP)
		requireTransport(t, b, rb, connect.TCP)
		for _, m := range ra.Media {
			require.Len(t, m.Attempts, 2, "%+v", m)
			require.Equal(t, connect.UDP, m.Attempts[0].Transport)
			require.NotEmpty(t, m.Attempts[0].Err)
			// The UDP give-up time, with scheduling slack.
			require.InDelta(t, connect.DefaultUDPGiveUp.Seconds(), m.Attempts[0].Took.Seconds(), 0.5, "%+v", m)
		}
		t.Logf("connected on TCP in %v (UDP given up after %v)", took, ra.Media[0].Attempts[0].Took)
		exchange(t, a, 0, rxB)
		exchange(t, b, 1, rxA)

		// Continuous media both ways at 50 packets/s per kind while the rule goes.
		var stop atomic.Bool
		var wg sync.WaitGroup
		send := func(s *connect.Session, idx int) {
			defer wg.Done()
			seq := uint16(10000)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				if stop.Load() {
					return
				}
				seq++
				for _, k := range media.Kinds {
					_ = s.Flow(k).Send(rtp(ssrcFor(idx, k), seq, 160))
				}
			}
		}
		wg.Add(2)
		go send(a, 0)
		go send(b, 1)
		defer func() {
			stop.Store(true)
			wg.Wait()
		}()
		require.NoError(t, connecttest.Wait(context.Background(), 10*time.Second, func() bool {
			rxA.mu.Lock()
			defer rxA.mu.Unlock()
			return rxA.count[media.Video] > 10
		}))
		rxA.resetGaps()
		rxB.resetGaps()
		l.rules()
		require.NoError(t, connecttest.Wait(context.Background(), 20*time.Second, func() bool {
			for _, s := range []*connect.Session{a, b} {
				for _, k := range media.Kinds {
					if s.Flow(k).Transport() != connect.UDP {
						return false
					}
				}
			}
			return true
		}), "kinds did not move back to UDP")
		time.Sleep(500 * time.Millisecond) // half a second of media on UDP after the move, for the gap statistics
		for _, k := range media.Kinds {
			require.Less(t, rxA.maxGap(k), time.Second, "%s gap at A", k)
			require.Less(t, rxB.maxGap(k), time.Second, "%s gap at B", k)
			t.Logf("%s: longest gap across the move back to UDP: A %v, B %v", k, rxA.maxGap(k), rxB.maxGap(k))
		}
		stop.Store(true)
		wg.Wait()
		require.NoError(t, a.Leave(context.Background()))
		require.NoError(t, b.Leave(context.Background()))
	})

	t.Run("control channel cut: it resumes, the others see nothing", func(t *testing.T) {
		l.rules()
		rxA, rxB := newReceiver(), newReceiver()
		a, _ := connectOK(t, l.config(t, 0, rxA))
		cb := l.config(t, 1, rxB)
		var mu sync.Mutex
		var left []any
		cb.OnEvent = func(m any) {
			if _, ok := m.(*ctlproto.ParticipantLeft); ok {
				mu.Lock()
				left = append(left, m)
				mu.Unlock()
			}
		}
		b, _ := connectOK(t, cb)
		before := a.Joined().Resume
		// Kill A's and B's TCP connections to the MMR's port 443 (the
		// control channels: media is on UDP), as a network change would.
		out, err := exec.Command("ss", "-K", "dst", l.zoneIP, "dport", "=", ":443").CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), l.zoneIP, "ss -K closed nothing")
		require.NoError(t, connecttest.Wait(context.Background(), 20*time.Second, func() bool {
			j := a.Joined()
			return j != nil && j.Resume != before // a resume hands out a new credential
		}), "A's control channel did not resume")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, connecttest.Wait(ctx, 10*time.Second, func() bool {
			_, _, err := a.Control().Ping(ctx)
			return err == nil
		}))
		exchange(t, a, 0, rxB)
		exchange(t, b, 1, rxA)
		mu.Lock()
		require.Empty(t, left, "nobody left")
		mu.Unlock()
		require.NoError(t, a.Leave(context.Background()))
		require.NoError(t, b.Leave(context.Background()))
	})

	t.Run("UDP dies mid-call: the silent kinds reconnect over TCP", func(t *testing.T) {
		l.rules()
		c := l.config(t, 0, newReceiver())
		c.Keepalive = 200 * time.Millisecond
		a, ra := connectOK(t, c)
		requireTransport(t, a, ra, connect.UDP)
		l.rules("udp dport 8801 drop")
		start := time.Now()
		require.NoError(t, connecttest.Wait(context.Background(), 20*time.Second, func() bool {
			for _, k := range media.Kinds {
				if a.Flow(k).Transport() != connect.TCP {
					return false
				}
			}
			return true
		}), "kinds did not reconnect over TCP")
		t.Logf("reconnected over TCP %v after UDP was dropped", time.Since(start))
		require.NoError(t, a.Leave(context.Background()))
		l.rules()
	})

	t.Run("forced UDP with UDP dropped: the media phase fails and leaves nothing", func(t *testing.T) {
		l.rules("udp dport 8801 drop")
		c := l.config(t, 0, newReceiver())
		c.Transport = connect.UDP
		_, res, err := connect.Connect(context.Background(), c)
		var ce *connect.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, connect.PhaseMedia, ce.Phase)
		require.Contains(t, ce.Advice, l.info.WebURL, "the web client advice")
		for _, m := range res.Media {
			require.NotEmpty(t, m.Err)
		}
		// Connect sent leave before closing (no participant lingering for
		// the grace period); the test's leak check covers the client side.
		l.rules()
	})

	t.Run("all of 8801 dropped: TLS 443", func(t *testing.T) {
		l.rules("udp dport 8801 drop", "tcp dport 8801 drop")
		rxA, rxB := newReceiver(), newReceiver()
		a, b, ra, rb := connectTwo(t, l.config(t, 0, rxA), l.config(t, 1, rxB))
		requireTransport(t, a, ra, connect.TLS)
		requireTransport(t, b, rb, connect.TLS)
		for _, m := range ra.Media {
			require.Len(t, m.Attempts, 3, "%+v", m)
		}
		exchange(t, a, 0, rxB)
		exchange(t, b, 1, rxA)
		require.NoError(t, a.Leave(context.Background()))
		require.NoError(t, b.Leave(context.Background()))
		l.rules()
	})
}

func TestNetnsZCBlackholed(t *testing.T) {
	leaktest.Check(t)
	l := newLab(t)
	// From outside the lab only: the tunnel server and the web tier's
	// health checks inside it still reach the ZC.
	blackhole := "iifname " + l.nsIf + " ip daddr " + l.zoneIP + " tcp dport 443 drop"

	t.Run("tunnel blocked too: the tunnel step after 5.5 s, then the web client advice", func(t *testing.T) {
		l.rules(blackhole, "tcp dport 8443 drop")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c := l.config(t, 0, newReceiver())
		c.TunnelTimeout = time.Second // the tunnel port is black-holed too: no need to wait 5 s for it
		_, res, err := connect.Connect(ctx, c)
		require.Error(t, err)
		var ce *connect.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, connect.PhaseZone, ce.Phase)
		require.Equal(t, connect.NextStepTunnel, res.NextStep)
		t.Logf("tunnel step reported after %v", res.ZoneTook)
		requireZoneWait(t, res)
		require.False(t, res.Tunnel.Used)
		require.NotEmpty(t, res.Tunnel.Err)
		require.Contains(t, res.Advice, l.info.WebURL+"/j/"+meetingID)
		require.NotContains(t, res.Advice, "\n")
		require.Equal(t, res.Advice, ce.Advice)
		require.NotEmpty(t, res.Zones[0].Err)
	})

	t.Run("through the tunnel: ZC, control and TLS media", func(t *testing.T) {
		l.rules(blackhole)
		rxA, rxB := newReceiver(), newReceiver()
		a, b, ra, _ := connectTwo(t, l.config(t, 0, rxA), l.config(t, 1, rxB))
		require.Equal(t, connect.NextStepTunnel, ra.NextStep)
		require.True(t, ra.Tunnel.Used, "%+v", ra.Tunnel)
		requireZoneWait(t, ra)
		requireTransport(t, a, ra, connect.TLS)
		exchange(t, a, 0, rxB)
		exchange(t, b, 1, rxA)
		require.NoError(t, a.Leave(context.Background()))
		require.NoError(t, b.Leave(context.Background()))
	})
}

func TestNetnsProxy(t *testing.T) {
	leaktest.Check(t)
	l := newLab(t)
	px := startTinyproxy(t, l.proxyIP)
	zoneTLS := l.info.ZoneTLS
	webAddr := strings.TrimPrefix(l.info.WebURL, "https://")
	pacFile := filepath.Join(t.TempDir(), "proxy.pac")
	pfx := strings.TrimSuffix(l.subnet, "/24")
	require.NoError(t, os.WriteFile(pacFile, []byte(`function FindProxyForURL(url, host) {
	if (isPlainHostName(host) || dnsDomainIs(host, ".internal")) return "DIRECT";
	if (isInNet(host, "`+pfx+`", "255.255.255.0") && shExpMatch(url, "https://*")) return "PROXY `+px.addr+`; DIRECT";
	return "DIRECT";
}`), 0o600))

	// Only the proxy reaches the lab: everything from the client's own
	// address is dropped, the proxy's source address passes.
	l.rules("ip saddr " + l.hostIP + " drop")

	for _, tc := range []struct {
		name string
		set  func(*connect.Config)
		src  string
	}{
		{"flag", func(c *connect.Config) { c.Proxy = "http://" + px.addr }, connect.ProxyFlag},
		{"environment", func(c *connect.Config) {
			c.NoEnvProxy = false
			c.Getenv = func(k string) string {
				return map[string]string{"HTTPS_PROXY": "http://" + px.addr, "NO_PROXY": "example.org"}[k]
			}
		}, connect.ProxyEnv},
		{"PAC", func(c *connect.Config) { c.PAC = "file://" + pacFile }, connect.ProxyPAC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			zc0, web0 := px.connects(t, zoneTLS), px.connects(t, webAddr)
			rxA, rxB := newReceiver(), newReceiver()
			ca, cb := l.config(t, 0, rxA), l.config(t, 1, rxB)
			tc.set(&ca)
			tc.set(&cb)
			a, ra := connectOK(t, ca)
			b, _ := connectOK(t, cb)
			require.True(t, ra.Proxy.Detected)
			require.Equal(t, tc.src, ra.Proxy.Source)
			require.True(t, ra.Control.Proxied)
			requireTransport(t, a, ra, connect.TLS)
			for _, m := range ra.Media {
				require.Len(t, m.Attempts, 1, "UDP and TCP 8801 must not be tried: %+v", m)
			}
			exchange(t, a, 0, rxB)
			exchange(t, b, 1, rxA)
			// Per client: lookup to the web tier; ZC, control and three
			// media streams to the zone's port 443, all through the proxy.
			require.Equal(t, 2, px.connects(t, webAddr)-web0)
			require.Equal(t, 2*5, px.connects(t, zoneTLS)-zc0)
			require.NoError(t, a.Leave(context.Background()))
			require.NoError(t, b.Leave(context.Background()))
		})
	}

	t.Run("NO_PROXY exempts the zone", func(t *testing.T) {
		l.rules() // direct paths open again
		zc0, web0 := px.connects(t, zoneTLS), px.connects(t, webAddr)
		rx := newReceiver()
		c := l.config(t, 0, rx)
		c.NoEnvProxy = false
		c.Getenv = func(k string) string {
			return map[string]string{"HTTPS_PROXY": "http://" + px.addr, "NO_PROXY": "example.org, " + l.zoneIP}[k]
		}
		s, res := connectOK(t, c)
		require.True(t, res.Proxy.Detected, "the lookup went through the proxy")
		require.False(t, res.Control.Proxied)
		requireTransport(t, s, res, connect.UDP)
		require.Equal(t, 1, px.connects(t, webAddr)-web0)
		require.Equal(t, 0, px.connects(t, zoneTLS)-zc0)
		require.NoError(t, s.Leave(context.Background()))
	})
}

// requireZoneWait checks that the zone phase waited the 5.5 s for the ZCs
// and not much longer (under a CPU hog its end, cancelling the dials and
// waiting for them, was seen taking 0.43 s more).
func requireZoneWait(t *testing.T, res connect.Result) {
	t.Helper()
	require.GreaterOrEqual(t, res.ZoneTook, connect.DefaultZoneTimeout, "waited for the ZCs")
	require.Less(t, res.ZoneTook, connect.DefaultZoneTimeout+1500*time.Millisecond, "did not wait much longer")
}
