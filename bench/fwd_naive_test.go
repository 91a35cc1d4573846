package bench

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// fwdSocketBuffer is SO_RCVBUF/SO_SNDBUF of the forwarders' own sockets
// (floor, naive), the router's default: 4 MiB rides out a scheduling hiccup
// of the load without loss.
const fwdSocketBuffer = 4 << 20

// fwdBufSize is the receive buffer per datagram of floor and naive: above
// the router's 1500-byte MaxPacket, so no benchmark packet is truncated.
const fwdBufSize = 2048

// naiveForwarder is the straightforward Go fan-out: one goroutine reading
// with ReadFromUDPAddrPort and writing each packet once per subscriber with
// WriteToUDPAddrPort, through the netpoller. It is the baseline a router
// must clearly beat. Close is idempotent and safe for concurrent use.
type naiveForwarder struct {
	conn *net.UDPConn
	subs []netip.AddrPort
	done chan struct{}
	once sync.Once
}

func newNaive(subs []netip.AddrPort) (*naiveForwarder, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	if err := errors.Join(conn.SetReadBuffer(fwdSocketBuffer), conn.SetWriteBuffer(fwdSocketBuffer)); err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	f := &naiveForwarder{conn: conn, subs: subs, done: make(chan struct{})}
	go f.loop()
	return f, nil
}

func (f *naiveForwarder) loop() {
	defer close(f.done)
	buf := make([]byte, fwdBufSize)
	for {
		n, _, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, s := range f.subs {
			_, _ = f.conn.WriteToUDPAddrPort(buf[:n], s) // a failed copy is a loss the parent counts
		}
	}
}

// Addr returns the address the forwarder listens on.
func (f *naiveForwarder) Addr() netip.AddrPort {
	return f.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close closes the socket and waits for the loop to end.
func (f *naiveForwarder) Close() error {
	var err error
	f.once.Do(func() {
		err = f.conn.Close()
		<-f.done
	})
	return err
}
