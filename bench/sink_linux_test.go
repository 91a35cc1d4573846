package bench

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Receive batching of the subscribers: 32 datagrams of up to 2 KiB per
// recvmmsg keeps the parent's receive cost low (it shares the two cores with
// the measured child) at 64 KiB of buffers per subscriber.
const (
	sinkBatch   = 32
	sinkBufSize = 2048
)

// drain reads k's socket with non-blocking recvmmsg through the netpoller
// until the socket is closed.
func (s *sinkSet) drain(k *sink) {
	defer s.wg.Done()
	rc, err := k.conn.SyscallConn()
	if err != nil {
		return
	}
	bufs := make([]byte, sinkBatch*sinkBufSize)
	msgs := make([]unix.Mmsghdr, sinkBatch)
	iovs := make([]unix.Iovec, sinkBatch)
	for i := range msgs {
		iovs[i].Base = &bufs[i*sinkBufSize]
		iovs[i].SetLen(sinkBufSize)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var n int
	var errno syscall.Errno
	recv := func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), sinkBatch, unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false // wait for readability
		}
		n, errno = int(r), e
		return true
	}
	for {
		if err := rc.Read(recv); err != nil {
			return // closed
		}
		if errno != 0 {
			continue // EINTR
		}
		for i := range n {
			off := i * sinkBufSize
			s.handle(k, bufs[off:off+int(msgs[i].Len)])
		}
		s.notify()
	}
}
