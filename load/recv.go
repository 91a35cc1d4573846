package load

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/media"
)

// seqWindow is how far back (in sequence numbers) duplicates are
// recognised: 1,024 packets is 20 s of audio and ~10 s of video, far more
// than any reordering the router can cause.
const seqWindow = 1024

// streamRx is what one receiver knows of one published stream (an SSRC):
// RFC 3550 §A.1 sequence tracking with a duplicate bitmap, and the §6.4.1
// interarrival jitter computed from the sender's send stamps (the same
// clock on loopback) instead of RTP timestamps, so frames of several
// packets do not count as jitter.
type streamRx struct {
	started     bool
	maxExt      int64 // highest extended sequence number
	seen        [seqWindow / 64]uint64
	received    uint64 // every packet, also outside the window
	dups        uint64
	reordered   uint64
	jitterNS    float64
	lastTransit int64
}

// add records sequence number seq; it reports false for a duplicate.
func (s *streamRx) add(seq uint16, transit int64) bool {
	if !s.started {
		s.started = true
		s.maxExt = int64(seq)
		s.mark(s.maxExt)
		s.received++
		s.lastTransit = transit
		return true
	}
	// The extended sequence number closest to maxExt.
	ext := s.maxExt + int64(int16(seq-uint16(s.maxExt)))
	switch {
	case ext > s.maxExt:
		for e := s.maxExt + 1; e < ext && e <= s.maxExt+seqWindow; e++ {
			s.clear(e)
		}
		if ext-s.maxExt > seqWindow {
			s.seen = [seqWindow / 64]uint64{}
		}
		s.maxExt = ext
	case ext <= s.maxExt-seqWindow:
		s.reordered++ // too old to tell; counted as late, not as a duplicate
		s.received++
		return true
	default:
		if s.isSet(ext) {
			s.dups++
			return false
		}
		s.reordered++
	}
	s.mark(ext)
	s.received++
	d := transit - s.lastTransit
	if d < 0 {
		d = -d
	}
	s.jitterNS += (float64(d) - s.jitterNS) / 16
	s.lastTransit = transit
	return true
}

func (s *streamRx) mark(e int64)  { i := uint64(e) % seqWindow; s.seen[i/64] |= 1 << (i % 64) }
func (s *streamRx) clear(e int64) { i := uint64(e) % seqWindow; s.seen[i/64] &^= 1 << (i % 64) }
func (s *streamRx) isSet(e int64) bool {
	i := uint64(e) % seqWindow
	return s.seen[i/64]&(1<<(i%64)) != 0
}

// coarseHist is a small log histogram (4 buckets per octave from 1 µs) for
// the per-second series, where 480 bytes a second and kind must do.
type coarseHist [1 + 30*4]uint32

func (h *coarseHist) add(d time.Duration) {
	us := uint64(d / time.Microsecond)
	if d <= 0 || us == 0 {
		h[0]++
		return
	}
	oct := bits.Len64(us) - 1
	if oct >= 30 {
		h[len(h)-1]++
		return
	}
	var sub uint64
	if oct >= 2 {
		sub = (us >> (oct - 2)) & 3
	} else {
		sub = (us << (2 - oct)) & 3
	}
	h[1+oct*4+int(sub)]++
}

func (h *coarseHist) quantile(q float64, n uint64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999)
	var c uint64
	for i, v := range h {
		c += uint64(v)
		if c >= rank {
			if i == 0 {
				return time.Microsecond
			}
			oct, sub := (i-1)/4, (i-1)%4
			lo := float64(uint64(1)<<oct) * (1 + float64(sub+1)/4)
			return time.Duration(lo * float64(time.Microsecond))
		}
	}
	return 0
}

// second is one second of the measurement window, by send time.
type second struct {
	rx    [media.NumKinds]uint64
	delay [media.NumKinds]coarseHist
}

// agg aggregates what a group of endpoints received: one per UDP reader
// goroutine (locked once per recvmmsg batch) and one shared by stream
// transports (locked per packet). Counters read live are atomics.
type agg struct {
	mu     sync.Mutex
	win    *window
	delay  [media.NumKinds]Hist // in-window packets only
	inWin  [media.NumKinds]uint64
	series []second

	rxLive  [media.NumKinds]atomic.Uint64 // every RTP packet, for the live display
	winLive atomic.Uint64                 // in-window packets, for the live loss
}

// window is the measurement window: packets stamped in [t0, t1) count.
type window struct{ t0, t1 atomic.Int64 }

func (w *window) in(sent int64) (sec int, ok bool) {
	t0, t1 := w.t0.Load(), w.t1.Load()
	if t0 == 0 || sent < t0 || sent >= t1 {
		return 0, false
	}
	return int((sent - t0) / int64(time.Second)), true
}

// onRTP records one RTP packet for endpoint e at receive time now (Unix
// nanoseconds). The caller holds a.mu; e.mu is taken inside.
func (a *agg) onRTP(e *endpoint, pkt []byte, now int64) {
	ssrc, seq, sent, ok := parseRTP(pkt)
	if !ok {
		e.other.Add(1)
		return
	}
	e.rtp.Add(1)
	a.rxLive[e.kind.Index()].Add(1)
	transit := now - sent
	e.mu.Lock()
	s := e.streams[ssrc]
	if s == nil {
		if e.streams == nil {
			e.streams = map[uint32]*streamRx{}
		}
		s = &streamRx{}
		e.streams[ssrc] = s
	}
	fresh := s.add(seq, transit)
	e.mu.Unlock()
	if !fresh {
		return
	}
	sec, in := a.win.in(sent)
	if !in {
		return
	}
	k := e.kind.Index()
	a.inWin[k]++
	a.winLive.Add(1)
	e.inWin.Add(1)
	d := time.Duration(transit)
	a.delay[k].Add(d)
	for len(a.series) <= sec {
		a.series = append(a.series, second{})
	}
	a.series[sec].rx[k]++
	a.series[sec].delay[k].add(d)
}
