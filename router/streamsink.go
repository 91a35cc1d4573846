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
	// before each read (when no whole frame is buffered).
	streamBatch = 256
	// keyframeInterval is the least time between two keyframe requests a
	// congested stream subscriber causes. While it stays congested the
	// interval doubles with each request, up to maxKeyframeInterval: a
	// subscriber that cannot keep up for good (a slow link reading at
	// 200 KB/s) would otherwise make its publishers send a costly keyframe
	// every 300 ms, for everyone, while it decodes none of them. It starts
	// again at keyframeInterval once the subscriber has gone twice the
	// current interval without a drop.
	keyframeInterval    = 300 * time.Millisecond
	maxKeyframeInterval = 5 * time.Second
	// dropSlots is how many publisher streams one subscriber stream can be
	// dropping a frame of at once.
	dropSlots = 8
)

// frame is one queued, length-prefixed packet; b has the capacity of its
// size class.
type frame struct {
	n int
	b []byte
}

// Frame size classes and free lists. Stream queues can hold up to
// streamQueueFrames frames per subscriber stream, so a meeting of 50 TCP
// subscribers in a burst has tens of thousands of frames in flight (the
// bench's tcp/subs=50 allocated ~0.1 frame per copy with a single list of
// 4,096). Two classes keep what the lists retain small: audio, RTCP and
// other small packets take a 320-byte frame (Opus at its highest bitrate
// with RTP header extensions fits), the rest a full one.
const (
	smallFrame = 320
	fullFrame  = wire.FrameHeaderSize + MaxPacket
	// freeSmall and freeFull bound the frames each list keeps: at most
	// 65,536 x 320 B = 20 MiB and 16,384 x 1.5 KiB = 24 MiB, and only as
	// much as was once in flight at the same time (a list holds frames
	// that were used). The lists' own buffers are 640 KiB of pointers.
	freeSmall = 65536
	freeFull  = 16384
)

// framePool is a bounded free list of frames per size class. Unlike a
// sync.Pool, which the garbage collector empties, it keeps its frames, so a
// stream path in steady state allocates nothing. Safe for concurrent use.
type framePool struct {
	small, full chan *frame
}

func newFramePool() framePool {
	return framePool{small: make(chan *frame, freeSmall), full: make(chan *frame, freeFull)}
}

// get returns a frame able to hold n bytes (n <= fullFrame).
func (p framePool) get(n int) *frame {
	list, size := p.full, fullFrame
	if n <= smallFrame {
		list, size = p.small, smallFrame
	}
	select {
	case f := <-list:
		return f
	default:
		return &frame{b: make([]byte, size)}
	}
}

func (p framePool) put(f *frame) {
	list := p.full
	if cap(f.b) == smallFrame {
		list = p.small
	}
	select {
	case list <- f:
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
	kfEvery  atomic.Int64             // current least interval between requests (ns); 0: keyframeInterval
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
			s.requestKeyframe(ssrc, time.Now().UnixNano())
		}
		s.drop()
		return
	}
	fr := s.rt.frames.get(int(n))
	binary.BigEndian.PutUint16(fr.b, uint16(len(pkt)))
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
// RFC 4585 §6.3.1) at now (Unix ns), after a dropped frame (the
// subscriber cannot decode until one): at most once per interval per
// subscriber stream, the interval doubling from keyframeInterval to
// maxKeyframeInterval while the subscriber stays congested.
func (s *streamSink) requestKeyframe(ssrc uint32, now int64) {
	last := s.lastKF.Load()
	every := s.kfEvery.Load()
	if every == 0 || now-last > 2*every {
		every = int64(keyframeInterval) // first request, or recovered since
	}
	if now-last < every || !s.lastKF.CompareAndSwap(last, now) {
		return
	}
	s.kfEvery.Store(min(2*every, int64(maxKeyframeInterval)))
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
	defer s.drain()
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
		// Account for the whole batch at once: one atomic add per counter
		// per write, not per frame (these lines are shared with every
		// reader that enqueues for this participant).
		total := 0
		for i, fr := range frames {
			total += fr.n
			s.rt.frames.put(fr)
			frames[i] = nil
		}
		s.p.Queued.Add(-int64(total))
		if err == nil {
			payload := total - len(frames)*wire.FrameHeaderSize
			s.p.Stats.OutTotal(len(frames), payload)
			s.rt.streamLive.OutTotal(len(frames), payload)
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
// drain discards the queued frames and gives their bytes back to the
// participant's budget. Called by the writer on its way out, or instead of
// it when the stream never starts.
func (s *streamSink) drain() {
	for {
		select {
		case fr := <-s.q:
			s.p.Queued.Add(-int64(fr.n))
			s.rt.frames.put(fr)
		default:
			return
		}
	}
}

func (s *streamSink) close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.done)
	s.conn.Close()
}
