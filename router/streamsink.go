package router

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// Stream tuning constants.
const (
	// streamQueueFrames bounds a stream's queue in packets; the byte budget
	// (Config.StreamQueue) is normally hit first.
	streamQueueFrames = 1024
	// streamWriteBatch is the most frames one write gathers: 64 full packets
	// are ~96 KiB, a few TLS records or one writev.
	streamWriteBatch = 64
	// streamBatch is the UDP egress batch of a stream reader, which flushes
	// after every packet.
	streamBatch = 256
	// keyframeInterval is the least time between two keyframe requests a
	// congested stream subscriber causes for one publisher stream.
	keyframeInterval = 300 * time.Millisecond
	// dropSlots is how many publisher streams one subscriber stream can be
	// dropping a frame of at once.
	dropSlots = 8
)

// frame is one queued, length-prefixed packet.
type frame struct {
	n int
	b [wire.FrameHeaderSize + MaxPacket]byte
}

// freeFrames bounds the frames a router keeps for reuse: 4096 × ~1.5 KiB =
// 6 MiB, the queues of 24 stuck participants at the default budget. Beyond
// it frames go to the garbage collector; below it nothing is allocated.
const freeFrames = 4096

// framePool is a bounded free list of frames. Unlike a sync.Pool, which the
// garbage collector empties, it keeps its frames, so a stream path in steady
// state allocates nothing. Safe for concurrent use.
type framePool chan *frame

func (p framePool) get() *frame {
	select {
	case f := <-p:
		return f
	default:
		return new(frame)
	}
}

func (p framePool) put(f *frame) {
	select {
	case p <- f:
	default:
	}
}

// streamSink is the send side of one stream (TCP or TLS) media connection:
// a bounded queue that Enqueue fills from any goroutine without blocking
// and one writer goroutine drains with batched writes.
type streamSink struct {
	rt     *Router
	conn   net.Conn
	tls    bool
	p      *session.Participant
	kind   media.Kind
	q      chan *frame
	done   chan struct{}
	closed atomic.Bool

	dropping [dropSlots]atomic.Uint32 // SSRCs whose current frame is being dropped
	lastKF   atomic.Int64             // Unix ns of the last keyframe request
}

func newStreamSink(r *Router, c net.Conn, isTLS bool, p *session.Participant, k media.Kind) *streamSink {
	return &streamSink{rt: r, conn: c, tls: isTLS, p: p, kind: k, q: make(chan *frame, streamQueueFrames), done: make(chan struct{})}
}

// Enqueue copies pkt into the queue. When the participant's stream queues
// hold more than the budget, video and content are dropped a whole frame at
// a time (from the packet that did not fit to the end of that frame, the
// RTP marker) and a keyframe request goes to the publisher; audio may use
// the last quarter of the budget that video and content may not, so it is
// dropped last. Every drop is counted.
func (s *streamSink) Enqueue(pkt []byte) {
	if s.closed.Load() {
		return
	}
	n := int64(wire.FrameHeaderSize + len(pkt))
	budget := int64(s.rt.cfg.StreamQueue)
	var ssrc uint32
	isRTP := len(pkt) >= 12 && wire.Classify(pkt) == wire.ClassRTP
	if isRTP {
		ssrc = binary.BigEndian.Uint32(pkt[8:12])
	}
	if s.kind != media.Audio {
		budget -= budget / 4
		if isRTP && s.isDropping(ssrc) {
			if pkt[1]&0x80 != 0 { // marker: last packet of the frame
				s.stopDropping(ssrc)
			}
			s.drop()
			return
		}
	}
	if s.p.Queued.Load()+n > budget {
		if s.kind != media.Audio && isRTP {
			if pkt[1]&0x80 == 0 {
				s.startDropping(ssrc)
			}
			s.requestKeyframe(ssrc)
		}
		s.drop()
		return
	}
	fr := s.rt.frames.get()
	binary.BigEndian.PutUint16(fr.b[:], uint16(len(pkt)))
	fr.n = wire.FrameHeaderSize + copy(fr.b[wire.FrameHeaderSize:], pkt)
	s.p.Queued.Add(n)
	select {
	case s.q <- fr:
	default:
		s.p.Queued.Add(-n)
		s.rt.frames.put(fr)
		s.drop()
	}
}

