package main

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/openmmr/mmr/media"
)

// rxStats checks the RTP a kind receives: per SSRC, sequence numbers
// (extended as RFC 3550 Appendix A.1 does, so wrap-around is not loss) give
// the packets expected and lost; the interarrival jitter is RFC 3550
// §6.4.1's, at the kind's clock rate. Safe for concurrent use.
type rxStats struct {
	clock float64
	mu    sync.Mutex
	srcs  map[uint32]*source
}

type source struct {
	base, max   uint32 // extended sequence numbers
	cycles      uint32
	received    uint64
	dup, late   uint64
	transit     float64
	jitter      float64 // in RTP timestamp units
	seen        bool
	lastArrival time.Time
	maxGap      time.Duration
}

func newRxStats(k media.Kind) *rxStats {
	return &rxStats{clock: float64(profiles[k].Clock), srcs: map[uint32]*source{}}
}

// add records one packet (RTCP and short packets are ignored).
func (r *rxStats) add(pkt []byte, now time.Time) {
	if len(pkt) < rtpHeader || pkt[0]>>6 != 2 || (pkt[1] >= 200 && pkt[1] <= 207) {
		return
	}
	seq := binary.BigEndian.Uint16(pkt[2:])
	ts := binary.BigEndian.Uint32(pkt[4:])
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.srcs[ssrc]
	if s == nil {
		s = &source{}
		r.srcs[ssrc] = s
	}
	arrival := float64(now.UnixNano()) / 1e9 * r.clock
	if !s.seen {
		s.seen, s.base, s.max = true, uint32(seq), uint32(seq)
		s.received = 1
		s.transit = arrival - float64(ts)
		s.lastArrival = now
		return
	}
	if g := now.Sub(s.lastArrival); g > s.maxGap {
		s.maxGap = g
	}
	s.lastArrival = now
	ext := s.cycles | uint32(seq)
	maxSeq := uint16(s.max)
	switch d := seq - maxSeq; {
	case d == 0:
		s.dup++
		return
	case d < 0x8000: // ahead (possibly wrapped)
		if seq < maxSeq {
			s.cycles += 1 << 16
		}
		s.max = s.cycles | uint32(seq)
	default: // behind: reordered or late
		if uint32(seq) > uint32(maxSeq) { // from before a wrap
			ext -= 1 << 16
		}
		s.late++
		_ = ext
	}
	s.received++
	transit := arrival - float64(ts)
	d := transit - s.transit
	if d < 0 {
		d = -d
	}
	s.transit = transit
	s.jitter += (d - s.jitter) / 16
}

// rxSummary is what a kind received in all.
type rxSummary struct {
	Sources  int     `json:"sources"`
	Received uint64  `json:"received"`
	Expected uint64  `json:"expected"`
	Lost     int64   `json:"lost"`
	Loss     float64 `json:"loss"`
	JitterMS float64 `json:"jitter_ms"`
	MaxGapMS float64 `json:"max_gap_ms"`
}

func (r *rxStats) summary() rxSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out rxSummary
	for _, s := range r.srcs {
		out.Sources++
		exp := uint64(s.max-s.base) + 1
		out.Expected += exp
		out.Received += s.received
		if j := s.jitter / r.clock * 1000; j > out.JitterMS {
			out.JitterMS = j
		}
		if g := float64(s.maxGap) / 1e6; g > out.MaxGapMS {
			out.MaxGapMS = g
		}
	}
	out.Lost = int64(out.Expected) - int64(out.Received)
	if out.Expected > 0 && out.Lost > 0 {
		out.Loss = float64(out.Lost) / float64(out.Expected)
	}
	return out
}
