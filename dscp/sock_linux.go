package dscp

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Set marks every packet the socket c sends with code point d (IP_TOS, and
// IPV6_TCLASS for IPv6 sockets; dual-stack sockets get both). For stream
// sockets, which carry one media kind each.
func Set(c syscall.Conn, d uint8) error {
	return control(c, func(fd int) error {
		err4 := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, TOS(d))
		err6 := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, TOS(d))
		if err4 != nil && err6 != nil {
			return err4
		}
		return nil
	})
}

// EnableRecv asks the kernel to report each received datagram's TOS /
// traffic class (IP_RECVTOS, IPV6_RECVTCLASS), read back with ParseRecv.
func EnableRecv(c syscall.Conn) error {
	return control(c, func(fd int) error {
		err4 := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTOS, 1)
		err6 := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1)
		if err4 != nil && err6 != nil {
			return err4
		}
		return nil
	})
}

// ParseRecv returns the DSCP found in the control messages of a received
// datagram (oob from ReadMsgUDP), and false when none is there.
func ParseRecv(oob []byte) (uint8, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) >= 1:
			return FromTOS(int(m.Data[0])), true
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_TCLASS && len(m.Data) >= 4:
			return FromTOS(int(*(*int32)(unsafe.Pointer(&m.Data[0])))), true
		}
	}
	return 0, false
}

// Get returns the code point a socket marks its packets with.
func Get(c syscall.Conn, v6 bool) (uint8, error) {
	var tos int
	err := control(c, func(fd int) error {
		var err error
		if v6 {
			tos, err = unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS)
		} else {
			tos, err = unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS)
		}
		return err
	})
	return FromTOS(tos), err
}

func control(c syscall.Conn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
