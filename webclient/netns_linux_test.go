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
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// loopbackNetns makes a network namespace whose only interface is an up
// loopback, so the browsers use nothing else: it returns a listener on
// 127.0.0.1 inside it (made from a thread switched into the namespace; a
// socket stays in the namespace it was made in) and a wrapper that starts a
// program inside it. ok is false, with the reason, where namespaces cannot
// be made here (not root, no ip(8)); the tests then run the browsers in the
// host's namespace. OPENMMR_NO_NETNS=1 turns it off.
func loopbackNetns(t *testing.T) (ln net.Listener, wrap func(string) string, reason string) {
	t.Helper()
	if os.Getenv("OPENMMR_NO_NETNS") == "1" {
		return nil, nil, "OPENMMR_NO_NETNS=1"
	}
	ip, err := exec.LookPath("ip")
	if err != nil || os.Geteuid() != 0 {
		return nil, nil, "needs root and ip(8)"
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ns := "mmrwc-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, nil, fmt.Sprintf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	if out, err := exec.Command(ip, "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, nil, fmt.Sprintf("ip link set lo up: %v %s", err, out)
	}
	if out, err := exec.Command(ip, "-n", ns, "-o", "link").CombinedOutput(); err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		return nil, nil, fmt.Sprintf("namespace has more than loopback: %s", out)
	}
	type res struct {
		ln  net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread never leaves the namespace: it ends with this
		// goroutine (a goroutine that exits locked takes its thread along).
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{nil, err}
			return
		}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, nil, "listen in the namespace: " + r.err.Error()
	}
	wrap = func(browser string) string {
		p := filepath.Join(t.TempDir(), "chromium-in-netns")
		script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", ip, ns, browser)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return r.ln, wrap, ""
}
