package router

import (
	"github.com/openmmr/mmr/protect"
	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
)

// SRTCP between each client and the router (docs/PROTOCOL.md, "SRTCP
// transform"): the router opens an RTCP datagram with its source flow's
// direction-1 context, routes the plaintext by the RTCP rules, and seals it
// for each destination flow with that flow's direction-2 context, so each
// destination gets its own ciphertext. The contexts live on the flows
// (session.Flow.RTCP), installed by AddParticipant and SetRTCPSecret: the
// packet path reaches them through the flow it already holds, with no map
// lookup, and a join costs O(1) (protect.RTCPTranslator's copy-on-write
// map would cost O(flows) per join, quadratic for a webinar filling up).
//
// Each context is a protect.RTCPFlow, which takes a mutex per Open and per
// Seal: acceptable on the RTCP path (a few datagrams per second per stream,
// and a flow's open and seal sides have separate mutexes), never on the
// RTP path, which does not touch them.

// Sizes of a reader's RTCP arena: the sealed copies of RTCP datagrams,
// one per destination. UDP egress batches point at their packets until the
// flush, so each sealed copy needs bytes of its own until then; when the
// arena is full the reader flushes early and starts over. 64 KiB holds 40
// copies of the largest datagram (1520 bytes sealed) or about 500 of a
// typical sender report (~100 bytes), so a socket reader rarely flushes
// early; a stream reader (one per TCP/TLS media connection, perhaps
// thousands) gets 4 KiB, allocated on its first protected RTCP copy.
const (
	rtcpArenaUDP    = 64 << 10
	rtcpArenaStream = 4 << 10
)

// arenaSize returns the RTCP arena size of a reader: def, or the test
// override.
func (c *Config) arenaSize(def int) int {
	if c.rtcpArena > 0 {
		return c.rtcpArena
	}
	return def
}

// rtcpOpenDrop maps an RTCPFlow.Open error to its drop reason.
func rtcpOpenDrop(err error) stats.DropReason {
	switch err {
	case protect.ErrAuth:
		return stats.DropRTCPAuth
	case protect.ErrReplayed:
		return stats.DropRTCPReplayed
	case protect.ErrTooOld:
		return stats.DropRTCPTooOld
	case protect.ErrUnknownSender:
		return stats.DropRTCPSenders
	}
	return stats.DropRTCPMalformed
}

// openRTCP returns the plaintext of an RTCP datagram that arrived on f,
// decrypted in place when f is protected; ok false means it was dropped
// (and counted).
func (rd *reader) openRTCP(pkt []byte, f *session.Flow) ([]byte, bool) {
	c := f.RTCP()
	if c == nil {
		return pkt, true
	}
	plain, err := c.Open(pkt[:0], pkt)
	if err != nil {
		rd.drop(f, rtcpOpenDrop(err))
		return nil, false
	}
	return plain, true
}

// fanoutRTCP queues plain to every bound destination of a route: the
// subscriber-bound part of RTCP (sender reports, BYE), each copy sealed
// for its destination.
func (rd *reader) fanoutRTCP(plain []byte, dests []*session.Flow) {
	for _, d := range dests {
		if rem := d.Remote(); rem != nil {
			if !d.MaySend(rem, rd.after) {
				rd.drop(d, stats.DropNoConsent)
				continue
			}
			rd.sendRTCP(d, rem, plain)
		}
	}
}

// sendRTCP queues one RTCP copy for destination flow d bound at rem:
// plain as is when d's RTCP is plain, else sealed with d's direction-2
// context into the reader's arena (UDP, kept until the flush) or a scratch
// slice of it (streams copy at Enqueue).
func (rd *reader) sendRTCP(d *session.Flow, rem *session.Remote, plain []byte) {
	c := d.RTCP()
	if c == nil {
		rd.sendTo(rem, plain, d.Kind, &d.Participant.Stats)
		return
	}
	n := len(plain) + protect.RTCPOverhead
	if rd.arena == nil {
		rd.arena = make([]byte, rd.arenaSize)
	}
	if len(rd.arena)-rd.arenaUsed < n {
		rd.flush()             // the queued copies leave, and the arena is free again
		if n > len(rd.arena) { // not with MaxPacket-sized datagrams; a guard
			rd.drop(d, stats.DropOversize)
			return
		}
	}
	out, err := c.Seal(rd.arena[rd.arenaUsed:rd.arenaUsed:rd.arenaUsed+n], plain)
	if err != nil {
		rd.drop(d, stats.DropRTCPSeal)
		return
	}
	if rem.Sink == nil {
		rd.arenaUsed += len(out)
	}
	rd.sendTo(rem, out, d.Kind, &d.Participant.Stats)
}

// sealInPlace seals plain, the RTCP the router itself sends flow f (a PLI),
// for f in place (cap(plain) must leave protect.RTCPOverhead bytes); plain
// as is when f's RTCP is plain. ok false: the context refused to seal.
func sealInPlace(f *session.Flow, plain []byte) ([]byte, bool) {
	c := f.RTCP()
	if c == nil {
		return plain, true
	}
	out, err := c.Seal(plain[:0], plain)
	return out, err == nil
}
