package egress

// UDP generic segmentation offload (GSO, UDP_SEGMENT, Linux 4.18+): one
// sendmmsg(2) message carries a run of datagrams of equal size for one
// destination as a single "super-packet"; the kernel (or the NIC) cuts it
// into datagrams of gso_size bytes, the last one possibly shorter, each
// with its own UDP/IP header. The stack (routing, netfilter, queueing
// disciplines, the socket buffer accounting) runs once per super-packet
// instead of once per datagram, which is the saving. The receiver sees
// ordinary datagrams, whatever the kernel version.
const (
	// MaxSegments is the most datagrams of one super-packet. The kernel's
	// limit (UDP_MAX_SEGMENTS) is 64 before Linux 6.9 and 128 after; 64
	// works everywhere and is the router's read batch.
	MaxSegments = 64
	// MaxRunBytes is the most payload bytes of one super-packet: an IPv4
	// datagram's 65,535 bytes less its 20-byte IP and 8-byte UDP headers
	// (the kernel refuses more with EMSGSIZE). IPv6 would allow 20 bytes
	// more; one limit for both keeps runs the same.
	MaxRunBytes = 65535 - 20 - 8
)

// Run is a run of datagrams for one super-packet: entries First..First+N-1
// of a Segs, every one Size bytes long except the last, which may be
// shorter, Bytes bytes in all. N is 2..MaxSegments and Bytes at most
// MaxRunBytes. A Run is a plain value.
type Run struct {
	First, N int
	Size     int
	Bytes    int
	// staged is 1 + the index of the run's copy in its Segs' staging
	// buffer (Segs.Stage); 0: not staged, sent from the packets' buffers.
	staged int
}
