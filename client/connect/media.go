package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/client/streammedia"
	"github.com/openmmr/mmr/client/udpmedia"
	ctlproto "github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// Attempt is one try of one transport for one kind.
type Attempt struct {
	Transport string        `json:"transport"`
	Addr      string        `json:"addr"`
	Took      time.Duration `json:"took_ns"`
	Err       string        `json:"error,omitempty"`
}

// MediaReport is the media phase's decision for one kind.
type MediaReport struct {
	Kind      string    `json:"kind"`
	Transport string    `json:"transport,omitempty"`
	Addr      string    `json:"addr,omitempty"`
	Order     []string  `json:"order"` // the transports tried, in order
	Why       string    `json:"why"`
	Attempts  []Attempt `json:"attempts"`
	Err       string    `json:"error,omitempty"`
}

// link is one bound transport flow of a kind: a UDP flow or a stream.
type link struct {
	transport string
	addr      string
	k         media.Kind
	udp       *udpmedia.Flow
	stream    *streammedia.Flow
	done      chan struct{} // closed when the reader exits
	acked     atomic.Int64  // unix nanos of the last KeepaliveAck
	closeOnce sync.Once
}

func (l *link) send(pkt []byte) error {
	if l.udp != nil {
		return l.udp.Send(pkt)
	}
	return l.stream.Send(pkt)
}

func (l *link) keepalive() error {
	if l.udp != nil {
		return l.udp.Keepalive()
	}
	var b [wire.KeepaliveSize]byte
	k := wire.Keepalive{Kind: l.kind(), TxID: 1}
	if _, err := k.MarshalTo(b[:]); err != nil {
		return err
	}
	return l.stream.Send(b[:])
}

func (l *link) kind() media.Kind { return l.k }

func (l *link) recv(buf []byte) (int, error) {
	if l.udp != nil {
		return l.udp.Recv(buf, time.Time{})
	}
	return l.stream.Recv(buf, time.Time{})
}

func (l *link) close() {
	l.closeOnce.Do(func() {
		if l.udp != nil {
			l.udp.Close()
		} else {
			l.stream.Close()
		}
	})
}

// Flow is the media of one kind: the link in use, the reader of each link,
// the keepalives and the background UDP retry. Send is safe for concurrent
// use; the packet is not retained.
type Flow struct {
	kind   media.Kind
	s      *Session
	order  []string // transports allowed, in fallback order
	cur    atomic.Pointer[link]
	log    *slog.Logger
	mu     sync.Mutex // serialises reconnects and moves
	closed bool
	dead   chan *link // a current link whose reader ended (the path died under it); buffered 1

	sentPkts, sentBytes, recvPkts, recvBytes, moves, sendErrs atomic.Uint64
	rejected                                                  atomic.Uint64 // packets that did not open, every link
}

// protection is what a Flow gives each of its links: the kind's media
// protection, counting the packets that do not open for FlowStats.
type protection struct {
	f        secure.Flow
	rejected *atomic.Uint64
}

func (p protection) Seal(dst, pkt []byte) ([]byte, error) { return p.f.Seal(dst, pkt) }

func (p protection) Open(dst, pkt []byte) ([]byte, error) {
	out, err := p.f.Open(dst, pkt)
	if err != nil {
		p.rejected.Add(1)
	}
	return out, err
}

// FlowStats are a kind's counters. They only grow.
type FlowStats struct {
	Transport                                string
	PacketsOut, BytesOut, PacketsIn, BytesIn uint64
	Moves                                    uint64 // transport changes after the first
	SendErrors                               uint64
	// Rejected counts received packets dropped because they did not open
	// (by reason in Session.Media().Stats()); not in PacketsIn.
	Rejected uint64
}

// Kind returns the flow's media kind.
func (f *Flow) Kind() media.Kind { return f.kind }

// Transport returns the transport in use ("udp", "tcp", "tls").
func (f *Flow) Transport() string {
	if l := f.cur.Load(); l != nil {
		return l.transport
	}
	return ""
}

// Stats returns the flow's counters.
func (f *Flow) Stats() FlowStats {
	return FlowStats{Transport: f.Transport(), PacketsOut: f.sentPkts.Load(), BytesOut: f.sentBytes.Load(),
		PacketsIn: f.recvPkts.Load(), BytesIn: f.recvBytes.Load(), Moves: f.moves.Load(), SendErrors: f.sendErrs.Load(),
		Rejected: f.rejected.Load()}
}

// Send sends one RTP or RTCP packet on the current link. A failed send is
// counted and returned; the keepalive logic reconnects a dead link.
func (f *Flow) Send(pkt []byte) error {
	l := f.cur.Load()
	if l == nil {
		return errors.New("connect: flow closed")
	}
	if err := l.send(pkt); err != nil {
		f.sendErrs.Add(1)
		return err
	}
	f.sentPkts.Add(1)
	f.sentBytes.Add(uint64(len(pkt)))
	return nil
}

