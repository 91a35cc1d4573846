package bench

import (
	"fmt"
	"testing"
	"time"
)

// benchImpls returns the forwarders every comparison runs, in report order.
func benchImpls() []string { return []string{implCFloor, implFloor, implMMR, implMMRPoll, implNaive} }

// implSkip returns why impl cannot run on this machine, or "" when it can:
// the floors need Linux, the C floor a C compiler too.
func implSkip(impl string) string {
	switch {
	case (impl == implFloor || impl == implFloorHeld) && !floorSupported:
		return "the floor forwarder needs Linux (recvmmsg/sendmmsg)"
	case isCFloor(impl):
		return cfloorSkip()
	}
	return ""
}

// fanoutImpls adds to BenchmarkFanout mmr-nodscp, to show what the DSCP
// control message costs per copy, and the router with stream subscribers
// (TCP, TLS, the web client's WebSockets and WebTransport sessions).
func fanoutImpls() []string {
	return append(benchImpls(), implMMRNoDSCP, implTCP, implTLS, implWS, implWT)
}

// fanoutSubs returns BenchmarkFanout's subscriber counts for impl: the
// stream impls run the two middle ones only (a meeting's worth of stream
// subscribers, and the bar's 50), which keeps the whole run short.
func fanoutSubs(impl string) []int {
	if isStreamImpl(impl) {
		return []int{10, 50}
	}
	return []int{1, 10, 50, 200}
}

// BenchmarkFanout measures the forwarding CPU cost of one publisher's
// packets copied to subs subscribers, closed loop (see closedLoop), for
// every implementation. ns/pkt is the child's CPU time per delivered copy.
func BenchmarkFanout(b *testing.B) {
	for _, impl := range fanoutImpls() {
		b.Run(impl, func(b *testing.B) {
			for _, subs := range fanoutSubs(impl) {
				b.Run(fmt.Sprintf("subs=%d", subs), func(b *testing.B) {
					for _, size := range []int{200, 1200} {
						sc := scenario{impl: impl, subs: subs, size: size}
						runBench(b, fmt.Sprintf("size=%d", size), sc, closedLoop(windowForScenario(sc)))
					}
				})
			}
		})
	}
}

// lightRate is BenchmarkRelayLight's packet rate: 5,000 packets per second,
// about one participant's video at a few Mbit/s, where each packet finds
// the forwarder asleep and the cost of waking up dominates.
const lightRate = 5000

// BenchmarkRelayLight measures one publisher relayed to one subscriber at
// lightRate, paced (see pace).
func BenchmarkRelayLight(b *testing.B) {
	for _, impl := range benchImpls() {
		runBench(b, impl, scenario{impl: impl, subs: 1, size: 200, latency: true}, paced(time.Second/lightRate))
	}
}

// BenchmarkMeetings measures mmr at subs=10, size=200 alone (meetings=1)
// and beside 10,000 idle meetings of 5 participants (meetings=10000), to
// show that the per-packet cost does not grow with the router's tables.
func BenchmarkMeetings(b *testing.B) {
	for _, idle := range []int{0, 10000} {
		runBench(b, fmt.Sprintf("meetings=%d", max(1, idle)),
			scenario{impl: implMMR, subs: 10, size: 200, idleMeetings: idle, idleParticipants: 5},
			closedLoop(windowFor(10)))
	}
}

// runBench runs sub-benchmark name of scenario sc: one rig (and one child)
// for all its rounds, started on the first round before the timer, closed
// after the last. Each round sends b.N packets with drive and reports:
//
//	ns/pkt      child CPU time (all threads) per delivered copy
//	allocs/pkt  child heap allocations per input packet (also as allocs/op,
//	            B/op: the child's, not this process's)
//	loss%       copies sent but never delivered
//	drops       (router impls) copies the router counted as dropped in the
//	            round, any reason (for streams: stats.DropQueueFull)
func runBench(b *testing.B, name string, sc scenario, drive driver) {
	var r *rig
	defer func() {
		if r != nil {
			if err := r.close(); err != nil {
				b.Error(err)
			}
		}
	}()
	b.Run(name, func(b *testing.B) {
		if why := implSkip(sc.impl); why != "" {
			b.Skip(why)
		}
		if r == nil {
			var err error
			if r, err = newRig(sc); err != nil {
				b.Fatal(err)
			}
		}
		var d0, d1 uint64
		var err error
		if isRouterImpl(sc.impl) {
			if d0, err = r.child.drops(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		res, u, err := measureRound(r, b.N, drive)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		report(b, res, u)
		if r.lat != nil {
			d := r.lat.take()
			b.ReportMetric(percentile(d, 50), "delay-p50-us")
			b.ReportMetric(percentile(d, 99), "delay-p99-us")
		}
		if isRouterImpl(sc.impl) {
			if d1, err = r.child.drops(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d1-d0), "drops")
		}
	})
}

// measureRound runs one round of n packets on r and returns what it
// delivered and the child's usage during it.
func measureRound(r *rig, n int, drive driver) (result, usage, error) {
	if err := r.startRound(); err != nil {
		return result{}, usage{}, err
	}
	u0, err := r.child.usage()
	if err != nil {
		return result{}, usage{}, err
	}
	res, err := drive(r, n)
	if err != nil {
		return res, usage{}, err
	}
	u1, err := r.child.usage()
	if err != nil {
		return res, usage{}, err
	}
	return res, u1.sub(u0), nil
}

// report turns one round's result and the child's usage into metrics.
func report(b *testing.B, res result, u usage) {
	if res.delivered == 0 {
		b.Fatalf("no copy delivered: %+v", res)
	}
	perIn := float64(res.packets)
	b.ReportMetric(float64(u.CPUNanos)/float64(res.delivered), "ns/pkt")
	b.ReportMetric(float64(u.Mallocs)/perIn, "allocs/pkt")
	b.ReportMetric(float64(u.Mallocs)/perIn, "allocs/op")
	b.ReportMetric(float64(u.AllocBytes)/perIn, "B/op")
	b.ReportMetric(res.lossPercent(), "loss%")
}
