package egress

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// segSpace is CMSG_SPACE(sizeof(uint16)), the room of one UDP_SEGMENT
// control message (the gso_size).
var segSpace = unix.CmsgSpace(2)

// gsoCtlSpace is the room of a super-packet's control data: the DSCP mark,
// an IPV6_PKTINFO and the UDP_SEGMENT size, in that order (the segment size
// last, so that a fallback sends the same control data without it).
var gsoCtlSpace = ctlSpace + segSpace

// Segs describes the datagrams of a read batch that runs point at: entry i
// is one caller-owned packet buffer. A super-packet's payload must reach
// the kernel as one contiguous datagram, which it can get two ways: as
// several iovecs over the packets' own buffers (the kernel gathers them
// while it copies the payload into its buffer, as it does anyway), or from
// a staging copy of the run in one buffer (Stage), made once per run and
// shared by every destination. Staging measured 2-5 % cheaper per
// super-packet on the sending thread, copy included, at 8 × 1200 bytes to
// 10 destinations (BenchmarkGSOGather): the kernel imports and walks one
// iovec per message instead of eight. A Segs and the buffers must stay
// unchanged until the Batches that queued runs of it have flushed. Not
// safe for concurrent use.
type Segs struct {
	iovs  []unix.Iovec
	stage []byte       // staging buffer
	used  int          // bytes of stage in use
	runs  []unix.Iovec // staged runs, each one iovec over stage
}

// NewSegs returns a Segs of n entries whose staging buffer holds
// stageBytes bytes (n × the largest packet stages every run of a batch).
func NewSegs(n, stageBytes int) *Segs {
	return &Segs{iovs: make([]unix.Iovec, n), stage: make([]byte, stageBytes), runs: make([]unix.Iovec, 0, n)}
}

// Reset forgets the staged runs (at the start of a batch, once the
// Batches have flushed).
func (s *Segs) Reset() {
	s.used = 0
	s.runs = s.runs[:0]
}

// Stage copies r's packets into the staging buffer, one after the other,
// and marks r to be sent from there. It leaves r as it is when the buffer
// is full.
func (s *Segs) Stage(r *Run) {
	if r.staged != 0 || s.used+r.Bytes > len(s.stage) || len(s.runs) == cap(s.runs) {
		return
	}
	start := s.used
	for j := r.First; j < r.First+r.N; j++ {
		s.used += copy(s.stage[s.used:], s.Packet(j))
	}
	s.runs = append(s.runs, unix.Iovec{Base: &s.stage[start]})
	s.runs[len(s.runs)-1].SetLen(r.Bytes)
	r.staged = len(s.runs)
}

// Set makes entry i point at pkt.
func (s *Segs) Set(i int, pkt []byte) {
	s.iovs[i].Base = unsafe.SliceData(pkt)
	s.iovs[i].SetLen(len(pkt))
}

// Packet returns entry i.
func (s *Segs) Packet(i int) []byte {
	return unsafe.Slice(s.iovs[i].Base, int(s.iovs[i].Len))
}

// gsoState is a Batch's UDP GSO state, made by EnableGSO.
type gsoState struct {
	ctl   []byte // per message: mark + pktinfo + segment size
	segn  []uint16
	size  []uint16
	bytes []int32
	dsts  []*Addr
	// fb and fbIov are the scratch of a fallback: one message per datagram
	// of the failed super-packet.
	fb    [MaxSegments]unix.Mmsghdr
	fbIov [MaxSegments]unix.Iovec
}

// EnableGSO makes the Batch send runs (AddRun) as UDP GSO super-packets when
// the kernel supports UDP_SEGMENT on its socket (probed with getsockopt:
// Linux 4.18 or later), and reports whether it does. Without it AddRun
// queues one message per datagram and counts the run in GSOFallbacks. Call
// it before the first Add.
func (b *Batch) EnableGSO() bool {
	if _, err := unix.GetsockoptInt(b.fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT); err != nil {
		return false
	}
	n := len(b.msgs)
	b.gso = &gsoState{
		ctl:   make([]byte, n*gsoCtlSpace),
		segn:  make([]uint16, n),
		size:  make([]uint16, n),
		bytes: make([]int32, n),
		dsts:  make([]*Addr, n),
	}
	return true
}

