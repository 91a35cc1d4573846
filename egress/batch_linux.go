package egress

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// MaxMessages is the capacity of a Batch: UIO_MAXIOV, the most messages
// one sendmmsg(2) accepts. A fuller batch is flushed first.
const MaxMessages = 1024

// cmsgSpace is CMSG_SPACE(sizeof(int)), the room of one IP_TOS or
// IPV6_TCLASS control message.
var cmsgSpace = unix.CmsgSpace(4)

// ctlSpace is the room of a message's combined control data: the DSCP mark
// and an IPV6_PKTINFO (the larger of the two pktinfo forms).
var ctlSpace = cmsgSpace + unix.CmsgSpace(unix.SizeofInet6Pktinfo)

// Batch collects outgoing datagrams for one socket and sends them with
// sendmmsg(2). Messages point at caller-owned packet buffers, which must
// stay unchanged until Flush returns. Each message carries its media kind's
// DSCP in a control message (IP_TOS for IPv4, IPV6_TCLASS for IPv6) unless
// the mark is the socket's own (video's, see NewBatchSize), so one
// socket on port 8801 sends every kind, each with its own mark: per-kind
// sockets would all join the port's SO_REUSEPORT group and receive each
// other's flows, and RTP carries no kind byte a reuseport program could
// steer by. Not safe for concurrent use: one Batch per sending goroutine.
type Batch struct {
	fd     int
	msgs   []unix.Mmsghdr
	iovs   []unix.Iovec
	owners []*stats.Live
	cmsgs  [media.NumKinds][]byte
	ctl    []byte // per message: mark + pktinfo; made on the first destination with a Src
	n      int
	total  *stats.Live
	gso    *gsoState // nil until EnableGSO succeeds
	holdP  bool      // sendmmsg as a raw system call (SetHoldP)
}

// NewBatch returns a Batch of MaxMessages sending on fd (an IPv6 socket
// when v6) with the marks of d. Every copy sent or dropped is also counted
// in total.
func NewBatch(fd int, v6 bool, d dscp.Config, total *stats.Live) *Batch {
	return NewBatchSize(fd, v6, d, total, MaxMessages)
}

// NewBatchSize is NewBatch with room for n messages (1..MaxMessages).
func NewBatchSize(fd int, v6 bool, d dscp.Config, total *stats.Live, n int) *Batch {
	b := &Batch{
		total:  total,
		fd:     fd,
		msgs:   make([]unix.Mmsghdr, n),
		iovs:   make([]unix.Iovec, n),
		owners: make([]*stats.Live, n),
	}
	for i := range b.msgs {
		b.msgs[i].Hdr.Iov = &b.iovs[i]
		b.msgs[i].Hdr.Iovlen = 1
	}
	// The socket's own TOS (traffic class) is video's mark, so that video
	// copies, most of a router's packets, need no control message: the
	// kernel parses one per message otherwise (about 1 % of a copy's cost
	// at fan-out 50, bench/README.md). Every other kind whose mark differs
	// (0 included) carries its own. Every Batch on a socket sets the same
	// value (one dscp.Config per router); if the option fails, every marked
	// kind carries a control message as before.
	def := d.For(media.Video)
	if def != 0 && setTOS(fd, v6, dscp.TOS(def)) != nil {
		def = 0
	}
	for _, k := range media.Kinds {
		if v := d.For(k); v != def {
			b.cmsgs[k.Index()] = tosCmsg(v6, dscp.TOS(v))
		}
	}
	return b
}

// setTOS sets the socket's IP_TOS (IPv4) or IPV6_TCLASS (IPv6).
func setTOS(fd int, v6 bool, tos int) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tos)
}

// SetHoldP makes Flush call sendmmsg(2) as a raw system call, without
// telling the Go runtime, for a sender that runs on a thread holding its P
// (ingress.Socket.SetHoldP): the call never blocks (MSG_DONTWAIT), and an
// ordinary system call would let the runtime's sysmon thread retake the P
// while the kernel delivers a long batch, and the sender pay to get it
// back (about 3 % of the router's CPU at fan-out 50, mostly sysmon's own
// wake-ups). The cost: a garbage collection's stop-the-world waits for the
// call to return, so a raw call carries at most rawMaxCopies copies. Set it
// before the first Flush.
func (b *Batch) SetHoldP(hold bool) { b.holdP = hold }

// rawMaxCopies bounds the copies of one raw sendmmsg (SetHoldP): 512 are
// about 0.8 ms of the kernel's work on loopback without GSO (1.5 µs per
// copy), 0.3 ms with it, the longest a stop-the-world then waits for a
// flush, while the extra system calls cost well under 1 % (one per 512
// copies, 16 super-packets of 32). Without the bound a batch of 1024
// super-packets of 64 datagrams would hold it for tens of ms.
const rawMaxCopies = 512

// rawChunk returns how many messages from i one raw sendmmsg sends: at
// least one, at most rawMaxCopies copies.
func (b *Batch) rawChunk(i int) int {
	if b.gso == nil {
		return min(b.n-i, rawMaxCopies)
	}
	j, copies := i, 0
	for j < b.n {
		c := max(1, int(b.gso.segn[j]))
		if copies+c > rawMaxCopies && j > i {
			break
		}
		copies += c
		j++
	}
	return j - i
}

