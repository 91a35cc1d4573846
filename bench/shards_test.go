package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
)

// pubGroup is one more meeting of the mmr child (childSpec.More): a
// publisher of SSRC and its UDP subscribers.
type pubGroup struct {
	Pub  netip.AddrPort   `json:"pub"`
	Subs []netip.AddrPort `json:"subs"`
	SSRC uint32           `json:"ssrc"`
}

// addMore creates meeting bench-<i> for each group: its publisher
// publishing the group's SSRC and subscribed to nothing, every subscriber
// subscribed to all video.
func (f *mmrForwarder) addMore(more []pubGroup) error {
	for i, g := range more {
		id := fmt.Sprintf("%s-%d", benchMeeting, i+1)
		if err := f.r.CreateMeeting(id); err != nil {
			return err
		}
		var o router.ParticipantOptions
		o.Fixed[media.Video.Index()] = g.Pub
		pub, err := f.r.AddParticipant(id, o)
		if err != nil {
			return fmt.Errorf("bench: adding publisher %d: %w", i+1, err)
		}
		if err := errors.Join(f.r.Publish(pub.ID, media.Video, g.SSRC), f.r.Subscribe(pub.ID, media.Video, router.None())); err != nil {
			return fmt.Errorf("bench: publisher %d: %w", i+1, err)
		}
		for _, s := range g.Subs {
			var o router.ParticipantOptions
			o.Fixed[media.Video.Index()] = s
			p, err := f.r.AddParticipant(id, o)
			if err != nil {
				return fmt.Errorf("bench: adding subscriber %v: %w", s, err)
			}
			if err := f.r.Subscribe(p.ID, media.Video, router.All()); err != nil {
				return err
			}
		}
	}
	return nil
}

// readersReply answers "readers": the packets each router reader received.
func (c *childServer) readersReply() {
	f, ok := c.fw.(*mmrForwarder)
	if !ok {
		c.write("err no router readers")
		return
	}
	b := []byte("readers")
	for _, s := range f.r.ReaderStats() {
		b = append(b, ' ')
		b = strconv.AppendUint(b, s.PacketsIn, 10)
	}
	c.write(string(b))
}

// readers reads the packets each router reader of the child received.
func (c *child) readers() ([]uint64, error) {
	reply, err := c.request("readers", controlTimeout)
	if err != nil {
		return nil, err
	}
	out, err := parseReaders(reply)
	if err != nil {
		return nil, c.fail(err)
	}
	return out, nil
}

// parseReaders parses "readers <n>..." (at least one count).
func parseReaders(reply string) ([]uint64, error) {
	f := strings.Fields(reply)
	if len(f) < 2 || f[0] != "readers" {
		return nil, fmt.Errorf("bench: bad readers reply %q", reply)
	}
	out := make([]uint64, len(f)-1)
	for i, s := range f[1:] {
		var err error
		if out[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, fmt.Errorf("bench: bad readers reply %q", reply)
		}
	}
	return out, nil
}

// scaleRig is a router child with shards readers and one publisher per
// shard, each in a meeting of its own with subs UDP subscribers, the
// publishers' source ports chosen so that the kernel's SO_REUSEPORT hash
// puts each on a different reader (checked with the readers' counters).
// Not safe for concurrent use.
type scaleRig struct {
	sc    scenario
	parts []*rig // one per publisher; all share parts[0].child
}

// scaleAttempts bounds the tries to find publisher ports that hash to
// distinct readers: with 2 shards each try succeeds with probability 1/2.
const scaleAttempts = 20

