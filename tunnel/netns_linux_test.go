package tunnel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// netns is a network namespace joined to the host by a veth pair: the host
// side has SUB.1 and SUB.11-13, the namespace SUB.2 (SUB a random
// 10.x.y/24). nft in the namespace drops every outgoing packet but those
// to the allowed TCP destinations.
type netns struct {
	name, sub string
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s: %s", strings.Join(args, " "), out)
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install iproute2 nftables)", tool)
		}
	}
	id := rand.IntN(1 << 20)
	n := &netns{name: fmt.Sprintf("htc%x", id), sub: fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(250))}
	host, peer := fmt.Sprintf("vh%x", id), fmt.Sprintf("vn%x", id)
	sh(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", n.name).Run()
	})
	sh(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	sh(t, "ip", "link", "set", peer, "netns", n.name)
	for _, a := range []string{".1", ".11", ".12", ".13"} {
		sh(t, "ip", "addr", "add", n.sub+a+"/24", "dev", host)
	}
	sh(t, "ip", "link", "set", host, "up")
	sh(t, "ip", "-n", n.name, "addr", "add", n.sub+".2/24", "dev", peer)
	sh(t, "ip", "-n", n.name, "link", "set", peer, "up")
	sh(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// restrict lets the namespace send only to the allowed TCP destinations
// (and its own loopback).
func (n *netns) restrict(t *testing.T, allow ...string) {
	t.Helper()
	var rules strings.Builder
	for _, a := range allow {
		h, p, err := net.SplitHostPort(a)
		require.NoError(t, err)
		fmt.Fprintf(&rules, "    ip daddr %s tcp dport %s accept\n", h, p)
	}
	ruleset := fmt.Sprintf("table inet htc {\n  chain out {\n    type filter hook output priority 0; policy drop;\n    oifname \"lo\" accept\n%s  }\n}\n", rules.String())
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "nft: %s\n%s", out, ruleset)
}

// runClient runs the client child in the namespace and returns its report.
func (n *netns) runClient(t *testing.T, job nsJob) nsResult {
	t.Helper()
	b, err := json.Marshal(job)
	require.NoError(t, err)
	cmd := exec.Command("ip", "netns", "exec", n.name, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=netns-client", "TUNNEL_NS_JOB="+string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "client child: %s", stderr.String())
	var res nsResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "client child said: %s %s", stdout.String(), stderr.String())
	return res
}

// TestNetnsOnlyTunnels: a client whose namespace reaches only three tunnel
// servers on TCP 443 (one dead, one slow by 10 s, one fast) cannot reach
// the zone directly, picks the fast tunnel and exchanges TLS media-sized
// packets with the zone through it.
func TestNetnsOnlyTunnels(t *testing.T) {
	leaktest.Check(t)
	ns := newNetns(t)
	dead, slow, fast := ns.sub+".11:443", ns.sub+".12:443", ns.sub+".13:443"
	ns.restrict(t, dead, slow, fast)
	zone := startEchoAt(t, ns.sub+".1:0", nil) // routable from the namespace, but dropped
	fastSrv := startServerAt(t, Config{Name: "fast", Zones: []string{zone.addr}}, fast)
	slowSrv := startServer(t, Config{Name: "slow", Zones: []string{zone.addr}})
	startTapAt(t, slow, slowSrv.addr, 10*time.Second)
	fp := fastSrv.ep.Fingerprint
	job := nsJob{
		Tunnels: []Endpoint{
			{URL: "https://" + dead + PathTunnel, Fingerprint: fp},
			{URL: "https://" + slow + PathTunnel, Fingerprint: slowSrv.ep.Fingerprint},
			{URL: "https://" + fast + PathTunnel, Fingerprint: fp},
		},
		Token: mint(t, testSecret, "ns-client", time.Hour), Zone: zone.addr, ZoneFP: zone.fp,
	}
	res := ns.runClient(t, job)
	require.NotEmpty(t, res.DirectErr, "the namespace reached the zone directly")
	require.Empty(t, res.PickErr)
	require.Equal(t, job.Tunnels[2].URL, res.Picked)
	require.Empty(t, res.EchoErr)
	require.Equal(t, 50, res.Echoed)
	require.Equal(t, uint64(1), fastSrv.Stats().Opened)
	require.Zero(t, slowSrv.Stats().Pings)
}

// TestNetnsOnlyProxy: the same client whose only way out is an HTTP proxy
// (tinyproxy on the host side): it reaches neither the zone nor the tunnel
// servers directly, and joins through proxy and tunnel.
func TestNetnsOnlyProxy(t *testing.T) {
	leaktest.Check(t)
	ns := newNetns(t)
	proxy, plog := startTinyproxyAt(t, ns.sub+".1")
	ns.restrict(t, proxy.Host)
	zone := startEchoAt(t, ns.sub+".1:0", nil)
	fastSrv := startServer(t, Config{Name: "fast", Zones: []string{zone.addr}})
	slowSrv := startServer(t, Config{Name: "slow", Zones: []string{zone.addr}})
	slowTap := startTap(t, slowSrv.addr, 10*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	job := nsJob{
		Tunnels: []Endpoint{
			{URL: "https://" + dead + PathTunnel, Fingerprint: fastSrv.ep.Fingerprint},
			{URL: "https://" + slowTap.addr + PathTunnel, Fingerprint: slowSrv.ep.Fingerprint},
			fastSrv.ep,
		},
		Token: mint(t, testSecret, "ns-proxied", time.Hour), Proxy: proxy.String(), Zone: zone.addr, ZoneFP: zone.fp,
	}
	res := ns.runClient(t, job)
	require.NotEmpty(t, res.DirectErr)
	require.Empty(t, res.PickErr)
	require.Equal(t, fastSrv.ep.URL, res.Picked)
	require.Empty(t, res.EchoErr)
	require.Equal(t, 50, res.Echoed)
	require.Contains(t, plog.String(), "CONNECT")
	require.Equal(t, uint64(1), fastSrv.Stats().Opened)
}
