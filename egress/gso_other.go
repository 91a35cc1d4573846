//go:build !linux

package egress

import (
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// Segs describes the datagrams runs point at (see the Linux version).
type Segs struct{ pkts [][]byte }

// NewSegs returns a Segs of n entries.
func NewSegs(n, stageBytes int) *Segs { return &Segs{pkts: make([][]byte, n)} }

// Reset does nothing.
func (s *Segs) Reset() {}

// Stage does nothing.
func (s *Segs) Stage(r *Run) {}

// Set makes entry i point at pkt.
func (s *Segs) Set(i int, pkt []byte) { s.pkts[i] = pkt }

// Packet returns entry i.
func (s *Segs) Packet(i int) []byte { return s.pkts[i] }

// EnableGSO reports false: no UDP GSO off Linux.
func (b *Batch) EnableGSO() bool { return false }

// GSO reports false.
func (b *Batch) GSO() bool { return false }

// AddRun queues the run's datagrams one by one.
func (b *Batch) AddRun(s *Segs, r Run, dst *Addr, k media.Kind, owner *stats.Live) {
	for j := r.First; j < r.First+r.N; j++ {
		b.Add(s.Packet(j), dst, k, owner)
	}
}
