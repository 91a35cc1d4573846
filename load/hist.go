package load

import (
	"math"
	"math/bits"
	"time"
)

// Hist is a log-linear histogram of durations (HDR-style): values below
// 1 µs fall in bucket 0; above that each power of two is split into
// histSub linear sub-buckets, so a percentile read from it is within
// 1/histSub (3 %) of the true value, from 1 µs to 2^histOctaves µs
// (about 18 minutes). Add costs a few instructions and never allocates.
// Not safe for concurrent use; merge per-goroutine copies with Merge.
type Hist struct {
	b     [histBuckets]uint64
	n     uint64
	sumNS float64
	max   time.Duration
}

const (
	// histSub sub-buckets per octave: 32 keeps the relative error of a
	// percentile at about 3 %, plenty for delays and join times.
	histSub     = 32
	histSubBits = 5
	// histOctaves covers 1 µs .. 2^30 µs.
	histOctaves = 30
	histBuckets = 1 + histOctaves*histSub
)

func histIndex(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if d <= 0 || us == 0 {
		return 0
	}
	oct := bits.Len64(us) - 1 // us in [2^oct, 2^(oct+1))
	if oct >= histOctaves {
		return histBuckets - 1
	}
	var sub uint64
	if oct >= histSubBits {
		sub = (us >> (oct - histSubBits)) & (histSub - 1)
	} else {
		sub = (us << (histSubBits - oct)) & (histSub - 1)
	}
	return 1 + oct*histSub + int(sub)
}

// histUpper is the upper bound of bucket i.
func histUpper(i int) time.Duration {
	if i == 0 {
		return time.Microsecond
	}
	i--
	oct, sub := i/histSub, i%histSub
	lo := math.Ldexp(1, oct) * (1 + float64(sub)/histSub)
	w := math.Ldexp(1, oct) / histSub
	return time.Duration((lo + w) * float64(time.Microsecond))
}

// Add records d (negative values count as 0).
func (h *Hist) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.b[histIndex(d)]++
	h.n++
	h.sumNS += float64(d)
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	for i, v := range o.b {
		h.b[i] += v
	}
	h.n += o.n
	h.sumNS += o.sumNS
	h.max = max(h.max, o.max)
}

// Count returns the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Quantile returns the upper bound of the bucket holding quantile q
// (0..1), capped at the largest sample; 0 without samples.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var c uint64
	for i, v := range h.b {
		c += v
		if c >= rank {
			return min(histUpper(i), h.max)
		}
	}
	return h.max
}

// Mean returns the mean sample.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sumNS / float64(h.n))
}

// Percentiles is a summary of a distribution, in milliseconds (JSON).
type Percentiles struct {
	N    uint64  `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary returns h's percentiles.
func (h *Hist) Summary() Percentiles {
	return Percentiles{N: h.n, Mean: ms(h.Mean()), P50: ms(h.Quantile(.5)), P90: ms(h.Quantile(.9)), P99: ms(h.Quantile(.99)),
		P999: ms(h.Quantile(.999)), Max: ms(h.max)}
}

// CDF returns (value, cumulative fraction) points of h, one per non-empty
// bucket.
func (h *Hist) CDF() (xs []time.Duration, ys []float64) {
	var c uint64
	for i, v := range h.b {
		if v == 0 {
			continue
		}
		c += v
		xs = append(xs, min(histUpper(i), h.max))
		ys = append(ys, float64(c)/float64(h.n))
	}
	return xs, ys
}
