package router

import (
	"encoding/binary"
	"time"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// bindReq is a bind with a valid token, passed from a reader to the binder.
type bindReq struct {
	p     *session.Participant
	kind  media.Kind
	key   session.AddrKey
	group int
	txID  uint32
	src   egress.Src // local address the bind arrived at, if the socket is a wildcard
	srcB  uint16     // the source's bucket in Router.bindSrc
}

// binder is the one goroutine that binds flows to addresses: it applies
// each valid bind to the registry and answers it with a BindAck carrying
// the address it saw. Binding is off the packet path; readers only check
// the token.
type binder struct {
	rt   *Router
	out  []*egress.Batch
	buf  [wire.BindAckSize]byte
	pli  [12]byte
	ack  wire.BindAck
	live stats.Live
}

func newBinder(r *Router) *binder {
	b := &binder{rt: r}
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

func (b *binder) handle(req bindReq) {
	ap := req.key.AddrPort()
	if !b.rt.reg.Bind(req.p, req.kind, ap, req.group, req.src) {
		// The participant left, or the address is another flow's.
		b.live.Drop(stats.DropBadToken)
		return
	}
	b.ack = wire.BindAck{Kind: req.kind, Status: wire.StatusOK, TxID: req.txID, Mapped: ap}
	n, err := b.ack.MarshalTo(b.buf[:])
	if err != nil {
		return
	}
	rem := req.p.Flow(req.kind).Remote()
	if rem == nil || rem.Sink != nil {
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
	pli := b.pli[:]
	pli[0], pli[1], pli[2], pli[3] = 0x81, 206, 0, 2
	binary.BigEndian.PutUint32(pli[4:], 0)
	binary.BigEndian.PutUint32(pli[8:], req.ssrc)
	if rem.Sink != nil {
		rem.Sink.Enqueue(pli)
		return
	}
	o := b.out[rem.Group]
	o.Add(pli, rem.Dst, f.Kind, &f.Participant.Stats)
	o.Flush()
}