func newScaleRig(sc scenario, shards int) (*scaleRig, error) {
	for range scaleAttempts {
		s, ok, err := tryScaleRig(sc, shards)
		if err != nil {
			return nil, err
		}
		if ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("bench: no publisher ports on distinct readers in %d tries", scaleAttempts)
}

// tryScaleRig builds one candidate rig and reports whether its publishers
// landed on distinct readers (if not, the rig is closed).
func tryScaleRig(sc scenario, shards int) (*scaleRig, bool, error) {
	s := &scaleRig{sc: sc}
	spec := childSpec{Impl: sc.impl, Shards: shards}
	for i := range shards {
		p := &rig{sc: sc}
		s.parts = append(s.parts, p)
		ssrc := benchSSRC + uint32(i)
		var err error
		if p.sinks, err = newSinkSet(sc.subs, ssrc, sc.size, false, sc.video, nil); err != nil {
			return nil, false, errors.Join(err, s.close())
		}
		if p.pub, err = newPublisher(sc.size, ssrc, false); err != nil {
			return nil, false, errors.Join(err, s.close())
		}
		p.pub.video = sc.video
		if i == 0 {
			spec.Pub, spec.Subs, spec.SSRC = p.pub.addr, p.sinks.addrs(), ssrc
		} else {
			spec.More = append(spec.More, pubGroup{Pub: p.pub.addr, Subs: p.sinks.addrs(), SSRC: ssrc})
		}
	}
	c, err := startChild(spec)
	if err != nil {
		return nil, false, errors.Join(err, s.close())
	}
	for _, p := range s.parts {
		p.child = c
		if err := p.pub.setDst(c.addr); err != nil {
			return nil, false, errors.Join(err, s.close())
		}
	}
	used := map[int]bool{}
	for _, p := range s.parts {
		r, err := s.probe(p)
		if err != nil {
			return nil, false, errors.Join(err, s.close())
		}
		used[r] = true
	}
	if len(used) < shards {
		return nil, false, s.close()
	}
	return s, true, nil
}

// probe sends one packet from p's publisher and returns the reader that
// received it.
func (s *scaleRig) probe(p *rig) (int, error) {
	c := s.parts[0].child
	before, err := c.readers()
	if err != nil {
		return 0, err
	}
	if err := p.pub.send(); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		after, err := c.readers()
		if err != nil {
			return 0, err
		}
		for i := range after {
			if after[i] > before[i] {
				return i, nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, errors.New("bench: probe packet reached no reader")
}

func (s *scaleRig) close() error {
	var err error
	if len(s.parts) > 0 && s.parts[0].child != nil {
		err = s.parts[0].child.close()
	}
	for _, p := range s.parts {
		p.child = nil
		err = errors.Join(err, p.close())
	}
	return err
}

// round sends n packets from every publisher at once, each closed loop in
// its own goroutine, and returns the copies delivered in all, the wall
// time and the child's CPU time.
func (s *scaleRig) round(n int, window int) (delivered uint64, wall time.Duration, cpu uint64, err error) {
	c := s.parts[0].child
	for _, p := range s.parts {
		if err := p.startRound(); err != nil {
			return 0, 0, 0, err
		}
	}
	u0, err := c.usage()
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	res := make([]result, len(s.parts))
	errs := make([]error, len(s.parts))
	var wg sync.WaitGroup
	for i, p := range s.parts {
		wg.Go(func() { res[i], errs[i] = closedLoop(window)(p, n) })
	}
	wg.Wait()
	wall = time.Since(t0)
	u1, err := c.usage()
	if err := errors.Join(append(errs, err)...); err != nil {
		return 0, 0, 0, err
	}
	for _, r := range res {
		delivered += r.delivered
	}
	return delivered, wall, u1.sub(u0).CPUNanos, nil
}

// BenchmarkShards measures how the router scales across cores: aggregate
// copies per second (wall clock) of one publisher on one shard
// (shards=1) and of two publishers, each to its own 50 subscribers, on
// two shards (shards=2), the publishers' ports picked so that
// SO_REUSEPORT gives each its own reader. The two rigs run alternately in
// slices, as in BenchmarkRatio. Metrics: copies/s and base-copies/s (the
// two-shard and the one-shard rig), scale (copies/s / (2 × base-copies/s):
// 1 would be perfect scaling), ns/pkt and base-ns/pkt (child CPU per
// copy). The load generator and the receivers share the same two cores,
// so on this machine scale is bounded well below 1; see bench/README.md.
func BenchmarkShards(b *testing.B) {
	for _, impl := range []string{implMMR, implMMRNoGSO} {
		for _, size := range []int{200, 1200} {
			sc := scenario{impl: impl, subs: 50, size: size}
			runScale(b, fmt.Sprintf("%s/subs=50/size=%d", impl, size), sc)
		}
	}
}

func runScale(b *testing.B, name string, sc scenario) {
	var rigs [2]*scaleRig
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
		for i := range rigs {
			if rigs[i] == nil {
				r, err := newScaleRig(sc, i+1)
				if err != nil {
					b.Fatal(err)
				}
				rigs[i] = r
			}
		}
		var copies [2]uint64
		var wall [2]time.Duration
		var cpu [2]uint64
		slice := sliceFor(sc.subs)
		b.ResetTimer()
		for done, turn := 0, 0; done < b.N; turn++ {
			k := min(slice, b.N-done)
			for j := range 2 {
				i := (turn + j) % 2
				d, w, c, err := rigs[i].round(k, windowFor(sc.subs))
				if err != nil {
					b.Fatal(err)
				}
				copies[i] += d
				wall[i] += w
				cpu[i] += c
			}
			done += k
		}
		b.StopTimer()
		if copies[0] == 0 || copies[1] == 0 {
			b.Fatalf("no copies delivered: %v", copies)
		}
		rate := func(i int) float64 { return float64(copies[i]) / wall[i].Seconds() }
		b.ReportMetric(rate(1), "copies/s")
		b.ReportMetric(rate(0), "base-copies/s")
		b.ReportMetric(rate(1)/(2*rate(0)), "scale")
		b.ReportMetric(float64(cpu[1])/float64(copies[1]), "ns/pkt")
		b.ReportMetric(float64(cpu[0])/float64(copies[0]), "base-ns/pkt")
	})
}
