package webclient

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// netns is a network namespace whose only interface is an up loopback, so
// the browsers run in it use nothing else.
type netns struct {
	t    *testing.T
	ip   string // ip(8)
	name string
}

// loopbackNetns makes a netns. It returns nil, with the reason, where
// namespaces cannot be made here (not root, no ip(8)); the tests then run
// the browsers in the host's namespace. OPENMMR_NO_NETNS=1 turns it off.
func loopbackNetns(t *testing.T) (*netns, string) {
	t.Helper()
	if os.Getenv("OPENMMR_NO_NETNS") == "1" {
		return nil, "OPENMMR_NO_NETNS=1"
	}
	ip, err := exec.LookPath("ip")
	if err != nil || os.Geteuid() != 0 {
		return nil, "needs root and ip(8)"
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ns := "mmrwc-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	if out, err := exec.Command(ip, "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("ip link set lo up: %v %s", err, out)
	}
	if out, err := exec.Command(ip, "-n", ns, "-o", "link").CombinedOutput(); err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		return nil, fmt.Sprintf("namespace has more than loopback: %s", out)
	}
	return &netns{t: t, ip: ip, name: ns}, ""
}

// in runs f on a thread switched into the namespace: a socket stays in the
// namespace it was made in. The thread never leaves the namespace: it ends
// with its goroutine (a goroutine that exits locked takes its thread along).
func (n *netns) in(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := os.Open(filepath.Join("/var/run/netns", n.name))
		if err != nil {
			ch <- err
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- err
			return
		}
		ch <- f()
	}()
	return <-ch
}

// listenTCP listens on 127.0.0.1:port (0: any) in the namespace.
func (n *netns) listenTCP(port int) (ln net.Listener, err error) {
	err = n.in(func() error {
		ln, err = net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		return err
	})
	return ln, err
}

// listenUDP binds 127.0.0.1:port in the namespace.
func (n *netns) listenUDP(port int) (pc net.PacketConn, err error) {
	err = n.in(func() error {
		pc, err = net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(port))
		return err
	})
	return pc, err
}

// wrap returns a script that starts browser inside the namespace.
func (n *netns) wrap(browser string) string {
	p := filepath.Join(n.t.TempDir(), "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", n.ip, n.name, browser)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// dropUDP makes nftables, in the namespace only, drop every UDP datagram
// to port (what a network that blocks UDP 443 does).
func (n *netns) dropUDP(port int) error {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nft: %w (apt-get install nftables)", err)
	}
	rules := fmt.Sprintf("table inet mmrtest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport %d drop\n }\n}\n", port)
	cmd := exec.Command(n.ip, "netns", "exec", n.name, nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v %s", err, out)
	}
	return nil
}