// GSO reports whether the Batch sends runs as super-packets.
func (b *Batch) GSO() bool { return b.gso != nil }

// AddRun queues run r of s for dst, marked for kind k, as one super-packet
// (or, without GSO for this Batch or dst, as r.N messages), and charges
// r.N copies to owner (may be nil). It flushes first when the batch is
// full.
func (b *Batch) AddRun(s *Segs, r Run, dst *Addr, k media.Kind, owner *stats.Live) {
	g := b.gso
	if g == nil || dst.noGSO.Load() {
		for j := r.First; j < r.First+r.N; j++ {
			b.Add(s.Packet(j), dst, k, owner)
		}
		b.total.GSOFallback()
		return
	}
	if b.n == len(b.msgs) {
		b.Flush()
	}
	i := b.n
	b.n++
	h := &b.msgs[i].Hdr
	if r.staged != 0 {
		h.Iov = &s.runs[r.staged-1]
		h.SetIovlen(1)
	} else {
		h.Iov = &s.iovs[r.First]
		h.SetIovlen(r.N)
	}
	h.Name = dst.raw.ptr()
	h.Namelen = dst.raw.len
	c := g.ctl[i*gsoCtlSpace : (i+1)*gsoCtlSpace]
	m := copy(c, b.cmsgs[k.Index()])
	m += copy(c[m:], dst.pktinfo)
	sh := (*unix.Cmsghdr)(unsafe.Pointer(&c[m]))
	sh.Level, sh.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	sh.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&c[m+unix.CmsgLen(0)])) = uint16(r.Size)
	h.Control = &c[0]
	h.SetControllen(m + segSpace)
	b.owners[i] = owner
	g.segn[i] = uint16(r.N)
	g.size[i] = uint16(r.Size)
	g.bytes[i] = int32(r.Bytes)
	g.dsts[i] = dst
}

// gsoError reports whether e, returned for a super-packet, says that GSO
// cannot be used for its destination, and the datagrams should be sent one
// by one: EIO (the device has no checksum offload, or the route goes
// through IPsec), EINVAL (segment larger than the path MTU allows), EMSGSIZE,
// EOPNOTSUPP, ENOPROTOOPT.
func gsoError(e unix.Errno) bool {
	switch e {
	case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.EOPNOTSUPP, unix.ENOPROTOOPT:
		return true
	}
	return false
}

// fallback sends super-packet i, which the kernel refused with a GSO error,
// as one datagram per segment with the same destination and control data
// (less the segment size), counts it in GSOFallbacks and turns GSO off for
// its destination: what failed is a property of the route (device, MTU,
// IPsec), and a rebind makes a new Addr.
func (b *Batch) fallback(i int) {
	g := b.gso
	h := &b.msgs[i].Hdr
	n := int(g.segn[i])
	iovs := g.fbIov[:n]
	if int(h.Iovlen) == n { // one iovec per datagram
		copy(iovs, unsafe.Slice(h.Iov, n))
	} else { // staged: one iovec over the whole run, cut by segment size
		base, size, left := unsafe.Pointer(h.Iov.Base), int(g.size[i]), int(g.bytes[i])
		for j := range iovs {
			iovs[j].Base = (*byte)(unsafe.Add(base, j*size))
			iovs[j].SetLen(min(size, left))
			left -= size
		}
	}
	g.dsts[i].noGSO.Store(true)
	b.total.GSOFallback()
	var ctl *byte
	cl := int(h.Controllen) - segSpace
	if cl > 0 {
		ctl = h.Control
	}
	for j := range n {
		f := &g.fb[j].Hdr
		f.Name, f.Namelen = h.Name, h.Namelen
		f.Iov, f.Iovlen = &iovs[j], 1
		f.Control = ctl
		f.SetControllen(max(cl, 0))
	}
	owner := b.owners[i]
	for j := 0; j < n; {
		r, e := b.sendmmsg(&g.fb[j], n-j)
		switch {
		case e == 0 && r > 0:
			for k := j; k < j+r; k++ {
				l := int(iovs[k].Len)
				b.total.Out(1, l)
				if owner != nil {
					owner.Out(1, l)
				}
			}
			j += r
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			for ; j < n; j++ {
				b.dropOne(owner, stats.DropSendBusy)
			}
		default:
			b.dropOne(owner, stats.DropSendError)
			j++
		}
	}
}
