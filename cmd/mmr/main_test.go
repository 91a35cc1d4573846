package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	ctlclient "github.com/openmmr/mmr/client/control"
	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/client/udpmedia"
	"github.com/openmmr/mmr/control/token"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/wire"
	"github.com/openmmr/mmr/zone/zclient"
)

// startNode runs the command in-process on ephemeral loopback ports with a
// fresh state directory and stops it when the test ends.
func startNode(t *testing.T, extra ...string) (*node, string, *lockedBuffer) {
	t.Helper()
	state := t.TempDir()
	args := append([]string{"-udp", "127.0.0.1:0", "-shards", "1", "-control", "127.0.0.1:0", "-state", state, "-id", "mmr-test"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *node, 1)
	logs := &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, logs, nil, started) }()
	var n *node
	select {
	case n = <-started:
	case code := <-done:
		t.Fatalf("run exited %d:\n%s", code, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		require.Equal(t, 0, <-done)
	})
	return n, state, logs
}

// TestConnectionFlow walks the connection process against the real binary's
// node: the zone controller names the MMR (phase 3), the control channel
// joins two participants (TLS, pinned certificate), and their UDP media
// flows exchange a packet (phase 4).
func TestConnectionFlow(t *testing.T) {
	n, state, logs := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pin, err := tlsutil.PinnedClientConfig(n.fp)
	require.NoError(t, err)
	require.Contains(t, logs.String(), n.fp, "the fingerprint is logged for pinning")

	// Phase 3: which MMR hosts meeting "standup"? (The agent registers
	// within a report interval.)
	tlsAddr := addrPort(n.edge.Addr()).String()
	zc, err := zclient.Dial(ctx, tlsAddr, pin)
	require.NoError(t, err)
	defer zc.Close()
	var placedOn string
	require.Eventually(t, func() bool {
		pl, err := zc.Lookup(ctx, "standup")
		if err != nil {
			return false
		}
		placedOn = pl.MMR
		return len(pl.Endpoints.TLS) == 1
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, "mmr-test", placedOn)

	// Phase 3b: the control channel, with tokens minted as `mmr token` does.
	secret, err := os.ReadFile(filepath.Join(state, "join.secret"))
	require.NoError(t, err)
	var tokens = map[string]wire.Token{}
	var udpServer netip.AddrPort
	join := func(who string) (*ctlclient.Client, *udpmedia.Flow) {
		tok, err := token.Mint(bytes.TrimSuffix(secret, []byte("\n")), token.Claims{Meeting: "standup", Identity: who, Role: token.Participant, Expiry: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		c, err := ctlclient.Dial(ctx, tlsAddr, ctlclient.Config{TLS: pin})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		j, err := c.Join(ctx, "standup", tok, who)
		require.NoError(t, err)
		mt, err := wire.ParseToken(j.MediaToken)
		require.NoError(t, err)
		tokens[who] = mt
		transports := map[string]int{}
		for _, ep := range j.Endpoints {
			transports[ep.Transport]++
		}
		require.Equal(t, map[string]int{"udp": 3, "tcp": 3, "tls": 3}, transports, "joined lists UDP, TCP and TLS for each kind")
		var udp *udpmedia.Flow
		for _, ep := range j.Endpoints {
			if ep.Transport == "udp" && media.Kind(ep.Kind) == media.Audio {
				udpServer = ep.Addr
				udp, err = udpmedia.Dial(ctx, ep.Addr, media.Audio, mt)
				require.NoError(t, err)
				t.Cleanup(func() { udp.Close() })
				break
			}
		}
		require.NotNil(t, udp, "joined lists a UDP audio endpoint")
		require.NoError(t, c.Publish(ctx, media.Audio, uint32(len(who))))
		return c, udp
	}
	aliceCtl, alice := join("alice")
	_, bob := join("bob")
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 5}, Payload: []byte("hi bob")}).Marshal()
	require.NoError(t, err)
	require.NoError(t, alice.Send(pkt))
	buf := make([]byte, 1500)
	got, err := bob.Recv(buf, time.Now().Add(5*time.Second))
	require.NoError(t, err)
	require.Equal(t, pkt, buf[:got])
	require.Equal(t, 2, n.r.Stats().Participants)

	// Phase 4 fallback: bob's video over TLS on the shared port (ALPN
	// openmmr-media/1), alice's over UDP.
	bobVideo, err := streammedia.Dial(ctx, addrPort(n.edge.Addr()), media.Video, tokens["bob"], pin)
	require.NoError(t, err)
	defer bobVideo.Close()
	aliceVideo, err := udpmedia.Dial(ctx, udpServer, media.Video, tokens["alice"])
	require.NoError(t, err)
	defer aliceVideo.Close()
	require.NoError(t, aliceCtl.Publish(ctx, media.Video, 77))
	vpkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 77}, Payload: []byte("frame")}).Marshal()
	require.NoError(t, err)
	require.NoError(t, aliceVideo.Send(vpkt))
	got, err = bobVideo.Recv(buf, time.Now().Add(5*time.Second))
	require.NoError(t, err)
	require.Equal(t, vpkt, buf[:got], "video over TLS 443 byte for byte")
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, &out, nil, nil))
	require.Contains(t, out.String(), "-dscp-audio")
	require.Contains(t, out.String(), "-control")
	for _, bad := range [][]string{{"-udp", "nope"}, {"-read-mode", "x"}, {"-dscp-video", "64"}, {"extra"}, {"-public", "x"}, {"-tcp", "y"}} {
		require.Equal(t, 2, run(context.Background(), bad, &out, nil, nil), bad)
	}
}

