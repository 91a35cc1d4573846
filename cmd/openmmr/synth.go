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
	hdr := rtpHeader
	if g.kind == media.Audio {
		hdr += audioLevelExt
	}
	for size > 0 {
		n := min(size, MaxPacket)
		if n < hdr+payloadHeader {
			n = hdr + payloadHeader
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
		if g.kind == media.Audio {
			b[0] |= 0x10 // X: the audio level extension follows
			putAudioLevel(b[rtpHeader:], g.level(now))
		}
		if key {
			b[hdr] = 1
		}
		binary.BigEndian.PutUint64(b[hdr+1:], uint64(now.UnixNano()))
		g.seq++
		pkts = append(pkts, b)
	}
	g.frame++
	g.ts += uint32(uint64(g.p.Clock) * uint64(g.p.Interval) / uint64(time.Second))
	return pkts, g.p.Interval, nil
}

// audioLevelExt is the size of the audio-level header extension every
// synthetic audio packet carries (docs/PROTOCOL.md, RTP "Audio level"):
// the RFC 8285 one-byte header (profile 0xBEDE, length 1 word) and one
// element, ID wire.AudioLevelExtID with one byte, padded to 4 bytes.
const audioLevelExt = 8

// putAudioLevel writes the extension with level (RFC 6464: -dBov, 0
// loudest, 127 silence; the voice flag set when it is not silence).
func putAudioLevel(b []byte, level uint8) {
	b[0], b[1], b[2], b[3] = 0xbe, 0xde, 0, 1
	b[4] = wire.AudioLevelExtID << 4 // length field 0: one byte
	b[5] = level & 0x7f
	if level < 127 {
		b[5] |= 0x80
	}
	b[6], b[7] = 0, 0
}

// Synthetic speech: talk spurts of talkFor at talkLevel, then silence as
// long, the phase set by the SSRC, so that participants take turns and the
// active speaker moves between them.
const (
	talkFor   = 2 * time.Second
	talkLevel = 25 // -25 dBov, a voice close to the microphone
)

// level is the audio level of the packet sent at now.
func (g *generator) level(now time.Time) uint8 {
	phase := time.Duration(g.ssrc%8) * talkFor / 4
	if (now.Add(phase).UnixNano()/int64(talkFor))%2 == 0 {
		return talkLevel
	}
	return 127
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
