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
	var ctl []byte // SO_TIMESTAMPNS control messages, one slot per message
	ctlSpace := unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))
	if s.lat != nil {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}); err != nil || serr != nil {
			return
		}
		ctl = make([]byte, sinkBatch*ctlSpace)
	}
	for i := range msgs {
		iovs[i].Base = &bufs[i*sinkBufSize]
		iovs[i].SetLen(sinkBufSize)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	resetCtl := func() {
		for i := range msgs {
			if ctl != nil {
				msgs[i].Hdr.Control = &ctl[i*ctlSpace]
				msgs[i].Hdr.SetControllen(ctlSpace)
			}
		}
	}
	resetCtl()
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
			var rx int64
			if ctl != nil {
				rx = rxTime(ctl[i*ctlSpace : i*ctlSpace+min(int(msgs[i].Hdr.Controllen), ctlSpace)])
			}
			s.handleAt(k, bufs[off:off+int(msgs[i].Len)], rx)
		}
		if ctl != nil {
			resetCtl()
		}
		s.notify()
	}
}

// rxTime returns the SCM_TIMESTAMPNS receive time in ctl (Unix ns), or 0.
func rxTime(ctl []byte) int64 {
	msgs, err := unix.ParseSocketControlMessage(ctl)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return ts.Nano()
		}
	}
	return 0
}
