package load

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/media"
)

// pubStream is one published stream: its generator, its endpoint and its
// schedule. Only its sender goroutine touches it after add.
type pubStream struct {
	ep      *endpoint
	gen     *generator
	due     time.Time
	subs    atomic.Int64 // subscribers in its meeting, set before the window opens
	sentAll uint64
	sentWin uint64
	late    uint64 // frames sent more than one interval behind schedule
	arena   []byte // the sealed packets of the frame being sent (SRTP)
}

// sender paces the frames of its streams: a heap by due time, one timer.
// The first frame of each stream goes out at a random phase of its
// interval, so a meeting of 100 publishers does not send in lockstep.
type sender struct {
	e       *udpEngine
	win     *window
	add     chan *pubStream
	stop    chan struct{}
	h       streamHeap
	all     []*pubStream
	exp     [][media.NumKinds]uint64 // expected receptions per window second (sent × subscribers)
	expLive atomic.Uint64
	txLive  atomic.Uint64
}

type streamHeap []*pubStream

func (h streamHeap) Len() int           { return len(h) }
func (h streamHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h streamHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *streamHeap) Push(x any)        { *h = append(*h, x.(*pubStream)) }
func (h *streamHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newSender(e *udpEngine, win *window) *sender {
	return &sender{e: e, win: win, add: make(chan *pubStream, 64), stop: make(chan struct{})}
}

func (s *sender) run(wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		for s.h.Len() > 0 && !s.h[0].due.After(now) {
			st := s.h[0]
			s.frame(st)
			st.due = st.due.Add(st.gen.p.Interval)
			if now.Sub(st.due) > st.gen.p.Interval { // fell behind: skip ahead, count it
				st.late++
				st.due = now.Add(st.gen.p.Interval)
			}
			heap.Fix(&s.h, 0)
		}
		wait := time.Hour
		if s.h.Len() > 0 {
			wait = time.Until(s.h[0].due)
		}
		t.Reset(wait)
		select {
		case <-s.stop:
			return
		case st := <-s.add:
			s.all = append(s.all, st)
			heap.Push(&s.h, st)
		case <-t.C:
		}
	}
}

// frame sends st's next frame and accounts it.
func (s *sender) frame(st *pubStream) {
	pkts := st.gen.next()
	now := time.Now() // the stamp and the window agree on the same instant
	if f := st.ep.flow.Load(); f != nil {
		st.ep.sendStream(f, pkts, now.UnixNano())
	} else {
		s.e.send(st, pkts, now.UnixNano())
	}
	n := uint64(len(pkts))
	st.sentAll += n
	s.txLive.Add(n)
	if sec, ok := s.win.in(now.UnixNano()); ok {
		st.sentWin += n
		for len(s.exp) <= sec {
			s.exp = append(s.exp, [media.NumKinds]uint64{})
		}
		subs := uint64(st.subs.Load())
		s.exp[sec][st.ep.kind.Index()] += n * subs
		s.expLive.Add(n * subs)
	}
}
