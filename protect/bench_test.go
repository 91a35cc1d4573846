package protect

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/wire"
	"github.com/pion/rtcp"
)

var benchSizes = []int{200, 1200}

// gcmFloor returns a function that runs crypto/cipher's AES-256-GCM alone
// over pkt's payload with its 20-byte header as AAD: the reference the
// Sealer and Opener are compared with, in the same process and interleaved
// with them so that load from other processes hits both alike.
func gcmFloor(b *testing.B, pkt []byte) func(i int) {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, len(pkt)+Overhead)
	iv := make([]byte, 12)
	return func(i int) {
		binary.BigEndian.PutUint16(iv[10:], uint16(i))
		g.Seal(dst[:0], iv, pkt[20:], pkt[:20])
	}
}

// interleave runs op b.N times in chunks, each followed by as many runs of
// ref, and reports op's ns/pkt, ref's (floor-ns/pkt) and their ratio
// (x-floor). Only op's time counts towards ns/op.
func interleave(b *testing.B, op, ref func(i int)) {
	const chunk = 256
	var refTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i += chunk {
		n := min(chunk, b.N-i)
		for j := range n {
			op(i + j)
		}
		b.StopTimer()
		t0 := time.Now()
		for j := range n {
			ref(i + j)
		}
		refTime += time.Since(t0)
		b.StartTimer()
	}
	b.StopTimer()
	opNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	refNs := float64(refTime.Nanoseconds()) / float64(b.N)
	b.ReportMetric(opNs, "ns/pkt")
	b.ReportMetric(refNs, "floor-ns/pkt")
	b.ReportMetric(opNs/refNs, "x-floor")
}

// BenchmarkSeal: one participant's Sealer, packets of the given total RTP
// size (12-byte header + 8-byte audio-level extension + payload).
func BenchmarkSeal(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := NewSealer(1, 0)
			if err := s.SetKey(newKey(b, 1)); err != nil {
				b.Fatal(err)
			}
			pkt := rtpPacket(b, 9, 0, 0, false, size-20)
			dst := make([]byte, 0, len(pkt)+Overhead)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			interleave(b, func(i int) {
				binary.BigEndian.PutUint16(pkt[2:4], uint16(i))
				if _, err := s.Seal(dst, pkt); err != nil {
					b.Fatal(err)
				}
			}, gcmFloor(b, pkt))
		})
	}
}

// BenchmarkOpen: an Opener with 4 live keys and 50 senders opening one
// sender's stream. The packets are sealed beforehand (1<<15 of them, so
// their indexes are unique); every 1<<15 packets a fresh Opener is made
// outside the timer.
func BenchmarkOpen(b *testing.B) {
	const ring = 1 << 15
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			keys := []MeetingKey{newKey(b, 1), newKey(b, 2), newKey(b, 3), newKey(b, 4)}
			s := NewSealer(1, 0)
			if err := s.SetKey(keys[3]); err != nil {
				b.Fatal(err)
			}
			pkt := rtpPacket(b, 9, 0, 0, false, size-20)
			sealed := make([][]byte, ring)
			for i := range sealed {
				binary.BigEndian.PutUint16(pkt[2:4], uint16(i))
				sealed[i] = seal(b, s, pkt)
			}
			senders := []Sender{{1, 9}}
			for i := range 49 {
				senders = append(senders, Sender{uint64(100 + i), uint32(1000 + i)})
			}
			var o *Opener
			dst := make([]byte, 0, len(pkt)+Overhead)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			interleave(b, func(i int) {
				if i%ring == 0 {
					b.StopTimer()
					o = newOpener(b, keys, senders...)
					b.StartTimer()
				}
				if _, err := o.Open(dst, sealed[i%ring]); err != nil {
					b.Fatal(err)
				}
			}, gcmFloor(b, pkt))
		})
	}
}

// BenchmarkRTCPTranslate is the router's cost for one RTCP datagram:
// open it from the source flow, route it (wire.RTCPRoute), and re-protect
// it for each destination flow (1: feedback to a publisher; 10: a sender
// report fanned out to 10 subscribers). ns/pkt is per input datagram.
func BenchmarkRTCPTranslate(b *testing.B) {
	for _, dests := range []int{1, 10} {
		b.Run(fmt.Sprintf("dests=%d", dests), func(b *testing.B) {
			tr := NewRTCPTranslator(0)
			src := secret(b)
			if err := tr.Add(FlowKey{1, media.Video}, src); err != nil {
				b.Fatal(err)
			}
			to := make([]FlowKey, dests)
			for i := range to {
				to[i] = FlowKey{uint64(10 + i), media.Video}
				if err := tr.Add(to[i], secret(b)); err != nil {
					b.Fatal(err)
				}
			}
			client, err := NewRTCPFlow(src, 1, media.Video, ClientSide, 0)
			if err != nil {
				b.Fatal(err)
			}
			plain := marshalRTCP(b,
				&rtcp.SenderReport{SSRC: 5, NTPTime: 1, RTPTime: 2, PacketCount: 3, OctetCount: 4},
				&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 5, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "abcdefghijkl"}}}}})
			const ring = 1 << 14
			sealed := make([][]byte, ring)
			for i := range sealed {
				sealed[i], err = client.Seal(nil, plain)
				if err != nil {
					b.Fatal(err)
				}
			}
			in := make([]byte, 0, 1500)
			out := make([]byte, 0, 1500)
			var route wire.RTCPRoute
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%ring == 0 && i > 0 {
					b.StopTimer()
					if err := tr.Add(FlowKey{1, media.Video}, src); err != nil { // fresh replay state
						b.Fatal(err)
					}
					b.StartTimer()
				}
				p, err := tr.Open(FlowKey{1, media.Video}, in, sealed[i%ring])
				if err != nil {
					b.Fatal(err)
				}
				if err := route.Parse(p); err != nil {
					b.Fatal(err)
				}
				for _, d := range to {
					if _, err := tr.Seal(d, out, p); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}