// endpointsOf returns the kind's endpoints per transport, in the order the
// server listed them.
func endpointsOf(eps []ctlproto.Endpoint, k media.Kind) map[string][]netip.AddrPort {
	out := map[string][]netip.AddrPort{}
	for _, e := range eps {
		if media.Kind(e.Kind) == k {
			out[e.Transport] = append(out[e.Transport], e.Addr)
		}
	}
	return out
}

// dialLink tries transport t for kind k on each of its endpoints, each
// bounded by the transport's timeout.
func (s *Session) dialLink(ctx context.Context, k media.Kind, t string, rep *MediaReport) (*link, error) {
	addrs := endpointsOf(s.joined.Endpoints, k)[t]
	if len(addrs) == 0 {
		rep.Attempts = append(rep.Attempts, Attempt{Transport: t, Err: "no endpoint"})
		return nil, fmt.Errorf("no %s endpoint", t)
	}
	var errs []error
	for _, a := range addrs {
		addr := a.String()
		start := time.Now()
		l, err := s.dialOne(ctx, k, t, a, addr)
		at := Attempt{Transport: t, Addr: addr, Took: time.Since(start)}
		if err != nil {
			at.Err = err.Error()
			errs = append(errs, err)
		}
		if rep != nil {
			rep.Attempts = append(rep.Attempts, at)
		}
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (s *Session) dialOne(ctx context.Context, k media.Kind, t string, a netip.AddrPort, addr string) (*link, error) {
	tok := s.token
	l := &link{transport: t, addr: addr, k: k, done: make(chan struct{})}
	switch t {
	case UDP:
		ctx, cancel := context.WithTimeout(ctx, s.cfg.UDPGiveUp)
		defer cancel()
		var local netip.AddrPort
		if s.cfg.LocalAddr.IsValid() {
			local = netip.AddrPortFrom(s.cfg.LocalAddr, 0)
		}
		f, err := udpmedia.DialFrom(ctx, local, a, k, tok)
		if err != nil {
			return nil, err
		}
		f.Protect(s.protection(k))
		l.udp = f
	case TCP:
		ctx, cancel := context.WithTimeout(ctx, s.cfg.TCPTimeout)
		defer cancel()
		f, err := streammedia.DialWith(ctx, s.dial.DialContext, addr, k, tok, nil)
		if err != nil {
			return nil, err
		}
		f.Protect(s.protection(k))
		l.stream = f
	case TLS:
		ctx, cancel := context.WithTimeout(ctx, s.cfg.TLSTimeout)
		defer cancel()
		f, err := streammedia.DialWith(ctx, s.dial.DialContext, addr, k, tok, s.mmrTLS)
		if err != nil {
			return nil, err
		}
		f.Protect(s.protection(k))
		l.stream = f
	default:
		return nil, fmt.Errorf("unknown transport %q", t)
	}
	return l, nil
}

// protection returns kind k's protection for a new link of its Flow.
func (s *Session) protection(k media.Kind) protection {
	p := protection{f: s.sec.Flow(k), rejected: new(atomic.Uint64)}
	if f := s.Flow(k); f != nil {
		p.rejected = &f.rejected
	}
	return p
}

// connectFlow walks the kind's fallback order and starts the flow on the
// first transport that binds.
func (s *Session) connectFlow(ctx context.Context, f *Flow, rep *MediaReport) error {
	var errs []error
	for _, t := range f.order {
		l, err := s.dialLink(ctx, f.kind, t, rep)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rep.Transport, rep.Addr = t, l.addr
		f.install(l)
		return nil
	}
	return errors.Join(errs...)
}

// install makes l the flow's link, starts its reader and closes the link
// it replaces (after the switch: no gap on the sending side).
func (f *Flow) install(l *link) {
	l.acked.Store(time.Now().UnixNano())
	f.s.wg.Add(1)
	go f.read(l)
	if old := f.cur.Swap(l); old != nil {
		f.moves.Add(1)
		old.close()
	}
}

// read delivers a link's packets until it is closed.
func (f *Flow) read(l *link) {
	defer f.s.wg.Done()
	defer close(l.done)
	buf := make([]byte, 2048)
	for {
		n, err := l.recv(buf)
		if err != nil {
			// Still the flow's link: neither replaced nor closed by us, so
			// the path ended under it (a stream cut, a tunnel server gone).
			// maintain re-dials at once instead of waiting for the
			// keepalives to notice.
			if f.cur.Load() == l {
				select {
				case f.dead <- l:
				default:
				}
			}
			return
		}
		pkt := buf[:n]
		switch wire.Classify(pkt) {
		case wire.ClassKeepaliveAck:
			l.acked.Store(time.Now().UnixNano())
			continue
		case wire.ClassBindAck:
			continue // a late answer to a retransmitted bind
		}
		l.acked.Store(time.Now().UnixNano()) // media is proof of life too
		f.recvPkts.Add(1)
		f.recvBytes.Add(uint64(n))
		if f.s.cfg.OnMedia != nil {
			f.s.cfg.OnMedia(f.kind, pkt)
		}
	}
}

// maintain runs the keepalives and, when the flow is not on the first
// transport of its order, the background retry of the better ones.
func (f *Flow) maintain() {
	defer f.s.wg.Done()
	ka := time.NewTicker(f.s.cfg.Keepalive)
	defer ka.Stop()
	retry := time.NewTicker(f.s.cfg.UDPRetry)
	defer retry.Stop()
	var again <-chan time.Time // re-dial of a dead link that failed: try again
	wait := deadRetry          // doubles per failed re-dial, up to 3 keepalive intervals
	redial := func(l *link) {
		if f.cur.Load() != l {
			return // replaced or closed meanwhile
		}
		f.log.Info("connect: media link ended, re-dialling", "kind", f.kind, "transport", l.transport)
		if !f.reconnect(l) && f.cur.Load() == l {
			again = time.After(wait)
			wait = min(2*wait, 3*f.s.cfg.Keepalive)
			return
		}
		wait = deadRetry
	}
	for {
		select {
		case <-f.s.ctx.Done():
			return
		case l := <-f.dead:
			redial(l)
		case <-again:
			again = nil
			if l := f.cur.Load(); l != nil {
				select {
				case <-l.done:
					redial(l)
				default: // alive again (replaced by a move): nothing to do
				}
			}
		case <-ka.C:
			l := f.cur.Load()
			if l == nil {
				continue
			}
			// Three keepalive intervals without an answer (or any media):
			// the path is gone, reconnect through the fallback order.
			if time.Since(time.Unix(0, l.acked.Load())) > 3*f.s.cfg.Keepalive {
				f.log.Info("connect: media path silent, reconnecting", "kind", f.kind, "transport", l.transport)
				f.reconnect(l)
				continue
			}
			_ = l.keepalive()
		case <-retry.C:
			if l := f.cur.Load(); l != nil && len(f.order) > 1 && l.transport != f.order[0] {
				f.upgrade(l)
			}
		}
	}
}

// upgrade tries the first transport of the order (UDP) and moves the kind
// to it when it binds. The router moves the flow at the bind; the old link
// is closed right after the switch.
func (f *Flow) upgrade(old *link) {
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.cfg.UDPGiveUp+f.s.cfg.TCPTimeout)
	defer cancel()
	for _, t := range f.order {
		if t == old.transport {
			return // nothing better works
		}
		l, err := f.s.dialLink(ctx, f.kind, t, nil)
		if err != nil {
			continue
		}
		f.mu.Lock()
		if f.closed || f.cur.Load() != old {
			f.mu.Unlock()
			l.close()
			return
		}
		f.install(l)
		f.mu.Unlock()
		f.log.Info("connect: media moved back", "kind", f.kind, "from", old.transport, "to", t)
		return
	}
}

// deadRetry is the first pause before trying again when the re-dial of a
// dead link failed (it doubles per failure, up to 3 keepalive intervals,
// so a server that keeps refusing is not hammered): the failure has
// already made the tunnel session skip the tunnel that died, so half a
// second is enough while staying well within the 3 s a move to another
// tunnel may take.
const deadRetry = 500 * time.Millisecond

// reconnect replaces a silent or dead link through the whole fallback
// order. It reports whether old is no longer the flow's link (replaced,
// by it or by a concurrent move, or the flow closed).
func (f *Flow) reconnect(old *link) bool {
	ctx, cancel := context.WithTimeout(f.s.ctx, f.s.cfg.UDPGiveUp+f.s.cfg.TCPTimeout+f.s.cfg.TLSTimeout)
	defer cancel()
	for _, t := range f.order {
		l, err := f.s.dialLink(ctx, f.kind, t, nil)
		if err != nil {
			continue
		}
		f.mu.Lock()
		if f.closed || f.cur.Load() != old {
			f.mu.Unlock()
			l.close()
			return true
		}
		f.install(l)
		f.mu.Unlock()
		f.log.Info("connect: media reconnected", "kind", f.kind, "transport", t)
		return true
	}
	return f.cur.Load() != old
}

// close closes the flow's link.
func (f *Flow) close() {
	f.mu.Lock()
	f.closed = true
	l := f.cur.Swap(nil)
	f.mu.Unlock()
	if l != nil {
		l.close()
	}
}
