package bench

import (
	"errors"
	"fmt"
	"time"
)

// scenario is one measured setup: which forwarder, how many subscribers,
// the packet size, and (mmr only) the idle meetings beside the measured one.
type scenario struct {
	impl             string
	subs, size       int
	idleMeetings     int
	idleParticipants int
	// verify checks every copy byte for byte (TestHarnessSmoke); a verifying
	// rig runs one round.
	verify bool
	// video sends video-like traffic (video_test.go): frames of 5 to 10
	// packets, each frame one burst, every packet of a frame size bytes
	// but for a shorter last one.
	video bool
	// latency records each copy's delay through the forwarder (rig.lat;
	// UDP subscribers only).
	latency bool
	// srtp makes the publisher seal every packet with SRTP as clients do
	// (publisher.protect); the forwarder sees ciphertext of the same size.
	// UDP subscribers only, not with verify.
	srtp bool
}

// rig is a running scenario: the subscriber sockets and the publisher in
// this process, the forwarder in a child. A benchmark keeps one rig for all
// the b.N rounds of a sub-benchmark. Not safe for concurrent use.
type rig struct {
	sc    scenario
	sinks *sinkSet
	pub   *publisher
	child *child
	epoch uint32
	lat   *latency // sc.latency: the delays of each round
}

func newRig(sc scenario) (*rig, error) {
	if isStreamImpl(sc.impl) {
		return newStreamRig(sc)
	}
	r := &rig{sc: sc}
	if sc.latency {
		r.lat = new(latency)
	}
	var err error
	if r.sinks, err = newSinkSet(sc.subs, benchSSRC, sc.size, sc.verify, sc.video, r.lat); err != nil {
		return nil, err
	}
	if r.pub, err = newPublisher(sc.size, benchSSRC, sc.verify); err != nil {
		return nil, errors.Join(err, r.close())
	}
	r.pub.video = sc.video
	r.pub.lat = r.lat
	if sc.srtp {
		if err := r.pub.protect(); err != nil {
			return nil, errors.Join(err, r.close())
		}
	}
	r.child, err = startChild(childSpec{
		Impl:             sc.impl,
		Pub:              r.pub.addr,
		Subs:             r.sinks.addrs(),
		SSRC:             benchSSRC,
		IdleMeetings:     sc.idleMeetings,
		IdleParticipants: sc.idleParticipants,
	})
	if err != nil {
		return nil, errors.Join(err, r.close())
	}
	if err := r.pub.setDst(r.child.addr); err != nil {
		return nil, errors.Join(err, r.close())
	}
	return r, nil
}

// newStreamRig builds a tcp or tls rig: the child creates the stream
// subscriber participants and reports their tokens ("streams"), then this
// process connects and binds one stream client per token.
func newStreamRig(sc scenario) (*rig, error) {
	r := &rig{sc: sc}
	var err error
	if r.pub, err = newPublisher(sc.size, benchSSRC, sc.verify); err != nil {
		return nil, err
	}
	r.child, err = startChild(childSpec{
		Impl:             sc.impl,
		Pub:              r.pub.addr,
		Streams:          sc.subs,
		SSRC:             benchSSRC,
		IdleMeetings:     sc.idleMeetings,
		IdleParticipants: sc.idleParticipants,
	})
	if err != nil {
		return nil, errors.Join(err, r.close())
	}
	si, err := r.child.streams()
	if err == nil && len(si.Tokens) != sc.subs {
		err = fmt.Errorf("bench: child reported %d stream tokens, want %d", len(si.Tokens), sc.subs)
	}
	if err != nil {
		return nil, errors.Join(err, r.close())
	}
	newSinks := newStreamSinkSet
	switch sc.impl {
	case implWS:
		newSinks = newWSSinkSet
	case implWT:
		newSinks = newWTSinkSet
	}
	if r.sinks, err = newSinks(si, benchSSRC, sc.size, sc.verify); err != nil {
		return nil, errors.Join(err, r.close())
	}
	if err := r.pub.setDst(r.child.addr); err != nil {
		return nil, errors.Join(err, r.close())
	}
	return r, nil
}

// close stops the child and closes the sockets; it tolerates a partly built
// rig.
func (r *rig) close() error {
	var err error
	if r.child != nil {
		err = r.child.close()
	}
	if r.pub != nil {
		err = errors.Join(err, r.pub.close())
	}
	if r.sinks != nil {
		err = errors.Join(err, r.sinks.close())
	}
	return err
}

// startRound begins a round with a fresh epoch: copies of earlier rounds
// that arrive late are not counted.
func (r *rig) startRound() error {
	r.epoch++
	r.pub.startRound(r.epoch)
	return r.sinks.startRound(r.epoch)
}

// result is what one round delivered.
type result struct {
	packets   uint64 // sent by the publisher
	expected  uint64 // packets × subscribers
	delivered uint64 // copies received by the subscribers
	stalls    int    // times the loop gave up waiting for outstanding copies
}

