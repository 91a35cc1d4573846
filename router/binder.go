package router

import (
	"encoding/binary"
	"time"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// bindReq is an authentic bind (authBind), passed from a reader to the binder.
type bindReq struct {
	p     *session.Participant
	kind  media.Kind
	key   session.AddrKey
	group int
	txID  uint32
	nonce uint64     // the Bind's Nonce: 0, or the echo of a challenge
	src   egress.Src // local address the bind arrived at, if the socket is a wildcard
	srcB  uint16     // the source's bucket in Router.bindSrc
}

// binder is the one goroutine that binds flows to addresses: it checks
// return routability, applies each verified bind to the registry and
// answers it with a BindAck carrying the address it saw. Binding is off
// the packet path; readers only authenticate the Bind (authBind).
type binder struct {
	rt   *Router
	out  []*egress.Batch
	buf  [wire.BindAckSize]byte
	pli  [12 + protect.RTCPOverhead]byte // a PLI, sealed in place for a protected flow
	ack  wire.BindAck
	pr   *prover
	live stats.Live
}

func newBinder(r *Router) *binder {
	b := &binder{rt: r, pr: newProver(r.nonceKey[:], r.cfg.nonceEpoch())}
	for _, g := range r.groups {
		b.out = append(b.out, egress.NewBatch(g.socks[0].FD(), g.v6, r.cfg.DSCP, &b.live))
	}
	return b
}

func (b *binder) run() {
	for {
		select {
		case <-b.rt.done:
			return
		case req := <-b.rt.binds:
			b.handle(req)
			req.p.BindsQueued.Add(-1)
			b.rt.bindSrc[req.srcB].Add(-1)
		case req := <-b.rt.keyframes:
			b.requestKeyframe(req)
		}
	}
}

// handle answers one valid bind. An address the flow is bound to, with
// fresh consent, is answered at once (a retransmission or a refresh).
// Any other address must first prove that it receives (return
// routability, as ICE connectivity checks do): the router answers a
// StatusVerify BindAck (smaller than the Bind) carrying a nonce, and binds
// the flow only when a Bind from the same address echoes it. A spoofed
// source therefore never gets media, and gets back less than was sent.
func (b *binder) handle(req bindReq) {
	ap := req.key.AddrPort()
	now := time.Now().UnixNano()
	f := req.p.Flow(req.kind)
	rem := f.Remote()
	bound := rem != nil && rem.Sink == nil && rem.Key == req.key && rem.Group == req.group &&
		f.MaySend(rem, now-int64(b.rt.cfg.ConsentTimeout))
	if !bound && !b.pr.check(purposeBind, f, &req.key, now, req.nonce, bindEpochsBack) {
		b.ack = wire.BindAck{Kind: req.kind, Status: wire.StatusVerify, TxID: req.txID, Mapped: ap,
			Nonce: b.pr.current(purposeBind, f, &req.key, now)}
		n, err := b.ack.MarshalTo(b.buf[:])
		if err != nil {
			return
		}
		o := b.out[req.group]
		o.Add(b.buf[:n], egress.AddrFrom(ap, req.src), req.kind, nil)
		o.Flush()
		b.rt.challenges.Add(1)
		return
	}
	if !b.rt.reg.Bind(req.p, req.kind, ap, req.group, req.src) {
		// The participant left, or the address is another flow's.
		b.live.Drop(stats.DropBadToken)
		return
	}
	rem = f.Remote()
	if rem == nil || rem.Sink != nil {
		return
	}
	b.ack = wire.BindAck{Kind: req.kind, Status: wire.StatusOK, TxID: req.txID, Mapped: ap,
		Nonce: b.pr.current(purposeConsent, f, &rem.Key, now)}
	n, err := b.ack.MarshalTo(b.buf[:])
	if err != nil {
		return
	}
	o := b.out[rem.Group]
	o.Add(b.buf[:n], rem.Dst, req.kind, nil)
	o.Flush()
}

// requestKeyframe sends an RTCP PLI (RFC 4585 §6.3.1; sender SSRC 0, the
// router itself) to the publisher of req.ssrc.
func (b *binder) requestKeyframe(req keyframeReq) {
	f, ok := req.meeting.Owner(req.ssrc)
	if !ok {
		return
	}
	if !f.AllowKeyframe(req.ssrc, time.Now().UnixNano(), int64(b.rt.cfg.KeyframeInterval)) {
		b.live.Drop(stats.DropKeyframeThrottled)
		return
	}
	rem := f.Remote()
	if rem == nil {
		return
	}
	pli := b.pli[:12]
	pli[0], pli[1], pli[2], pli[3] = 0x81, 206, 0, 2
	binary.BigEndian.PutUint32(pli[4:], 0)
	binary.BigEndian.PutUint32(pli[8:], req.ssrc)
	pli, ok = sealInPlace(f, pli)
	if !ok {
		b.live.Drop(stats.DropRTCPSeal)
		return
	}
	if rem.Sink != nil {
		rem.Sink.Enqueue(pli)
		return
	}
	o := b.out[rem.Group]
	o.Add(pli, rem.Dst, f.Kind, &f.Participant.Stats)
	o.Flush()
}
