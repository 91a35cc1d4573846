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
	light := func(impl string, subs int) scenario {
		return scenario{impl: impl, subs: subs, size: 200, latency: true}
	}
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
	// Light load over the bar's range (1 -> 1 and 1 -> 5, 1,000 to 20,000
	// packets/s) against the C floor; mmr-nocoalesce (every packet wakes
	// the reader) shows what coalescing saves and what the per-packet
	// path costs; at 1,000 and 5,000 packets/s, the Go floors (floor-held:
	// what any Go loop woken by every packet pays) and the netpoller read
	// mode against the C floor.
	lightPair := func(a, b string, rate, subs int) pair {
		return pair{
			fmt.Sprintf("light/%s-vs-%s/rate=%d/subs=%d", a, b, rate, subs),
			light(a, subs), light(b, subs), paced(time.Second / time.Duration(rate)), lightSliceFor(rate),
		}
	}
	for _, rate := range lightRates {
		for _, subs := range []int{1, 5} {
			pairs = append(pairs, lightPair(implMMR, implCFloor, rate, subs))
		}
		if rate != 2000 {
			pairs = append(pairs, lightPair(implMMRNoCoalesce, implCFloor, rate, 1))
		}
	}
	for _, rate := range []int{1000, lightRate} {
		pairs = append(pairs, lightPair(implFloor, implCFloor, rate, 1), lightPair(implFloorHeld, implCFloor, rate, 1), lightPair(implMMRPoll, implCFloor, rate, 1))
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

// lightRates are the packet rates of BenchmarkRatio's light rows: the
// bar's range, 1,000–20,000 packets/s, with 2,000 just below where the
// router starts to coalesce (router.DefaultCoalesce: two packets per
// 500 µs).
var lightRates = []int{1000, 2000, lightRate, 20000}

// lightSliceFor returns the light rows' packets per alternating slice at
// rate packets/s: 50 ms of traffic, and at least 250 packets. Each side
// idles while the other runs its slice, and a Go forwarder pays to resume
// after an idle gap (the runtime's sysmon restarts its 20 µs polling after
// it retook a P) what a C loop does not; a continuous stream never pays it.
// 50 packets at 1,000 packets/s made that a measurable part of each slice
// (ratios 1.6–2.0 against 1.3–1.5 with 250-packet slices, in paired runs
// of the same build), so the slowest rate gets 250 ms slices.
func lightSliceFor(rate int) int { return max(250, rate/20) }

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
