package load

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// endpoint is one participant's media of one kind: a batched UDP socket of
// the engine, or (TCP/TLS, and before a UDP kind moves to the engine) the
// connection process's own flow.
type endpoint struct {
	p      *participant
	kind   media.Kind
	agg    *agg // the reader's aggregate (UDP) or the shared stream one
	fd     int  // -1: no engine socket
	slot   int
	server netip.AddrPort
	batch  *egress.Batch // UDP sends; only the sender goroutine uses it
	dst    *egress.Addr
	txLive stats.Live
	flow   atomic.Pointer[connect.Flow] // stream transport in use, nil on the engine's socket

	mu      sync.Mutex // guards streams (inner to agg.mu)
	streams map[uint32]*streamRx

	rtp, other, inWin, kaAcks atomic.Uint64
	rejected                  atomic.Uint64 // SRTP that did not open (or before the protection was set)
	unprotected               atomic.Uint64 // of those, the ones before the protection was set
	ovfl                      atomic.Uint32 // kernel receive-queue drops (SO_RXQ_OVFL)
	bound                     chan struct{}
	boundOnce                 sync.Once
	// challenge is the router's return-routability nonce (a StatusVerify
	// BindAck) that the next Bind echoes; verify is signalled when one
	// arrives so the Bind is re-sent at once. consent is the nonce of the
	// last OK BindAck or KeepaliveAck, echoed by every Keepalive (RFC 7675
	// consent freshness, docs/PROTOCOL.md "Binding a flow", "Keepalives").
	challenge, consent atomic.Uint64
	// token is the media token the socket was last bound with: it signs
	// the Binds (binds counts them) and the Keepalives' consent echoes.
	token     atomic.Pointer[wire.Token]
	binds     wire.BindCounter
	verify    chan struct{}
	transport string
}

func newEndpoint(p *participant, k media.Kind, streamAgg *agg) *endpoint {
	return &endpoint{p: p, kind: k, fd: -1, agg: streamAgg, bound: make(chan struct{}), verify: make(chan struct{}, 1)}
}

// onPacket handles one datagram read by a UDP reader, which holds
// ep.agg.mu.
func (ep *endpoint) onPacket(pkt []byte, now int64) {
	switch wire.Classify(pkt) {
	case wire.ClassBindAck:
		var ack wire.BindAck
		if ack.Unmarshal(pkt) != nil || ack.Kind != ep.kind {
			ep.other.Add(1)
			return
		}
		switch ack.Status {
		case wire.StatusVerify: // echo the challenge from this socket
			ep.challenge.Store(ack.Nonce)
			select {
			case ep.verify <- struct{}{}:
			default:
			}
		case wire.StatusOK:
			ep.consent.Store(ack.Nonce)
			ep.boundOnce.Do(func() { close(ep.bound) })
		default:
			ep.other.Add(1)
		}
	case wire.ClassKeepaliveAck:
		var ka wire.Keepalive
		if ka.Unmarshal(pkt) == nil && ka.Ack {
			ep.consent.Store(ka.Nonce)
		}
		ep.kaAcks.Add(1)
	case wire.ClassRTP:
		// SRTP, opened in place (pkt is the reader's buffer).
		sec := ep.p.sec.Load()
		if sec == nil {
			ep.rejected.Add(1)
			ep.unprotected.Add(1)
			return
		}
		out, err := sec.OpenRTP(pkt[:0], pkt)
		if err != nil {
			ep.rejected.Add(1) // by reason in the participant's protection Stats
			return
		}
		ep.agg.onRTP(ep, out, now)
	case wire.ClassRTCP:
		ep.other.Add(1) // the router's SRTCP (PLIs, reports): not measured
	default:
		ep.other.Add(1)
	}
}

// isBound reports whether the engine socket got its BindAck.
func (ep *endpoint) isBound() bool {
	select {
	case <-ep.bound:
		return true
	default:
		return false
	}
}

// onStream handles one packet the connection process delivered (a stream
// transport, or a UDP kind before it moved to the engine), on that flow's
// reader goroutine.
func (ep *endpoint) onStream(a *agg, pkt []byte) {
	if wire.Classify(pkt) != wire.ClassRTP {
		ep.other.Add(1)
		return
	}
	now := time.Now().UnixNano()
	a.mu.Lock()
	a.onRTP(ep, pkt, now)
	a.mu.Unlock()
}

// sendStream sends one frame on the connection process's flow.
func (ep *endpoint) sendStream(f *connect.Flow, pkts [][]byte, now int64) {
	for _, p := range pkts {
		stamp(p, now)
		if err := f.Send(p); err != nil {
			ep.txLive.Drop(stats.DropSendError)
			continue
		}
		ep.txLive.Out(1, len(p))
	}
}

// streamTotals sums the per-SSRC receive state.
func (ep *endpoint) streamTotals() (received, dups, reordered uint64, jitters []float64) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for _, s := range ep.streams {
		received += s.received
		dups += s.dups
		reordered += s.reordered
		jitters = append(jitters, s.jitterNS)
	}
	return
}
