// Package stats holds the router's traffic counters: lock-free live counters
// updated on the packet path and plain snapshots read by the control side.
package stats

import "sync/atomic"

// DropReason says why the router discarded a packet (or, for send reasons,
// one copy of a packet to one destination). The names are stable: they
// appear in logs, metrics and docs/PROTOCOL.md.
type DropReason uint8

// Drop reasons.
const (
	DropUnbound           DropReason = iota // datagram from an address with no bound flow
	DropBadToken                            // bind naming no participant (unknown handle) or not signed with its token (wrong MAC)
	DropMalformed                           // unknown first byte, short or invalid header
	DropOversize                            // datagram larger than MaxPacket
	DropUnknownSSRC                         // RTP with an SSRC the sender did not publish for the flow's kind
	DropRTCPMalformed                       // RTCP that fails RFC 3550 validation
	DropRTCPUnknownSSRC                     // RTCP feedback naming no published SSRC of the meeting
	DropSendError                           // sendmmsg failed for one destination
	DropSendBusy                            // socket send buffer full (EAGAIN): copy not sent
	DropBindBusy                            // valid bind refused because the bind queue was full
	DropStreamFrame                         // stream closed: impossible RFC 4571 length or garbage
	DropStreamBind                          // stream closed: no valid bind as its first frame in time
	DropStreamLimit                         // stream refused: too many from one source IP
	DropQueueFull                           // copy not queued: the stream subscriber's queue was full
	DropSlowSubscriber                      // stream closed: its peer stopped reading for StallTimeout
	DropKeyframeThrottled                   // keyframe request (PLI, FIR) within the publisher's KeyframeInterval: not forwarded
	DropRTCPNotSubscribed                   // RTCP feedback about a stream its sender does not receive: not forwarded to that publisher
	DropStreamsFull                         // stream refused: the router-wide MaxStreams cap is reached (descriptors kept for the control port)
	DropBindLimited                         // valid bind refused: its participant or its source address has its share of the bind queue waiting
	DropNoConsent                           // copy not sent: its UDP destination has not renewed consent (RFC 7675) within ConsentTimeout
	DropStale                               // RTP/RTCP that waited in the socket buffer longer than MaxPacketAge (a stall): not forwarded
	DropBindReplayed                        // authentic bind whose counter is not above the last accepted for its participant and kind: a replay
	DropBindStale                           // authentic bind whose time is more than wire.BindTimeWindow from the router's clock
	DropRTCPAuth                            // SRTCP whose tag does not verify with its flow's key (altered, forged, another key, or plain RTCP from a protected flow)
	DropRTCPReplayed                        // SRTCP whose index its flow already accepted (a replay)
	DropRTCPTooOld                          // SRTCP whose index is older than its flow's replay window
	DropRTCPSenders                         // SRTCP from a new sender SSRC beyond its flow's limit (protect.MaxRTCPSenders from a client)
	DropRTCPSeal                            // an RTCP copy that could not be protected for its destination (SRTCP index exhausted): not sent
	NumDropReasons                          // number of reasons; not a reason
)

var dropNames = [NumDropReasons]string{
	"unbound_source", "bad_token", "malformed", "oversize", "unknown_ssrc",
	"rtcp_malformed", "rtcp_unknown_ssrc", "send_error", "send_busy", "bind_busy",
	"stream_frame", "stream_bind", "stream_limit", "queue_full", "slow_subscriber",
	"keyframe_throttled", "rtcp_not_subscribed", "streams_full", "bind_limited", "no_consent", "stale",
	"bind_replayed", "bind_stale",
	"rtcp_auth", "rtcp_replayed", "rtcp_too_old", "rtcp_unknown_sender", "rtcp_seal_error",
}

// String returns the reason's stable snake_case name.
func (d DropReason) String() string {
	if d < NumDropReasons {
		return dropNames[d]
	}
	return "unknown"
}