// add accumulates o into res.
func (res *result) add(o result) {
	res.packets += o.packets
	res.expected += o.expected
	res.delivered += o.delivered
	res.stalls += o.stalls
}

// lossPercent is the share of expected copies not delivered.
func (res result) lossPercent() float64 {
	if res.expected == 0 || res.delivered >= res.expected {
		return 0
	}
	return 100 * float64(res.expected-res.delivered) / float64(res.expected)
}

// stallTimeout is how long the load waits without any copy arriving before
// it counts the outstanding copies as lost. A healthy forwarder delivers
// within microseconds; 200 ms rides out any scheduling hiccup of this
// two-core machine.
const stallTimeout = 200 * time.Millisecond

// verifyStallTimeout replaces stallTimeout for a verifying rig (the smoke
// test), which must not write copies off: beside a CPU hog on this
// two-core machine a forwarder was seen descheduled for over 200 ms, and
// the smoke test then failed with copies that were only late.
const verifyStallTimeout = 10 * time.Second

// stall returns how long r's load waits for a copy before writing the
// outstanding ones off.
func (r *rig) stall() time.Duration {
	if r.sc.verify {
		return verifyStallTimeout
	}
	return stallTimeout
}

// driver runs one round of n packets on r.
type driver func(r *rig, n int) (result, error)

// streamWindowBytes bounds the closed loop's bytes in flight per stream
// subscriber (on average over the subscribers): 64 KiB is a third of the
// router's default budget for a participant's video queue (three quarters
// of Config.StreamQueue, 256 KiB). Copies in flight sit mostly in the
// kernel's TCP buffers, not in that queue, but a subscriber whose drain
// goroutine falls behind the average must still not make the router drop
// (it counts stats.DropQueueFull; the benchmarks report "drops").
const streamWindowBytes = 64 << 10

// windowForScenario is the closed loop's window for sc: windowFor, and for
// stream subscribers at most streamWindowBytes of frames (RFC 4571 length
// prefix included) per subscriber.
func windowForScenario(sc scenario) int {
	w := windowFor(sc.subs)
	if isStreamImpl(sc.impl) {
		w = max(16, min(w, streamWindowBytes/(sc.size+2)))
	}
	if sc.impl == implWT {
		w = min(w, wtWindow)
	}
	return w
}

// windowFor is the closed loop's limit of packets in flight (sent by the
// publisher, not yet received by every subscriber): up to 256, so the
// forwarder finds full recvmmsg batches, but at most about 8192 copies in
// flight in total so that no socket buffer overflows, and at least 16.
func windowFor(subs int) int {
	return min(256, max(16, 8192/subs))
}

// closedLoop returns a driver sending as fast as the forwarder and the
// subscribers keep up, with at most window packets in flight, in bursts of
// up to pubBurst packets. For UDP subscribers a packet counts as received
// on average (copies received / subs); for stream subscribers only once the
// slowest subscriber has it (see acked), so that no single subscriber falls
// more than window packets behind and fills its router queue.
func closedLoop(window int) driver {
	return func(r *rig, n int) (result, error) {
		subs := int64(r.sc.subs)
		var sent, forgiven int64
		res := result{packets: uint64(n), expected: uint64(n) * uint64(subs)}
		t := time.NewTimer(r.stall())
		defer t.Stop()
		acked := func() int64 { return int64(r.sinks.delivered.Load()) / subs }
		if isStreamImpl(r.sc.impl) {
			acked = func() int64 { return int64(r.sinks.minGot()) }
		}
		for sent < int64(n) {
			if room := int64(window) - (sent - acked() - forgiven); room > 0 {
				k := int(min(room, int64(n)-sent, int64(r.pub.burstLimit())))
				if err := r.pub.sendBurst(k); err != nil {
					return res, err
				}
				sent += int64(k)
				continue
			}
			t.Reset(r.stall())
			select {
			case <-r.sinks.progress:
			case <-t.C:
				res.stalls++
				forgiven = sent - acked()
			}
		}
		res.delivered, res.stalls = r.await(res.expected, res.stalls)
		return res, nil
	}
}

// paced returns a driver sending one packet per interval regardless of
// delivery (see pace), then waiting for the copies.
func paced(interval time.Duration) driver {
	return func(r *rig, n int) (result, error) {
		res := result{packets: uint64(n), expected: uint64(n) * uint64(r.sc.subs)}
		if err := pace(n, interval, func(int) error { return r.pub.send() }); err != nil {
			return res, err
		}
		res.delivered, res.stalls = r.await(res.expected, res.stalls)
		return res, nil
	}
}

// await waits until expected copies arrived or none arrives for
// stallTimeout, and returns the copies delivered and the stall count.
func (r *rig) await(expected uint64, stalls int) (uint64, int) {
	t := time.NewTimer(r.stall())
	defer t.Stop()
	for {
		if d := r.sinks.delivered.Load(); d >= expected {
			return d, stalls
		}
		t.Reset(r.stall())
		select {
		case <-r.sinks.progress:
		case <-t.C:
			return r.sinks.delivered.Load(), stalls + 1
		}
	}
}