func (s *streamSink) drop() {
	s.rt.streamLive.Drop(stats.DropQueueFull)
	s.p.Stats.Drop(stats.DropQueueFull)
}

func (s *streamSink) isDropping(ssrc uint32) bool {
	for i := range s.dropping {
		if s.dropping[i].Load() == ssrc {
			return true
		}
	}
	return false
}

func (s *streamSink) startDropping(ssrc uint32) {
	for i := range s.dropping {
		if s.dropping[i].CompareAndSwap(0, ssrc) {
			return
		}
	}
}

func (s *streamSink) stopDropping(ssrc uint32) {
	for i := range s.dropping {
		s.dropping[i].CompareAndSwap(ssrc, 0)
	}
}

// requestKeyframe asks the publisher of ssrc for a keyframe (RTCP PLI,
// RFC 4585 §6.3.1), at most once per keyframeInterval per subscriber
// stream: after a dropped frame the subscriber cannot decode until one.
func (s *streamSink) requestKeyframe(ssrc uint32) {
	now := time.Now().UnixNano()
	last := s.lastKF.Load()
	if now-last < int64(keyframeInterval) || !s.lastKF.CompareAndSwap(last, now) {
		return
	}
	select {
	case s.rt.keyframes <- keyframeReq{meeting: s.p.Meeting, ssrc: ssrc}:
	default: // the binder is busy: the next drop asks again
	}
}

// writeLoop drains the queue with batched writes (writev through
// net.Buffers for TCP, one TLS record per batch for TLS) until the sink
// closes or a write fails. A peer that does not take a batch within
// StallTimeout is disconnected.
func (s *streamSink) writeLoop() {
	frames := make([]*frame, 0, streamWriteBatch)
	bufs := make(net.Buffers, 0, streamWriteBatch)
	wv := new(net.Buffers) // WriteTo consumes it; one per loop, not per write
	var stage []byte
	if s.tls {
		stage = make([]byte, 0, 16<<10)
	}
	defer func() {
		for {
			select {
			case fr := <-s.q:
				s.p.Queued.Add(-int64(fr.n))
				s.rt.frames.put(fr)
			default:
				return
			}
		}
	}()
	for {
		select {
		case fr := <-s.q:
			frames = append(frames[:0], fr)
		case <-s.done:
			return
		}
	gather:
		for len(frames) < streamWriteBatch {
			select {
			case fr := <-s.q:
				frames = append(frames, fr)
			default:
				break gather
			}
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.rt.cfg.StallTimeout))
		var err error
		if s.tls {
			stage = stage[:0]
			for _, fr := range frames {
				stage = append(stage, fr.b[:fr.n]...)
			}
			_, err = s.conn.Write(stage)
		} else {
			bufs = bufs[:0]
			for _, fr := range frames {
				bufs = append(bufs, fr.b[:fr.n])
			}
			*wv = bufs
			_, err = wv.WriteTo(s.conn)
		}
		for i, fr := range frames {
			s.p.Queued.Add(-int64(fr.n))
			if err == nil {
				s.p.Stats.Out(1, fr.n-wire.FrameHeaderSize)
				s.rt.streamLive.Out(1, fr.n-wire.FrameHeaderSize)
			}
			s.rt.frames.put(fr)
			frames[i] = nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.rt.streamLive.Drop(stats.DropSlowSubscriber)
				s.p.Stats.Drop(stats.DropSlowSubscriber)
			}
			s.close()
			return
		}
	}
}

// close stops the sink and closes its connection, which ends the reader.
// Idempotent.
func (s *streamSink) close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.done)
	s.conn.Close()
}
