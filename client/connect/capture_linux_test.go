package connect_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// capture records every frame on the loopback interface (an AF_PACKET
// socket, both directions) until stop: what an observer of the machine's
// traffic sees. Linux only; the tests run as root.
type capture struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	bytes  int
	done   chan struct{} // closed when read returns
	quit   chan struct{} // closed by stop
	stopMu sync.Once
	stats  unix.TpacketStats
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startCapture captures the IPv4 TCP and UDP frames from or to any of
// ports (a classic BPF filter in the kernel, so that the rest of the
// machine's loopback traffic neither fills the buffer nor is recorded).
func startCapture(t *testing.T, ports ...uint16) *capture {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Skipf("no AF_PACKET socket (needs root): %v", err)
	}
	prog, err := bpf.Assemble(portFilter(ports))
	require.NoError(t, err)
	filter := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	require.NoError(t, unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}))
	lo, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: lo.Index}))
	// 64 MiB of socket buffer: the test's few thousand packets fit even
	// if the reader is descheduled for a while; drops are checked below.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	c := &capture{fd: fd, done: make(chan struct{}), quit: make(chan struct{})}
	go c.read()
	t.Cleanup(c.stop)
	return c
}

// portFilter accepts an unfragmented IPv4 TCP or UDP frame (after the
// 14-byte Ethernet header of loopback frames) whose source or destination
// port is one of ports.
func portFilter(ports []uint16) []bpf.Instruction {
	n := uint8(len(ports))
	drop := 10 + 2*n // index of the drop instruction; accept follows it
	skip := func(from, to uint8) uint8 { return to - from - 1 }
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                                                 // 0: ethertype
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: skip(1, drop)},           // 1
		bpf.LoadAbsolute{Off: 14 + 9, Size: 1},                                             // 2: IP protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.IPPROTO_TCP, SkipTrue: 1},                // 3
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: skip(4, drop)}, // 4
		bpf.LoadAbsolute{Off: 14 + 6, Size: 2},                                             // 5: flags, fragment offset
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: skip(6, drop)},            // 6
		bpf.LoadMemShift{Off: 14},                                                          // 7: X = IP header length
		bpf.LoadIndirect{Off: 14, Size: 2},                                                 // 8: source port
	}
	for i, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(p), SkipTrue: skip(9+uint8(i), drop+1)})
	}
	prog = append(prog, bpf.LoadIndirect{Off: 16, Size: 2}) // 9+n: destination port
	for i, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(p), SkipTrue: skip(10+n+uint8(i), drop+1)})
	}
	return append(prog, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: 1 << 18})
}

func (c *capture) read() {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		select {
		case <-c.quit:
			return
		default:
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // the 100 ms receive timeout: look at quit again
		}
		if err != nil {
			return
		}
		c.mu.Lock()
		c.frames = append(c.frames, bytes.Clone(buf[:n]))
		c.bytes += n
		c.mu.Unlock()
	}
}

// stop ends the capture (idempotent) and reads the kernel's drop count.
func (c *capture) stop() {
	c.stopMu.Do(func() {
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.stats = *st
		}
		close(c.quit)
		<-c.done
		unix.Close(c.fd)
	})
}

// find returns how many frames contain needle.
func (c *capture) find(needle []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.frames {
		if bytes.Contains(f, needle) {
			n++
		}
	}
	return n
}

// udpTo counts captured IPv4 UDP datagrams to port (loopback frames carry
// a 14-byte Ethernet header).
func (c *capture) udpTo(port uint16) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.frames {
		if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14+9] != unix.IPPROTO_UDP {
			continue
		}
		ihl := int(f[14]&0x0f) * 4
		if len(f) >= 14+ihl+8 && binary.BigEndian.Uint16(f[14+ihl+2:]) == port {
			n++
		}
	}
	return n
}