// Counters is a snapshot of traffic counters. Packets and bytes "out" count
// copies handed to the kernel, one per destination.
type Counters struct {
	PacketsIn, BytesIn   uint64
	PacketsOut, BytesOut uint64
	Drops                [NumDropReasons]uint64
	// GSOSent counts UDP GSO super-packets handed to the kernel (each
	// carries several of the copies counted in PacketsOut).
	GSOSent uint64
	// GSOFallbacks counts runs of copies meant for one super-packet that
	// went one datagram per message instead: GSO unavailable on the socket
	// or refused for the destination. They were sent, not dropped.
	GSOFallbacks uint64
	// Coalesced counts reads made after a coalescing pause (router
	// Config.Coalesce) that found datagrams: each forwarded all of them
	// for one wake-up of the reader.
	Coalesced uint64
}

// Dropped returns the sum of all drop counters.
func (c Counters) Dropped() uint64 {
	var n uint64
	for _, d := range c.Drops {
		n += d
	}
	return n
}

// Stats is a snapshot of the whole router.
type Stats struct {
	Counters
	Meetings     int
	Participants int
}

// Live is the lock-free form of Counters, updated on the packet path with
// one atomic add per field. Safe for concurrent use; the zero value is ready.
type Live struct {
	packetsIn, bytesIn   atomic.Uint64
	packetsOut, bytesOut atomic.Uint64
	drops                [NumDropReasons]atomic.Uint64
	gsoSent, gsoFallback atomic.Uint64
	coalesced            atomic.Uint64
}

// In counts one received packet of n bytes.
func (c *Live) In(n int) {
	c.packetsIn.Add(1)
	c.bytesIn.Add(uint64(n))
}

// Out counts copies sent copies of an n-byte packet.
func (c *Live) Out(copies, n int) {
	c.packetsOut.Add(uint64(copies))
	c.bytesOut.Add(uint64(copies * n))
}

// OutTotal counts packets copies sent with bytes bytes in all.
func (c *Live) OutTotal(packets, bytes int) {
	c.packetsOut.Add(uint64(packets))
	c.bytesOut.Add(uint64(bytes))
}

// GSOSent counts n UDP GSO super-packets sent.
func (c *Live) GSOSent(n int) { c.gsoSent.Add(uint64(n)) }

// GSOFallback counts one run sent without GSO.
func (c *Live) GSOFallback() { c.gsoFallback.Add(1) }

// Coalesce counts one read after a coalescing pause that found datagrams.
func (c *Live) Coalesce() { c.coalesced.Add(1) }

// Drop counts one drop for reason r.
func (c *Live) Drop(r DropReason) { c.drops[r].Add(1) }

// Snapshot reads every counter (each atomically, not all at one instant).
func (c *Live) Snapshot() Counters {
	s := Counters{
		PacketsIn: c.packetsIn.Load(), BytesIn: c.bytesIn.Load(),
		PacketsOut: c.packetsOut.Load(), BytesOut: c.bytesOut.Load(),
		GSOSent: c.gsoSent.Load(), GSOFallbacks: c.gsoFallback.Load(),
		Coalesced: c.coalesced.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.PacketsIn += o.PacketsIn
	c.BytesIn += o.BytesIn
	c.PacketsOut += o.PacketsOut
	c.BytesOut += o.BytesOut
	c.GSOSent += o.GSOSent
	c.GSOFallbacks += o.GSOFallbacks
	c.Coalesced += o.Coalesced
	for i := range c.Drops {
		c.Drops[i] += o.Drops[i]
	}
}

// AddCounters adds a snapshot to c (to fold in the totals of something that
// ended).
func (c *Live) AddCounters(o Counters) {
	c.packetsIn.Add(o.PacketsIn)
	c.bytesIn.Add(o.BytesIn)
	c.packetsOut.Add(o.PacketsOut)
	c.bytesOut.Add(o.BytesOut)
	c.gsoSent.Add(o.GSOSent)
	c.gsoFallback.Add(o.GSOFallbacks)
	c.coalesced.Add(o.Coalesced)
	for i, d := range o.Drops {
		if d != 0 {
			c.drops[i].Add(d)
		}
	}
}
