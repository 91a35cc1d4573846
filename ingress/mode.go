package ingress

import "fmt"

// Mode selects how a reader waits for packets.
type Mode uint8

const (
	// Blocking reads with a blocking recvmmsg(2) on a goroutine locked to its
	// OS thread: the thread sleeps in the kernel and wakes with the data, with
	// no epoll round trip. Measured in bench/ (BenchmarkFanout impl=mmr vs
	// mmr-poll) it is the cheaper mode per packet, so it is the default.
	Blocking Mode = iota
	// Poll reads through Go's netpoller (syscall.RawConn.Read with a
	// non-blocking recvmmsg made as a raw system call): the goroutine parks
	// while the socket is empty and holds no OS thread or P, so the
	// runtime's sysmon thread can sleep too. After a read that returned
	// less than a full batch it waits for readiness without trying first:
	// the socket was empty then, and any datagram since raised an event.
	// Raw calls matter here: an ordinary system call would wake sysmon
	// from that sleep, which then polls every 20 µs for a while, at every
	// packet at light load (measured: about 45 µs per packet at 1,000
	// packets/s against 21–34 µs with raw calls, bench/README.md).
	Poll
)

// String returns "blocking" or "poll".
func (m Mode) String() string {
	switch m {
	case Blocking:
		return "blocking"
	case Poll:
		return "poll"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode is the inverse of String.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "blocking":
		return Blocking, nil
	case "poll":
		return Poll, nil
	}
	return 0, fmt.Errorf("ingress: unknown read mode %q (want blocking or poll)", s)
}
