package bench

import (
	"errors"
	"fmt"
	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/openmmr/mmr/client/streammedia"
)

// sinkSocketBuffer is SO_RCVBUF of each subscriber socket: the closed loop
// keeps at most a few thousand copies in flight in total, far below 4 MiB
// per socket, so the receivers never lose a copy to a full buffer.
const sinkSocketBuffer = 4 << 20

// sinkSet is the subscribers' side of the load: one UDP socket per
// subscriber on 127.0.0.1, each drained by its own goroutine (recvmmsg
// batches on Linux, see sink_linux_test.go). It counts the copies of the
// current round (packets whose RTP timestamp is the round's epoch) and, in
// verify mode, checks every copy byte for byte and that each sequence number
// arrives exactly once per subscriber.
//
// Counters are safe for concurrent use; startRound and close are called by
// the one goroutine driving the load.
type sinkSet struct {
	ssrc   uint32
	size   int  // packet size; verify mode checks it
	verify bool // full check of every copy; a verifying set runs one round
	video  bool // packet lengths follow videoLen
	rounds int

	epoch     atomic.Uint32
	delivered atomic.Uint64 // copies of the current round over all sinks
	progress  chan struct{} // signalled after each received batch
	sinks     []*sink
	lat       *latency // set before the first round to record kernel receive times
	wg        sync.WaitGroup
	once      sync.Once
}

// sink is one subscriber socket (or stream flow) and its counters.
type sink struct {
	conn  *net.UDPConn          // UDP subscriber, or nil
	flow  *streammedia.Flow     // stream (TCP/TLS) subscriber, or nil
	ws    *websocket.Conn       // WebSocket subscriber (ws), or nil
	wt    *webtransport.Session // WebTransport subscriber (wt), or nil
	addr  netip.AddrPort
	got   atomic.Uint64 // copies of the current round
	bad   atomic.Uint64 // copies that are not a benchmark packet (or fail verification)
	dup   atomic.Uint64 // verify mode: a sequence number seen twice
	stale atomic.Uint64 // copies of an earlier round
	// seen is the verify mode's bitmap of sequence numbers, written only by
	// this sink's goroutine during the round.
	seen []uint64
}

// newSinkSet opens n subscriber sockets. With video, packet lengths follow
// videoLen. With lat set, they ask the kernel for each copy's receive time
// (SO_TIMESTAMPNS) and record delays in lat; that turns on the kernel's
// packet timestamps machine-wide, a small cost in the forwarder's sends
// too, so only latency scenarios use it.
func newSinkSet(n int, ssrc uint32, size int, verify, video bool, lat *latency) (*sinkSet, error) {
	s := &sinkSet{ssrc: ssrc, size: size, verify: verify, video: video, lat: lat, progress: make(chan struct{}, 1)}
	for range n {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, errors.Join(err, s.close())
		}
		k := &sink{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
		s.sinks = append(s.sinks, k)
		if err := conn.SetReadBuffer(sinkSocketBuffer); err != nil {
			return nil, errors.Join(err, s.close())
		}
		if verify {
			k.seen = make([]uint64, 65536/64)
		}
	}
	for _, k := range s.sinks {
		s.wg.Add(1)
		go s.drain(k)
	}
	return s, nil
}

// addrs returns the subscriber socket addresses.
func (s *sinkSet) addrs() []netip.AddrPort {
	out := make([]netip.AddrPort, len(s.sinks))
	for i, k := range s.sinks {
		out[i] = k.addr
	}
	return out
}

// startRound resets the round counters and starts accepting packets of
// epoch. A verifying set accepts one round only (its sequence bitmaps are
// not reset while receivers run).
func (s *sinkSet) startRound(epoch uint32) error {
	if s.verify && s.rounds > 0 {
		return errors.New("bench: a verifying sink set runs one round only")
	}
	s.rounds++
	s.delivered.Store(0)
	for _, k := range s.sinks {
		k.got.Store(0)
	}
	s.epoch.Store(epoch)
	return nil
}

// handleAt accounts one received copy b at sink k that the kernel queued
// at rxNanos (Unix ns; 0 when unknown).
func (s *sinkSet) handleAt(k *sink, b []byte, rxNanos int64) {
	if s.handle(k, b) && s.lat != nil && rxNanos != 0 {
		seq, _, _ := parseHeader(b, s.ssrc)
		s.lat.received(seq, rxNanos)
	}
}

// handle accounts one received copy b at sink k and reports whether it
// counted (a benchmark packet of the current round).
func (s *sinkSet) handle(k *sink, b []byte) bool {
	seq, ep, ok := parseHeader(b, s.ssrc)
	switch {
	case !ok:
		k.bad.Add(1)
		return false
	case ep != s.epoch.Load():
		k.stale.Add(1)
		return false
	}
	if s.verify {
		size := s.size
		if s.video {
			size = videoLen(seq, s.size)
		}
		if _, _, err := verifyPacket(b, size, s.ssrc); err != nil {
			k.bad.Add(1)
			return false
		}
		w, bit := seq/64, uint64(1)<<(seq%64)
		if k.seen[w]&bit != 0 {
			k.dup.Add(1)
			return false
		}
		k.seen[w] |= bit
	}
	k.got.Add(1)
	s.delivered.Add(1)
	return true
}

// minGot returns the fewest copies of the current round any sink has
// received.
func (s *sinkSet) minGot() uint64 {
	m := uint64(math.MaxUint64)
	for _, k := range s.sinks {
		m = min(m, k.got.Load())
	}
	return m
}

// notify wakes the load driver after a batch (never blocks).
func (s *sinkSet) notify() {
	select {
	case s.progress <- struct{}{}:
	default:
	}
}

// check returns an error unless every sink received exactly packets copies
// of the round, none bad or duplicated.
func (s *sinkSet) check(packets uint64) error {
	var errs []error
	for i, k := range s.sinks {
		if got, bad, dup := k.got.Load(), k.bad.Load(), k.dup.Load(); got != packets || bad != 0 || dup != 0 {
			errs = append(errs, fmt.Errorf("bench: subscriber %d got %d of %d copies, %d bad, %d duplicated", i, got, packets, bad, dup))
		}
	}
	return errors.Join(errs...)
}

// close closes every socket and waits for the receivers to end. Idempotent.
func (s *sinkSet) close() error {
	var err error
	s.once.Do(func() {
		for _, k := range s.sinks {
			if k.ws != nil {
				_ = k.ws.CloseNow() // already closed by the router: nothing to report
			} else if k.wt != nil {
				_ = k.wt.CloseWithError(0, "") // likewise
			} else if k.flow != nil {
				err = errors.Join(err, k.flow.Close())
			} else {
				err = errors.Join(err, k.conn.Close())
			}
		}
		s.wg.Wait()
	})
	return err
}
