package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
)

// Synthetic media, per kind, at realistic rates. Every RTP payload starts
// with a 9-byte probe header a receiver can check:
//
//	byte 0      flags: bit 0 keyframe (video, content)
//	bytes 1..8  send time, Unix nanoseconds, big-endian
//
// followed by filler. RTP sequence numbers are consecutive per SSRC, RTP
// timestamps advance at the kind's clock (48 kHz audio, 90 kHz video and
// content) and the marker bit ends every video/content frame.
type profile struct {
	PT          uint8
	Clock       uint32        // RTP clock rate
	Interval    time.Duration // one frame (audio: one packet)
	FrameBytes  int           // RTP packet bytes of a delta frame in all
	KeyBytes    int           // of a keyframe
	KeyInterval int           // frames between keyframes (0: none)
}

// MaxPacket bounds every synthetic packet (RTP header included): below
// the 1,200-byte media MTU docs/PROTOCOL.md recommends.
const MaxPacket = 1200

// rtpHeader is the fixed RTP header (RFC 3550 §5.1) without CSRCs.
const rtpHeader = 12

// payloadHeader is the probe header at the start of each payload.
const payloadHeader = 9

var profiles = map[media.Kind]profile{
	// Opus-like: 50 packets/s of 160 bytes (64 kb/s).
	media.Audio: {PT: 111, Clock: 48000, Interval: 20 * time.Millisecond, FrameBytes: 160, KeyBytes: 160},
	// 30 frames/s, about 3 KB per delta frame and 12 KB per keyframe
	// every 2 s (≈ 760 kb/s), in packets of at most 1,200 bytes.
	media.Video: {PT: 96, Clock: 90000, Interval: time.Second / 30, FrameBytes: 3000, KeyBytes: 12000, KeyInterval: 60},
	// Screen share: 5 frames/s of 2 KB, a 10 KB keyframe every 5 s.
	media.Content: {PT: 97, Clock: 90000, Interval: 200 * time.Millisecond, FrameBytes: 2000, KeyBytes: 10000, KeyInterval: 25},
}

// generator produces the packets of one kind's frames.
type generator struct {
	kind  media.Kind
	p     profile
	ssrc  uint32
	seq   uint16
	ts    uint32
	frame int
	src   *fileSource // nil: synthetic
}

func newGenerator(k media.Kind, ssrc uint32, seed uint16) *generator {
	return &generator{kind: k, p: profiles[k], ssrc: ssrc, seq: seed, ts: uint32(seed) << 8}
}

// next appends the packets of the next frame to pkts (reusing its
// buffers) and returns them with the time to wait before the next frame.
func (g *generator) next(pkts [][]byte, now time.Time) ([][]byte, time.Duration, error) {
	if g.src != nil {
		return g.src.next(g, pkts)
	}
	size := g.p.FrameBytes
	key := g.p.KeyInterval > 0 && g.frame%g.p.KeyInterval == 0
	if key {
		size = g.p.KeyBytes
	}
	pkts = pkts[:0]
	for size > 0 {
		n := min(size, MaxPacket)
		if n < rtpHeader+payloadHeader {
			n = rtpHeader + payloadHeader
		}
		size -= n
		b := make([]byte, n)
		b[0], b[1] = 0x80, g.p.PT
		if size <= 0 && g.kind != media.Audio {
			b[1] |= 0x80 // marker: last packet of the frame
		}
		binary.BigEndian.PutUint16(b[2:], g.seq)
		binary.BigEndian.PutUint32(b[4:], g.ts)
		binary.BigEndian.PutUint32(b[8:], g.ssrc)
		if key {
			b[rtpHeader] = 1
		}
		binary.BigEndian.PutUint64(b[rtpHeader+1:], uint64(now.UnixNano()))
		g.seq++
		pkts = append(pkts, b)
	}
	g.frame++
	g.ts += uint32(uint64(g.p.Clock) * uint64(g.p.Interval) / uint64(time.Second))
	return pkts, g.p.Interval, nil
}

// fileSource replays an RTP dump: a file of RFC 4571 frames (16-bit
// big-endian length, then one RTP packet), as wire.AppendFrame writes them.
// Packets are sent with the file's own RTP timestamp spacing (at the kind's
// clock rate), their SSRC replaced by the published one and sequence
// numbers renumbered; the file loops at its end.
type fileSource struct {
	pkts   [][]byte
	i      int
	lastTS uint32
}

func loadRTPDump(path string) (*fileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := wire.NewDeframer(f, 1500)
	var src fileSource
	for {
		p, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(p) < rtpHeader || p[0]>>6 != 2 {
			return nil, fmt.Errorf("%s: packet %d is not RTP", path, len(src.pkts))
		}
		src.pkts = append(src.pkts, append([]byte(nil), p...))
	}
	if len(src.pkts) == 0 {
		return nil, fmt.Errorf("%s: no packets", path)
	}
	return &src, nil
}

func (s *fileSource) next(g *generator, pkts [][]byte) ([][]byte, time.Duration, error) {
	p := append([]byte(nil), s.pkts[s.i]...)
	ts := binary.BigEndian.Uint32(p[4:])
	binary.BigEndian.PutUint16(p[2:], g.seq)
	binary.BigEndian.PutUint32(p[8:], g.ssrc)
	g.seq++
	s.i = (s.i + 1) % len(s.pkts)
	nextTS := binary.BigEndian.Uint32(s.pkts[s.i][4:])
	wait := time.Duration(0)
	if d := nextTS - ts; s.i != 0 && d < g.p.Clock*2 { // at most 2 s between packets
		wait = time.Duration(uint64(d) * uint64(time.Second) / uint64(g.p.Clock))
	} else if s.i == 0 {
		wait = g.p.Interval
	}
	s.lastTS = ts
	return append(pkts[:0], p), wait, nil
}
