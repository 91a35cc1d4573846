package load

import (
	"encoding/binary"
	"testing"

	"github.com/openmmr/mmr/internal/leaktest"
)

// FuzzReceive feeds arbitrary datagrams to what a receiver parses: the
// probe header, the per-SSRC sequence state and the kernel's control data.
// Nothing may panic; the sequence state's counts stay consistent.
func FuzzReceive(f *testing.F) {
	g := newGenerator(1, 0x1234, 7)
	for _, p := range g.next() {
		f.Add(append([]byte(nil), p...), uint16(3))
	}
	f.Add([]byte{0x80}, uint16(0))
	f.Add(make([]byte, 40), uint16(65535))
	f.Fuzz(func(t *testing.T, pkt []byte, seq uint16) {
		var s streamRx
		if _, sq, sent, ok := parseRTP(pkt); ok {
			s.add(sq, -sent)
		}
		for i := range 8 {
			s.add(seq+uint16(i*977), int64(i))
		}
		if s.dups+s.reordered > s.received+s.dups {
			t.Fatalf("inconsistent: %+v", s)
		}
		_, _, _ = parseRxCmsg(pkt)
	})
}

func TestStreamRx(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct {
		name           string
		seqs           []uint16
		dups, reorders uint64
	}{
		{"in order across the wrap", []uint16{65534, 65535, 0, 1}, 0, 0},
		{"duplicate", []uint16{1, 2, 2, 3}, 1, 0},
		{"reordered", []uint16{1, 3, 2, 4}, 0, 1},
		{"late beyond the window", []uint16{1, 3000, 2}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s streamRx
			for _, q := range tc.seqs {
				s.add(q, 0)
			}
			if s.dups != tc.dups || s.reordered != tc.reorders {
				t.Fatalf("dups %d reordered %d, want %d %d", s.dups, s.reordered, tc.dups, tc.reorders)
			}
		})
	}
	pkt := make([]byte, 40)
	pkt[0] = 0x80
	binary.BigEndian.PutUint32(pkt[8:], 9)
	stamp(pkt, 12345)
	if ssrc, _, sent, ok := parseRTP(pkt); !ok || ssrc != 9 || sent != 12345 {
		t.Fatalf("parseRTP: %v %v %v", ssrc, sent, ok)
	}
}