func TestControlPortInUseNamesFlag(t *testing.T) {
	n, _, _ := startNode(t)
	var logs bytes.Buffer
	code := run(context.Background(), []string{"-udp", "127.0.0.1:0", "-control", addrPort(n.edge.Addr()).String(), "-state", t.TempDir()}, &logs, nil, nil)
	require.Equal(t, 1, code)
	require.Contains(t, logs.String(), "-control")
}

func TestDrainExitsWhenEmpty(t *testing.T) {
	state := t.TempDir()
	drain := make(chan os.Signal, 1)
	started := make(chan *node, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- run(context.Background(), []string{"-udp", "127.0.0.1:0", "-control", "127.0.0.1:0", "-state", state}, logs, drain, started)
	}()
	n := <-started
	require.NoError(t, n.r.CreateMeeting("m"))
	drain <- syscall.SIGUSR1
	select {
	case <-done:
		t.Fatal("exited while a meeting was still running")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, n.r.EndMeeting("m"))
	select {
	case code := <-done:
		require.Equal(t, 0, code)
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after the last meeting ended")
	}
	require.Contains(t, logs.String(), "mmr: drained")
}

func TestTokenSubcommand(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "s")
	require.NoError(t, os.WriteFile(secretFile, []byte(strings.Repeat("k", 32)+"\n"), 0o600))
	stdout := captureStdout(t, func() {
		require.Equal(t, 0, tokenMain([]string{"-secret-file", secretFile, "-meeting", "m1", "-identity", "ann", "-role", "host"}))
	})
	tok := strings.TrimSpace(stdout)
	v, err := token.NewVerifier([]byte(strings.Repeat("k", 32)))
	require.NoError(t, err)
	c, err := v.Verify(tok, time.Now())
	require.NoError(t, err)
	require.Equal(t, "m1", c.Meeting)
	require.Equal(t, token.Host, c.Role)
	require.False(t, c.E2EE)
	require.NotEqual(t, 0, tokenMain([]string{"-state", t.TempDir(), "-meeting", "m1"}), "no secret")

	// -e2ee mints a version 3 token with the E2EE flag.
	stdout = captureStdout(t, func() {
		require.Equal(t, 0, tokenMain([]string{"-secret-file", secretFile, "-meeting", "m1", "-identity", "ann", "-e2ee"}))
	})
	c, err = v.Verify(strings.TrimSpace(stdout), time.Now())
	require.NoError(t, err)
	require.True(t, c.E2EE)
	require.Equal(t, token.Version3, c.Version)
}

// mmr token signs by default with the secret mmr created in its state
// directory, and the key is that file's hex text (what the control server
// verifies with), not the bytes the hex decodes to.
func TestTokenDefaultsToStateSecret(t *testing.T) {
	state := t.TempDir()
	key, err := loadOrCreateHexSecret(filepath.Join(state, "join.secret"))
	require.NoError(t, err)
	require.Len(t, key, 64, "32 random bytes as hex text")
	stdout := captureStdout(t, func() {
		require.Equal(t, 0, tokenMain([]string{"-state", state, "-meeting", "m1", "-identity", "ann"}))
	})
	v, err := token.NewVerifier(key)
	require.NoError(t, err)
	c, err := v.Verify(strings.TrimSpace(stdout), time.Now())
	require.NoError(t, err)
	require.Equal(t, "ann", c.Identity)
}

func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stdout
	os.Stdout = w
	f()
	os.Stdout = old
	w.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	return b.String()
}

// TestBinarySignal builds the real binary and stops it with SIGTERM.
func TestBinarySignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mmr")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	cmd := exec.Command(bin, "-udp", "127.0.0.1:0", "-shards", "1", "-control", "127.0.0.1:0", "-state", t.TempDir())
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "mmr: running") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	require.Contains(t, logs.String(), "router: closed")
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestAnnouncedAddresses(t *testing.T) {
	v4, v6 := netip.MustParseAddrPort("0.0.0.0:8801"), netip.MustParseAddrPort("[::]:443")
	require.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:443"), v6}, dualStack(v6))
	require.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8801")}, public([]netip.AddrPort{v4}, netip.Addr{}))
	require.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:8801")}, public([]netip.AddrPort{v4, netip.MustParseAddrPort("[::]:8801")}, netip.MustParseAddr("192.0.2.7")))
}

// TestNonRootFallback runs the real binary as a user without the right to
// bind port 443 (nobody, when the test runs as root) and no -control flag:
// it must serve the TLS port on controlFallback instead of failing, and log
// the join command with that port.
func TestNonRootFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	// Another run of this suite on the machine (CI beside a developer's make
	// test) would race for the same port: take turns with a file lock.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "openmmr-control-fallback.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if ln, err := net.Listen("tcp", controlFallback); err != nil {
		t.Skipf("%s is taken on this machine (%v): the fallback cannot be observed", controlFallback, err)
	} else {
		ln.Close()
	}
	dir, err := os.MkdirTemp("", "mmr-nonroot-") // t.TempDir's parent is 0700: nobody could not reach it
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777)) // reachable and writable for nobody
	bin := filepath.Join(dir, "mmr")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	cmd := exec.Command(bin, "-udp", "127.0.0.1:0", "-tcp", "127.0.0.1:0", "-shards", "1", "-state", filepath.Join(dir, "state"))
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "mmr: running") }, 30*time.Second, 20*time.Millisecond, "logs: %s", logs)
	require.Contains(t, logs.String(), "serving the TLS port on "+controlFallback)
	require.Contains(t, logs.String(), "-web https://127.0.0.1:8443 ")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}