// sendmmsg sends msgs[:n] (see SetHoldP).
func (b *Batch) sendmmsg(msgs *unix.Mmsghdr, n int) (int, unix.Errno) {
	var r uintptr
	var e unix.Errno
	if b.holdP {
		r, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(msgs)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	} else {
		r, _, e = unix.Syscall6(unix.SYS_SENDMMSG, uintptr(b.fd), uintptr(unsafe.Pointer(msgs)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
	}
	return int(r), e
}

func tosCmsg(v6 bool, tos int) []byte {
	buf := make([]byte, cmsgSpace)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[0]))
	if v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_TCLASS
	} else {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	}
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&buf[unix.CmsgLen(0)])) = int32(tos)
	return buf
}

// Add queues pkt for dst, marked for kind k, and charges the outcome to
// owner (may be nil). It flushes first when the batch is full.
func (b *Batch) Add(pkt []byte, dst *Addr, k media.Kind, owner *stats.Live) {
	if b.n == len(b.msgs) {
		b.Flush()
	}
	i := b.n
	b.n++
	b.iovs[i].Base = unsafe.SliceData(pkt)
	b.iovs[i].SetLen(len(pkt))
	h := &b.msgs[i].Hdr
	h.Iov = &b.iovs[i] // a super-packet (AddRun) may have used the slot
	h.SetIovlen(1)
	if b.gso != nil {
		b.gso.segn[i] = 0
	}
	h.Name = dst.raw.ptr()
	h.Namelen = dst.raw.len
	if dst.pktinfo != nil {
		// Both control messages side by side in this message's slot: a
		// ~60-byte copy, paid only by routers bound to a wildcard address.
		if b.ctl == nil { // once per Batch: most routers never need it
			b.ctl = make([]byte, len(b.msgs)*ctlSpace)
		}
		c := b.ctl[i*ctlSpace : (i+1)*ctlSpace]
		m := copy(c, b.cmsgs[k.Index()])
		m += copy(c[m:], dst.pktinfo)
		h.Control = &c[0]
		h.SetControllen(m)
	} else if c := b.cmsgs[k.Index()]; c != nil {
		h.Control = &c[0]
		h.SetControllen(len(c))
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
	b.owners[i] = owner
}

// Pending returns the number of queued messages.
func (b *Batch) Pending() int { return b.n }

// Flush sends every queued message. It never blocks on a full socket
// buffer (MSG_DONTWAIT): what the kernel refuses with EAGAIN is dropped and
// counted as DropSendBusy. A message the kernel rejects (unreachable
// destination, ...) is counted as DropSendError and skipped; the rest are
// resumed. A super-packet refused for a reason of GSO (see gsoError) is
// sent again as one datagram per segment (counted in GSOFallbacks, not as a
// drop). It returns when all messages are sent, skipped or dropped.
//
// The Batch's total counters are added once per Flush, not once per copy:
// an atomic add per copy was a measurable part of the router's own cost at
// fan-out 50 (bench/README.md).
func (b *Batch) Flush() {
	var pkts, bytes, gsoMsgs int
	i := 0
	for i < b.n {
		n := b.n - i
		if b.holdP {
			n = b.rawChunk(i)
		}
		r, e := b.sendmmsg(&b.msgs[i], n)
		switch {
		case e == 0 && r > 0:
			for j := i; j < i+r; j++ {
				c, n := 1, int(b.iovs[j].Len)
				if b.gso != nil && b.gso.segn[j] != 0 {
					c, n = int(b.gso.segn[j]), int(b.gso.bytes[j])
					gsoMsgs++
				}
				pkts += c
				bytes += n
				if o := b.owners[j]; o != nil {
					o.OutTotal(c, n)
				}
			}
			i += r
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			for j := i; j < b.n; j++ {
				b.drop(j, stats.DropSendBusy)
			}
			i = b.n
		default: // the error belongs to message i (or r == 0: no progress)
			if b.gso != nil && b.gso.segn[i] != 0 && gsoError(e) {
				b.fallback(i)
			} else {
				b.drop(i, stats.DropSendError)
			}
			i++
		}
	}
	b.total.OutTotal(pkts, bytes)
	if gsoMsgs > 0 {
		b.total.GSOSent(gsoMsgs)
	}
	for j := 0; j < b.n; j++ {
		b.owners[j] = nil
	}
	b.n = 0
}

// drop counts message i as dropped for reason r: every copy of a
// super-packet.
func (b *Batch) drop(i int, r stats.DropReason) {
	c := 1
	if b.gso != nil && b.gso.segn[i] != 0 {
		c = int(b.gso.segn[i])
	}
	for range c {
		b.dropOne(b.owners[i], r)
	}
}

func (b *Batch) dropOne(owner *stats.Live, r stats.DropReason) {
	b.total.Drop(r)
	if owner != nil {
		owner.Drop(r)
	}
}
