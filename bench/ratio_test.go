package bench

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRatio measures the ratios the bars are stated in, with paired,
// interleaved rounds: the two sides of a ratio each have their own rig and
// child, and the b.N packets are sent in slices that alternate between them
// (A B, B A, A B, ...), so that background load on the shared machine
// weighs on both sides alike. Separate sub-benchmarks of BenchmarkFanout
// run seconds apart and their ratio moves by ±30 % on a busy 2-core VM; the
// paired ratio is far steadier (see the A/A row floor-vs-floor). Metrics: ns/pkt and base-ns/pkt (each
// side's ns/pkt, as in BenchmarkFanout), ratio (ns/pkt / base-ns/pkt),
// allocs/pkt (the first side's), loss% (the worse side's).
func BenchmarkRatio(b *testing.B) {
	fanout := func(impl string, size int) scenario {
		return scenario{impl: impl, subs: 50, size: size}
	}
	light := func(impl string) scenario { return scenario{impl: impl, subs: 1, size: 200, latency: true} }
	meetings := func(idle int) scenario {
		return scenario{impl: implMMR, subs: 10, size: 200, idleMeetings: idle, idleParticipants: 5}
	}
	type pair struct {
		name  string
		a, b  scenario
		drive driver
		slice int // packets per alternating slice
	}
	// floor-vs-floor is the A/A calibration: its ratio is 1 but for noise,
	// and shows how far the others can be trusted.
	pairs := []pair{{
		"fanout/floor-vs-floor/subs=50/size=200",
		fanout(implFloor, 200), fanout(implFloor, 200), closedLoop(windowFor(50)), sliceFor(50),
	}}
	// The closed loop's bursts are 32 packets of one size, so mmr (GSO on,
	// the default) sends super-packets here too: mmr-nogso-vs-cfloor is
	// the per-copy path against the plain floor, mmr-vs-cfloor-gso GSO
	// against GSO.
	for _, vs := range [][2]string{{implMMR, implCFloor}, {implMMRNoGSO, implCFloor}, {implMMR, implCFloorGSO}, {implFloor, implCFloor}, {implMMR, implFloor}, {implMMR, implNaive}, {implMMRPoll, implFloor}} {
		for _, size := range []int{200, 1200} {
			pairs = append(pairs, pair{
				fmt.Sprintf("fanout/%s-vs-%s/subs=50/size=%d", vs[0], vs[1], size),
				fanout(vs[0], size), fanout(vs[1], size), closedLoop(windowFor(50)), sliceFor(50),
			})
		}
	}
	// Media protection changes nothing for the router: SRTP traffic (sealed
	// by the publisher as clients do) against the same plain traffic, and
	// the router's per-copy path (no GSO) against the floor forwarding the
	// same SRTP traffic (the media-plane bar, mmr/floor <= 1.15).
	for _, size := range []int{200, 1200} {
		srtp := func(impl string) scenario { sc := fanout(impl, size); sc.srtp = true; return sc }
		pairs = append(pairs,
			pair{fmt.Sprintf("fanout/mmr-srtp-vs-mmr/subs=50/size=%d", size), srtp(implMMR), fanout(implMMR, size), closedLoop(windowFor(50)), sliceFor(50)},
			pair{fmt.Sprintf("fanout/mmr-nogso-srtp-vs-floor-srtp/subs=50/size=%d", size), srtp(implMMRNoGSO), srtp(implFloor), closedLoop(windowFor(50)), sliceFor(50)})
	}
	for _, vs := range [][2]string{{implMMR, implCFloor}, {implFloor, implCFloor}, {implMMR, implFloor}, {implMMRPoll, implFloor}} {
		pairs = append(pairs, pair{
			fmt.Sprintf("light/%s-vs-%s", vs[0], vs[1]),
			light(vs[0]), light(vs[1]), paced(time.Second / lightRate), lightSlice,
		})
	}
	for _, vs := range videoPairs() {
		v := func(impl string) scenario { return scenario{impl: impl, subs: 50, size: 1200, video: true} }
		pairs = append(pairs, pair{
			fmt.Sprintf("video/%s-vs-%s/subs=50/size=1200", vs[0], vs[1]),
			v(vs[0]), v(vs[1]), closedLoop(windowFor(50)), sliceFor(50),
		})
	}
	pairs = append(pairs, pair{
		"meetings/10000-vs-1", meetings(10000), meetings(0), closedLoop(windowFor(10)), sliceFor(10),
	})
	for _, p := range pairs {
		runPaired(b, p.name, p.a, p.b, p.drive, p.slice)
	}
}

// sliceFor returns the closed loop's packets per alternating slice for subs
// subscribers: about 20,000 copies, some 30 ms of forwarding here, short
// enough for many alternations per second yet long enough that the two
// usage requests around a slice (about 100 µs) do not matter.
func sliceFor(subs int) int { return max(50, 20000/subs) }

// lightSlice is RelayLight's slice: 250 packets, 50 ms at lightRate.
const lightSlice = 250

// runPaired runs sub-benchmark name: rigs for sa and sb, started on the first
// round and kept for all rounds, b.N packets sent to each in alternating
// slices.
func runPaired(b *testing.B, name string, sa, sb scenario, drive driver, slice int) {
	var rigs [2]*rig
	defer func() {
		for _, r := range rigs {
			if r != nil {
				if err := r.close(); err != nil {
					b.Error(err)
				}
			}
		}
	}()
	b.Run(name, func(b *testing.B) {
		for i, sc := range [2]scenario{sa, sb} {
			if why := implSkip(sc.impl); why != "" {
				b.Skip(why)
			}
			if rigs[i] == nil {
				r, err := newRig(sc)
				if err != nil {
					b.Fatal(err)
				}
				rigs[i] = r
			}
		}
		var res [2]result
		var use [2]usage
		b.ReportAllocs()
		b.ResetTimer()
		for done, turn := 0, 0; done < b.N; turn++ {
			k := min(slice, b.N-done)
			for j := range 2 {
				i := (turn + j) % 2 // alternate which side goes first
				r, u, err := measureRound(rigs[i], k, drive)
				if err != nil {
					b.Fatal(err)
				}
				res[i].add(r)
				use[i] = use[i].add(u)
			}
			done += k
		}
		b.StopTimer()
		for i := range res {
			if res[i].delivered == 0 {
				b.Fatalf("side %d: no copy delivered: %+v", i, res[i])
			}
		}
		a := float64(use[0].CPUNanos) / float64(res[0].delivered)
		base := float64(use[1].CPUNanos) / float64(res[1].delivered)
		b.ReportMetric(a, "ns/pkt")
		b.ReportMetric(base, "base-ns/pkt")
		b.ReportMetric(a/base, "ratio")
		b.ReportMetric(float64(use[0].Mallocs)/float64(res[0].packets), "allocs/pkt")
		b.ReportMetric(float64(use[0].Mallocs)/float64(res[0].packets), "allocs/op")
		b.ReportMetric(float64(use[0].AllocBytes)/float64(res[0].packets), "B/op")
		b.ReportMetric(max(res[0].lossPercent(), res[1].lossPercent()), "loss%")
		if rigs[0].lat != nil && rigs[1].lat != nil {
			da, db := rigs[0].lat.take(), rigs[1].lat.take()
			b.ReportMetric(percentile(da, 50), "delay-p50-us")
			b.ReportMetric(percentile(da, 99), "delay-p99-us")
			b.ReportMetric(percentile(db, 50), "base-delay-p50-us")
			b.ReportMetric(percentile(db, 99), "base-delay-p99-us")
		}
	})
}
