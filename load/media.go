package load

import (
	"encoding/binary"
	"time"

	"github.com/openmmr/mmr/media"
)

// Synthetic media, the same format as `openmmr join` sends: every RTP
// payload starts with a 9-byte probe header,
//
//	byte 0      flags: bit 0 keyframe (video, content)
//	bytes 1..8  send time, Unix nanoseconds, big-endian
//
// followed by filler. Sequence numbers are consecutive per SSRC, RTP
// timestamps advance at the kind's clock and the marker bit ends every
// video/content frame. The send time is written just before the packet is
// handed to the kernel, so a receiver on the same clock (loopback) reads
// the one-way delay directly.
type Profile struct {
	PT          uint8
	Clock       uint32        // RTP clock rate
	Interval    time.Duration // one frame (audio: one packet)
	FrameBytes  int           // RTP bytes of a delta frame in all
	KeyBytes    int           // of a keyframe
	KeyInterval int           // frames between keyframes (0: none)
}

// MaxPacket bounds every synthetic packet, RTP header included: below the
// 1,200-byte media MTU docs/PROTOCOL.md recommends.
const MaxPacket = 1200

const (
	rtpHeader     = 12
	payloadHeader = 9
	// minPacket is the smallest packet a receiver can read a stamp from.
	minPacket = rtpHeader + payloadHeader
)

// Profiles are the realistic per-kind rates of `openmmr join`.
var Profiles = [media.NumKinds]Profile{
	// Opus-like: 50 packets/s of 160 bytes (64 kb/s).
	{PT: 111, Clock: 48000, Interval: 20 * time.Millisecond, FrameBytes: 160, KeyBytes: 160},
	// 30 frames/s, about 3 KB per delta frame and 12 KB per keyframe every
	// 2 s (≈ 760 kb/s), in packets of at most 1,200 bytes.
	{PT: 96, Clock: 90000, Interval: time.Second / 30, FrameBytes: 3000, KeyBytes: 12000, KeyInterval: 60},
	// Screen share: 5 frames/s of 2 KB, a 10 KB keyframe every 5 s.
	{PT: 97, Clock: 90000, Interval: 200 * time.Millisecond, FrameBytes: 2000, KeyBytes: 10000, KeyInterval: 25},
}

// generator makes the packets of one published stream into buffers it
// owns and reuses: after the first keyframe it never allocates.
type generator struct {
	kind  media.Kind
	p     Profile
	ssrc  uint32
	seq   uint16
	ts    uint32
	frame int
	bufs  [][]byte // MaxPacket-capacity buffers, one per packet of the largest frame
	pkts  [][]byte
}

func newGenerator(k media.Kind, ssrc uint32, seed uint16) *generator {
	p := Profiles[k.Index()]
	n := (max(p.KeyBytes, p.FrameBytes) + MaxPacket - 1) / MaxPacket
	g := &generator{kind: k, p: p, ssrc: ssrc, seq: seed, ts: uint32(seed) << 8, bufs: make([][]byte, n), pkts: make([][]byte, 0, n)}
	for i := range g.bufs {
		g.bufs[i] = make([]byte, MaxPacket)
	}
	return g
}

// next returns the packets of the next frame (valid until the next call),
// without send stamps: stamp writes them.
func (g *generator) next() [][]byte {
	size := g.p.FrameBytes
	key := g.p.KeyInterval > 0 && g.frame%g.p.KeyInterval == 0
	if key {
		size = g.p.KeyBytes
	}
	g.pkts = g.pkts[:0]
	for i := 0; size > 0; i++ {
		n := max(min(size, MaxPacket), minPacket)
		size -= n
		b := g.bufs[i][:n]
		b[0], b[1] = 0x80, g.p.PT
		if size <= 0 && g.kind != media.Audio {
			b[1] |= 0x80 // marker: last packet of the frame
		}
		binary.BigEndian.PutUint16(b[2:], g.seq)
		binary.BigEndian.PutUint32(b[4:], g.ts)
		binary.BigEndian.PutUint32(b[8:], g.ssrc)
		b[rtpHeader] = 0
		if key {
			b[rtpHeader] = 1
		}
		g.seq++
		g.pkts = append(g.pkts, b)
	}
	g.frame++
	g.ts += uint32(uint64(g.p.Clock) * uint64(g.p.Interval) / uint64(time.Second))
	return g.pkts
}

// stamp writes the send time into pkt's probe header.
func stamp(pkt []byte, unixNano int64) {
	binary.BigEndian.PutUint64(pkt[rtpHeader+1:], uint64(unixNano))
}

// parseRTP reads what a receiver needs from a synthetic packet: ok false
// for anything that is not RTP with a probe header.
func parseRTP(pkt []byte) (ssrc uint32, seq uint16, sent int64, ok bool) {
	if len(pkt) < minPacket || pkt[0]>>6 != 2 || (pkt[1] >= 200 && pkt[1] <= 207) {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), int64(binary.BigEndian.Uint64(pkt[rtpHeader+1:])), true
}
