package zcagent

import (
	"math"
	"runtime"
	"slices"
	"time"

	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/zone/proto"
)

// Meeting is one meeting the MMR hosts and its participant count there.
type Meeting = proto.Hosted

// Load is what a LoadSource reports: instantaneous counts and cumulative
// traffic counters (the agent derives per-second rates from successive
// samples). A plain value; the agent copies what it keeps.
type Load struct {
	Participants int
	Meetings     int
	// Hosted lists the meetings the MMR hosts. The ZCs use it to keep an
	// existing meeting on its MMR across ZC restarts and HA disagreements;
	// nil means "not tracked" (the ZCs then rely on their own placements).
	// Invalid or duplicate IDs are dropped.
	Hosted []Meeting
	// Traffic is cumulative since the MMR started (router.Stats().Counters).
	Traffic stats.Counters
	// NotAccepting reports that a listener of the MMR (the TLS port, TCP
	// media) is not taking connections; the ZCs then place no new meeting
	// here (proto.Report.NotAccepting).
	NotAccepting bool
}

// LoadSource gives the MMR's current load. Load is called from the agent's
// goroutine, once per interval and after each Update: it must be safe for
// concurrent use with the MMR's own goroutines and return quickly.
type LoadSource interface {
	Load() Load
}

// LoadFunc adapts a function to LoadSource.
type LoadFunc func() Load

// Load calls f.
func (f LoadFunc) Load() Load { return f() }

// snapshot is one sampled report, shared read-only by the sessions.
type snapshot struct {
	rep     proto.Report   // Seq and Hosted unset: per session
	hosted  []proto.Hosted // nil when the source does not track meetings
	version uint64         // changes whenever hosted changes
}

// sampler turns Loads into snapshots. Used by one goroutine at a time.
type sampler struct {
	src     LoadSource
	cpuFn   func() float64
	cpu     cpuMeter
	prev    stats.Counters
	prevAt  time.Time
	rates   [4]uint64 // pps in, pps out, bps in, bps out
	cpuFrac float64
	hosted  []proto.Hosted
	version uint64
}

// sample reads the source. With full it also recomputes rates and CPU over
// the time since the last full sample; otherwise (an Update between ticks)
// it keeps the last rates, which are meaningless over a few milliseconds.
func (s *sampler) sample(now time.Time, full, draining bool) *snapshot {
	l := s.src.Load()
	if full {
		if d := now.Sub(s.prevAt).Seconds(); !s.prevAt.IsZero() && d > 0 {
			per := func(cur, prev uint64, scale float64) uint64 {
				if cur < prev { // counters reset: no rate this time
					return 0
				}
				return uint64(float64(cur-prev) * scale / d)
			}
			s.rates = [4]uint64{
				per(l.Traffic.PacketsIn, s.prev.PacketsIn, 1), per(l.Traffic.PacketsOut, s.prev.PacketsOut, 1),
				per(l.Traffic.BytesIn, s.prev.BytesIn, 8), per(l.Traffic.BytesOut, s.prev.BytesOut, 8),
			}
		}
		s.prev, s.prevAt = l.Traffic, now
		if s.cpuFn != nil {
			s.cpuFrac = s.cpuFn()
		} else {
			s.cpuFrac = s.cpu.sample(now)
		}
		if !(s.cpuFrac >= 0) { // NaN or negative
			s.cpuFrac = 0
		}
		s.cpuFrac = min(s.cpuFrac, 1)
	}
	if l.Hosted != nil {
		h := cleanHosted(l.Hosted)
		if s.hosted == nil || !slices.Equal(h, s.hosted) {
			s.hosted = h
			s.version++
		}
	}
	return &snapshot{
		rep: proto.Report{
			Participants: max(l.Participants, 0), Meetings: max(l.Meetings, 0),
			PacketsIn: s.rates[0], PacketsOut: s.rates[1], BitsIn: s.rates[2], BitsOut: s.rates[3],
			CPU: math.Round(s.cpuFrac*1e4) / 1e4, Draining: draining, NotAccepting: l.NotAccepting,
		},
		hosted: s.hosted, version: s.version,
	}
}

// cleanHosted returns a copy of h without invalid or repeated IDs, negative
// counts, or entries past proto.MaxHosted, so the ZC never refuses a report
// for what the source handed in.
func cleanHosted(h []proto.Hosted) []proto.Hosted {
	out := make([]proto.Hosted, 0, min(len(h), proto.MaxHosted))
	seen := make(map[string]struct{}, len(h))
	for _, m := range h {
		if len(out) == proto.MaxHosted {
			break
		}
		if proto.CheckID("meeting", m.ID) != nil {
			continue
		}
		if _, dup := seen[m.ID]; dup {
			continue
		}
		seen[m.ID] = struct{}{}
		out = append(out, proto.Hosted{ID: m.ID, Participants: max(m.Participants, 0)})
	}
	return out
}

// cpuMeter measures the process's CPU use between samples.
type cpuMeter struct {
	prevCPU  time.Duration
	prevWall time.Time
}

// sample returns the process CPU time since the previous sample as a
// fraction of the machine (wall time × NumCPU); 0 on the first sample or
// where process CPU time is unavailable.
func (m *cpuMeter) sample(now time.Time) float64 {
	cur, ok := processCPU()
	if !ok {
		return 0
	}
	defer func() { m.prevCPU, m.prevWall = cur, now }()
	wall := now.Sub(m.prevWall)
	if m.prevWall.IsZero() || wall <= 0 {
		return 0
	}
	return float64(cur-m.prevCPU) / (float64(wall) * float64(runtime.NumCPU()))
}
