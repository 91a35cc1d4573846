package router

import (
	"errors"
	"math"
	"runtime"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/pion/rtp"

	"github.com/openmmr/mmr/egress"
	"github.com/openmmr/mmr/ingress"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// reader is the packet path of one socket: it reads a batch, routes every
// packet, queues the copies in per-group egress batches and flushes them
// before the next read (the copies point into the read buffers). All of
// its state is owned by its goroutine; live is read by Stats.
type reader struct {
	rt    *Router
	group int
	sock  *ingress.Socket
	in    *ingress.Batch
	out   []*egress.Batch // per listener group
	live  *stats.Live     // own counters (UDP), or the shared stream totals

	now   int64 // Unix nanoseconds of the current batch, for idle expiry
	after int64 // consent older than this has lapsed (now - ConsentTimeout)
	pr    *prover
	co    coalescer // whether the next read waits for a datagram or follows a pause
	hdr   rtp.Header
	rtcp  wire.RTCPRoute
	bind  wire.Bind
	ka    wire.Keepalive
	sent  [wire.MaxRTCPTargets]*session.Flow // RTCP destinations already used

	// RTCP copies sealed per destination (rtcp.go): arena[:arenaUsed] holds
	// those queued since the last flush. Allocated on first use.
	arena     []byte
	arenaUsed int
	arenaSize int

	// UDP GSO (nil segs: off, or a stream reader): consecutive RTP packets
	// of one route and kind, of one size but for a shorter last one, are
	// queued as a run and sent as one super-packet per UDP destination
	// (egress.Batch.AddRun). segs[0:cursor] are this batch's queued packets.
	segs   *egress.Segs
	cursor int
	pend   pendingRun
}

// pendingRun is the run being collected: the packets segs[r.First:] routed
// to route's destinations as kind.
type pendingRun struct {
	route  *session.Route
	kind   media.Kind
	r      egress.Run
	closed bool // its last packet is shorter than r.Size: nothing may follow
}

func newReader(r *Router, g, idx int, s *ingress.Socket) *reader {
	rd := &reader{rt: r, group: g, sock: s, in: ingress.NewBatch(r.cfg.Batch), live: new(stats.Live), pr: newProver(r.nonceKey[:], r.cfg.nonceEpoch()), arenaSize: r.cfg.arenaSize(rtcpArenaUDP)}
	for gi, grp := range r.groups {
		fd := r.sendFD(gi, idx)
		if gi == g {
			fd = s.FD() // reply from the very socket the group's packets arrive on
		}
		rd.out = append(rd.out, egress.NewBatch(fd, grp.v6, r.cfg.DSCP, rd.live))
	}
	if r.cfg.Coalesce > 0 {
		rd.co.window = int64(r.cfg.Coalesce)
	}
	if !r.cfg.DisableGSO {
		gso := false
		for _, o := range rd.out {
			gso = o.EnableGSO() || gso
		}
		if gso {
			rd.segs = egress.NewSegs(r.cfg.Batch, r.cfg.Batch*MaxPacket)
		}
	}
	return rd
}

// newStreamReader returns the routing state of one stream connection: no
// socket to read, UDP batches to reach UDP subscribers, and the router's
// stream totals as its counters.
func newStreamReader(r *Router, idx int) *reader {
	rd := &reader{rt: r, group: -1, live: &r.streamLive, pr: newProver(r.nonceKey[:], r.cfg.nonceEpoch()), arenaSize: r.cfg.arenaSize(rtcpArenaStream)}
	for gi, grp := range r.groups {
		rd.out = append(rd.out, egress.NewBatchSize(r.sendFD(gi, idx), grp.v6, r.cfg.DSCP, rd.live, streamBatch))
	}
	return rd
}

func (rd *reader) run() {
	if rd.rt.cfg.ReadMode == ingress.Blocking {
		// A blocking recvmmsg on a thread of its own sleeps in the kernel
		// and wakes straight into this loop: no netpoller round trip.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	pause := false
	for {
		var n int
		var err error
		if pause {
			rd.sock.Pause(time.Duration(rd.co.window))
			n, err = rd.sock.ReadNow(rd.in)
		} else {
			n, err = rd.sock.Read(rd.in)
		}
		if err != nil {
			if !errors.Is(err, ingress.ErrClosed) {
				rd.rt.log.Error("router: reader stopped", "addr", rd.sock.LocalAddr(), "err", err)
			}
			return
		}
		if n > 0 {
			if pause {
				rd.live.Coalesce()
			}
			rd.process(n)
		} else {
			rd.now = time.Now().UnixNano() // an empty pause ends it
		}
		pause = rd.co.next(n, n == rd.in.Cap(), rd.now)
	}
}

// process routes the n packets of the current batch and sends the copies.
func (rd *reader) process(n int) {
	rd.cursor = 0
	if rd.segs != nil {
		rd.segs.Reset()
	}
	rd.stamp(time.Now().UnixNano())
	i := 0
	if age := int64(rd.rt.cfg.MaxPacketAge); age > 0 && n > 0 {
		// A socket's datagrams come in arrival order: if the first is
		// fresh, all are (one timestamp read per batch); after a stall,
		// the stale ones are a prefix.
		for ; i < n; i++ {
			if ts := rd.in.Received(i); ts == 0 || rd.now-ts <= age {
				break
			}
			rd.handleStale(i)
		}
	}
	for ; i < n; i++ {
		rd.handle(i)
	}
	rd.endRun()
	rd.flush()
}

// handleStale serves datagram i, received more than MaxPacketAge ago:
// binds and keepalives as usual (a client waits for their answers), media
// dropped as DropStale.
func (rd *reader) handleStale(i int) {
	pkt, _ := rd.in.Packet(i)
	switch wire.Classify(pkt) {
	case wire.ClassRTP, wire.ClassRTCP:
		rd.live.In(len(pkt))
		rd.live.Drop(stats.DropStale)
	default:
		rd.handle(i)
	}
}

// stamp sets the time of the packets about to be routed.
func (rd *reader) stamp(now int64) {
	rd.now = now
	rd.after = math.MinInt64 // consent checks off
	if ct := rd.rt.cfg.ConsentTimeout; ct > 0 {
		rd.after = now - int64(ct)
	}
}

// flush sends the queued UDP copies; the packets they point at (and the
// RTCP arena) may be reused afterwards.
func (rd *reader) flush() {
	for _, o := range rd.out {
		if o.Pending() > 0 {
			o.Flush()
		}
	}
	rd.arenaUsed = 0
}

func (rd *reader) handle(i int) {
	pkt, trunc := rd.in.Packet(i)
	rd.live.In(len(pkt))
	var key session.AddrKey
	if !rd.in.Source(i, (*[18]byte)(&key)) {
		rd.live.Drop(stats.DropMalformed)
		return
	}
	if trunc || len(pkt) > MaxPacket {
		rd.live.Drop(stats.DropOversize)
		return
	}
	cls := wire.Classify(pkt)
	switch cls {
	case wire.ClassBind:
		rd.handleBind(i, pkt, key)
		return
	case wire.ClassUnknown, wire.ClassBindAck, wire.ClassKeepaliveAck:
		// Nothing a client sends, from any source (docs/PROTOCOL.md,
		// Drop reasons): malformed, not unbound_source.
		rd.live.Drop(stats.DropMalformed)
		return
	}
	f, ok := rd.rt.reg.Flows.Get(key)
	if !ok {
		rd.live.Drop(stats.DropUnbound)
		return
	}
	f.Seen(rd.now)
	rd.fromFlow(pkt, cls, f)
}

// fromFlow routes one packet of class cls that arrived on bound flow f,
// whatever its transport.
func (rd *reader) fromFlow(pkt []byte, cls wire.Class, f *session.Flow) {
	switch cls {
	case wire.ClassRTP:
		rd.handleRTP(pkt, f)
	case wire.ClassRTCP:
		rd.handleRTCP(pkt, f)
	case wire.ClassKeepalive:
		rd.handleKeepalive(pkt, f)
	default:
		rd.drop(f, stats.DropMalformed)
	}
}

func (rd *reader) drop(f *session.Flow, r stats.DropReason) {
	rd.live.Drop(r)
	f.Participant.Stats.Drop(r)
}

func (rd *reader) handleRTP(pkt []byte, f *session.Flow) {
	if _, err := rd.hdr.Unmarshal(pkt); err != nil {
		rd.drop(f, stats.DropMalformed)
		return
	}
	if !f.Publishes(rd.hdr.SSRC) {
		rd.drop(f, stats.DropUnknownSSRC)
		return
	}
	f.Participant.Stats.In(len(pkt))
	if f.Kind == media.Audio && rd.hdr.Extension {
		// Active-speaker input: one atomic add, read by TakeVoice.
		if lv := rd.hdr.GetExtension(wire.AudioLevelExtID); len(lv) > 0 {
			f.Participant.Voice.Add(1<<32 | uint64(127-lv[0]&0x7f))
		}
	}
	if rd.segs == nil {
		rd.fanout(pkt, f.Kind, f.Route().Dests)
		return
	}
	rd.queueRun(pkt, f.Kind, f.Route())
}

// queueRun adds pkt to the pending run, or ends that run and starts a new
// one when pkt cannot join it: another route or kind, a packet longer than
// the run's size or following a shorter one, or the run full (segments or
// bytes).
func (rd *reader) queueRun(pkt []byte, k media.Kind, route *session.Route) {
	ru := &rd.pend
	if ru.r.N > 0 && (ru.route != route || ru.kind != k || ru.closed || len(pkt) > ru.r.Size ||
		ru.r.N == egress.MaxSegments || ru.r.Bytes+len(pkt) > egress.MaxRunBytes) {
		rd.endRun()
	}
	if ru.r.N == 0 {
		ru.route, ru.kind, ru.closed = route, k, false
		ru.r = egress.Run{First: rd.cursor, Size: len(pkt)}
	}
	rd.segs.Set(rd.cursor, pkt)
	rd.cursor++
	ru.r.N++
	ru.r.Bytes += len(pkt)
	ru.closed = len(pkt) < ru.r.Size
}

// endRun queues the copies of the pending run: one super-packet per UDP
// destination (one message per packet for a run of one), each packet
// framed for a stream destination. Every destination's Remote is read once
// per run.
func (rd *reader) endRun() {
	ru := &rd.pend
	switch {
	case ru.r.N == 0:
		return
	case ru.r.N == 1:
		rd.fanout(rd.segs.Packet(ru.r.First), ru.kind, ru.route.Dests)
	default:
		staged := false
		for _, d := range ru.route.Dests {
			rem := d.Remote()
			switch {
			case rem == nil:
			case !d.MaySend(rem, rd.after): // as in fanout: every copy of the run
				for range ru.r.N {
					rd.drop(d, stats.DropNoConsent)
				}
			case rem.Sink != nil:
				for j := ru.r.First; j < ru.r.First+ru.r.N; j++ {
					rem.Sink.Enqueue(rd.segs.Packet(j))
				}
			default:
				if !staged { // one copy of the run, for every UDP destination
					rd.segs.Stage(&ru.r)
					staged = true
				}
				rd.out[rem.Group].AddRun(rd.segs, ru.r, rem.Dst, ru.kind, &d.Participant.Stats)
			}
		}
	}
	ru.r.N = 0
	ru.route = nil
}

// fanout queues one copy of pkt per bound destination flow. Every copy
// points at the same buffer.
func (rd *reader) fanout(pkt []byte, k media.Kind, dests []*session.Flow) {
	for _, d := range dests {
		if rem := d.Remote(); rem != nil {
			if !d.MaySend(rem, rd.after) {
				rd.drop(d, stats.DropNoConsent)
				continue
			}
			rd.sendTo(rem, pkt, k, &d.Participant.Stats)
		}
	}
}

// sendTo queues pkt for one destination: a UDP copy in the egress batch of
// its listener group, or a framed copy in its stream's send queue.
func (rd *reader) sendTo(rem *session.Remote, pkt []byte, k media.Kind, owner *stats.Live) {
	if rem.Sink != nil {
		rem.Sink.Enqueue(pkt)
		return
	}
	rd.out[rem.Group].Add(pkt, rem.Dst, k, owner)
}

// handleRTCP sends sender reports and BYE to the flow's subscribers and
// feedback (reports, NACK, PLI, FIR, REMB) to the publishers of the SSRCs it
// names, each destination once, the compound packet's content unchanged:
// SRTCP from a protected flow is opened first and each copy sealed for its
// destination (rtcp.go).
func (rd *reader) handleRTCP(pkt []byte, f *session.Flow) {
	rd.endRun() // copies leave in arrival order
	size := len(pkt)
	pkt, ok := rd.openRTCP(pkt, f)
	if !ok {
		return
	}
	if err := rd.rtcp.Parse(pkt); err != nil {
		rd.drop(f, stats.DropRTCPMalformed)
		return
	}
	p := f.Participant
	routed := false
	if rd.rtcp.ToSubscribers && f.Publishes(rd.rtcp.Sender) {
		rd.fanoutRTCP(pkt, f.Route().Dests)
		routed = true
	}
	ns := 0
	var now int64 // read once, only if the compound asks for a keyframe
	for i, ssrc := range rd.rtcp.Targets[:rd.rtcp.N] {
		owner, ok := p.Meeting.Owner(ssrc)
		if !ok || owner.Participant == p {
			continue
		}
		routed = true
		if !owner.Route().Has(p.Flow(owner.Kind)) {
			// Feedback about a stream the sender does not receive (never
			// subscribed, or unsubscribed since): it has nothing to report,
			// and must not make the publisher resend or re-encode.
			rd.drop(f, stats.DropRTCPNotSubscribed)
			continue
		}
		if rd.rtcp.IsKeyframe(i) {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if !owner.AllowKeyframe(ssrc, now, int64(rd.rt.cfg.KeyframeInterval)) {
				// The publisher was asked moments ago: its keyframe is on
				// the way. The compound is not sent to it for this target.
				rd.drop(f, stats.DropKeyframeThrottled)
				continue
			}
		}
		dup := false
		for _, s := range rd.sent[:ns] {
			if s == owner {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		rd.sent[ns] = owner
		ns++
		if rem := owner.Remote(); rem != nil {
			if !owner.MaySend(rem, rd.after) {
				rd.drop(owner, stats.DropNoConsent)
				continue
			}
			rd.sendRTCP(owner, rem, pkt)
		}
	}
	clear(rd.sent[:ns])
	if !routed {
		rd.drop(f, stats.DropRTCPUnknownSSRC)
		return
	}
	p.Stats.In(size)
}

// handleKeepalive answers in place: the ack is the same packet with the
// type byte changed and the router's current consent nonce, sent back to
// the flow's address from the socket it arrived on. A Keepalive that
// echoes a recent consent nonce (wire.ConsentEcho under the participant's
// token) renews the flow's consent (RFC 7675): only a client that
// receives at the address learns the nonce, and only one that holds the
// token can echo it, so spoofed Keepalives, and Keepalives from an
// observer who sees the nonces, keep nothing flowing. A Keepalive never
// binds or moves a flow: it is served only when it arrives from the
// address the flow is bound to.
func (rd *reader) handleKeepalive(pkt []byte, f *session.Flow) {
	rd.endRun()
	if err := rd.ka.Unmarshal(pkt); err != nil || rd.ka.Ack || rd.ka.Kind != f.Kind {
		rd.drop(f, stats.DropMalformed)
		return
	}
	rem := f.Remote()
	if rem == nil {
		return
	}
	echo := rd.ka.Nonce
	rd.ka.Ack, rd.ka.Nonce = true, 0
	if rem.Sink == nil && !rem.Fixed {
		if rd.pr.checkConsent(f, &rem.Key, rd.now, echo) {
			f.Consent(rd.now)
		}
		rd.ka.Nonce = rd.pr.current(purposeConsent, f, &rem.Key, rd.now)
	}
	if _, err := rd.ka.MarshalTo(pkt); err != nil {
		return
	}
	rd.sendTo(rem, pkt, f.Kind, nil)
}

// handleBind checks the bind lock-free (its participant by handle, MAC,
// time, counter: authBind) and hands an authentic one to the binder
// goroutine, which owns flow binding; a full queue drops it.
func (rd *reader) handleBind(i int, pkt []byte, key session.AddrKey) {
	if err := rd.bind.Unmarshal(pkt); err != nil {
		rd.live.Drop(stats.DropMalformed) // a version-1 Bind too
		return
	}
	p, ok := rd.rt.reg.Handles.Get(rd.bind.Handle)
	if !ok {
		rd.live.Drop(stats.DropBadToken)
		return
	}
	sb := sourceBucket(&key)
	// Shares already full are refused before the MAC, as they would be
	// after it: only authentic binds take places, so a participant or a
	// source flooding binds (authentic or copies) costs no HMAC while its
	// places are taken.
	if p.BindsQueued.Load() >= maxBindsPerParticipant || rd.rt.bindSrc[sb].Load() >= maxBindsPerSource {
		rd.live.Drop(stats.DropBindLimited)
		return
	}
	if why, ok := checkBind(p, &rd.bind, time.Unix(0, rd.now)); !ok {
		rd.live.Drop(why)
		return
	}
	var src egress.Src
	if rd.sock.Wildcard() {
		// Replies must leave from the address the client sent to.
		if a, ifi, ok := rd.in.Dest(i); ok {
			src = egress.Src{Addr: a, IfIndex: ifi}
		}
	}
	// Fair shares: a participant and a source each have a few places in
	// the queue, taken here and given back by the binder.
	if p.BindsQueued.Add(1) > maxBindsPerParticipant {
		p.BindsQueued.Add(-1)
		rd.live.Drop(stats.DropBindLimited)
		return
	}
	if rd.rt.bindSrc[sb].Add(1) > maxBindsPerSource {
		rd.rt.bindSrc[sb].Add(-1)
		p.BindsQueued.Add(-1)
		rd.live.Drop(stats.DropBindLimited)
		return
	}
	select {
	case rd.rt.binds <- bindReq{p: p, kind: rd.bind.Kind, key: key, group: rd.group, txID: rd.bind.TxID, nonce: rd.bind.Nonce, src: src, srcB: sb}:
	default:
		rd.rt.bindSrc[sb].Add(-1)
		p.BindsQueued.Add(-1)
		rd.live.Drop(stats.DropBindBusy)
	}
}

// sourceBucket returns the bind-queue bucket of a source address: a hash
// of its IPv4 address, or of the /64 of an IPv6 one (a host has a whole
// /64), without the port.
func sourceBucket(k *session.AddrKey) uint16 {
	src := k[:8]
	if [12]byte(k[:12]) == [12]byte{10: 0xff, 11: 0xff} { // IPv4-mapped
		src = k[12:16]
	}
	return uint16(xxhash.Sum64(src) % bindSourceBuckets)
}
