package secure_test

import (
	"fmt"
	"testing"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect"
)

// BenchmarkSeal and BenchmarkOpen measure the client's per-packet cost
// through a State (what client/udpmedia and client/streammedia call for
// every packet) for an audio-sized and a full video packet. Both must
// report 0 allocs/op: buffers are the caller's.
func BenchmarkSeal(b *testing.B) {
	for _, size := range []int{200, 1200} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			h := newHub(b, false, secure.Config{})
			a := h.join("ann@example.org", proto.RoleHost)
			f := a.st.Flow(media.Video)
			pkt := rtpPacket(a.ssrc, 0, size, marker)
			dst := make([]byte, 0, size+protect.Overhead)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				pkt[2], pkt[3] = byte(i>>8), byte(i)
				if _, err := f.Seal(dst, pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	const chunk = 2048 // packets sealed ahead, outside the timer
	for _, size := range []int{200, 1200} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			h := newHub(b, false, secure.Config{})
			a, r := h.join("ann@example.org", proto.RoleHost), h.join("bob@example.org", proto.RoleParticipant)
			f := r.st.Flow(media.Video)
			pkt := rtpPacket(a.ssrc, 0, size, marker)
			sealed := make([][]byte, chunk)
			for i := range sealed {
				sealed[i] = make([]byte, 0, size+protect.Overhead)
			}
			out := make([]byte, 0, size+protect.Overhead)
			seq := 0
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += chunk {
				b.StopTimer()
				n := min(chunk, b.N-i)
				for j := range n {
					pkt[2], pkt[3] = byte(seq>>8), byte(seq)
					seq++
					sealed[j], _ = a.st.SealRTP(sealed[j][:0], pkt)
				}
				b.StartTimer()
				for j := range n {
					if _, err := f.Open(out, sealed[j]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
