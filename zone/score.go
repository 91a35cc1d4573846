package zone

import (
	"math"

	"github.com/cespare/xxhash/v2"
	"github.com/openmmr/mmr/zone/proto"
)

// Placement rule (docs/zone-protocol.md, "Placement"). Everything here is a
// pure function of an MMR's Register and latest Report and of the meeting
// ID, so two ZCs holding the same reports compute the same placement.

// loadScore is an MMR's load: the largest fraction of any capacity dimension
// it declared (participants, meetings, bits in, bits out, CPU); dimensions
// with zero capacity are ignored. 0 is idle, 1 or more is full.
func loadScore(c proto.Capacity, r *proto.Report) float64 {
	l := 0.0
	use := func(used, limit float64) {
		if limit > 0 {
			l = max(l, used/limit)
		}
	}
	use(float64(r.Participants), float64(c.Participants))
	use(float64(r.Meetings), float64(c.Meetings))
	use(float64(r.BitsIn), float64(c.BitsIn))
	use(float64(r.BitsOut), float64(c.BitsOut))
	use(r.CPU, c.CPU)
	return l
}

// weightOf turns a load below 1 into a placement weight. Squaring the
// headroom favours idle MMRs more than proportionally (an MMR at 50 % load
// gets a quarter of the new meetings an idle one gets) while still spreading
// a burst of new meetings over every MMR with room, instead of sending the
// whole burst to the one that looked least loaded at the last report.
func weightOf(load float64) float64 {
	h := 1 - load
	return h * h
}

// meetingHash is the first hash of rendezvous hashing: xxhash64 of the
// meeting ID, computed once per selection.
func meetingHash(meeting string) uint64 { return xxhash.Sum64String(meeting) }

// mmrSeed is the per-MMR hash: xxhash64 of the MMR ID, computed once at
// registration.
func mmrSeed(id string) uint64 { return xxhash.Sum64String(id) }

// mix is the splitmix64 finalizer (Steele, Lea, Flood 2014): a bijective
// avalanche of meetingHash ^ mmrSeed, so every (meeting, MMR) pair gets an
// independent uniform 64-bit value.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// hrwScore is weighted rendezvous hashing (Schindelhauer and Schomaker,
// "Weighted distributed hash tables", 2005): with h uniform in (0,1), the
// MMR maximising weight / -ln(h) is chosen with probability weight / Σweight,
// and removing an MMR moves only the meetings it would have hosted.
func hrwScore(weight float64, pairHash uint64) float64 {
	u := (float64(pairHash>>11) + 0.5) * 0x1p-53 // 53 random bits, strictly inside (0,1)
	return weight / -math.Log(u)
}
