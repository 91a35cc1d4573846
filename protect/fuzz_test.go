package protect

import (
	"bytes"
	"testing"

	"github.com/openmmr/mmr/media"
	"github.com/pion/rtcp"
)

// FuzzOpen feeds arbitrary datagrams to an Opener holding two keys and a
// sender: it must never panic, and a packet it accepts must be a valid
// RTP packet no longer than the input (the seeds are valid packets and
// their mutations).
func FuzzOpen(f *testing.F) {
	k1 := MeetingKey{ID: 1, Secret: [32]byte{1}}
	k2 := MeetingKey{ID: 2, Secret: [32]byte{2}}
	s := NewSealer(7, 0)
	if err := s.SetKey(k1); err != nil {
		f.Fatal(err)
	}
	for _, size := range []int{0, 1, 100, 1200} {
		f.Add(seal(f, s, rtpPacket(f, 42, uint16(size), 0, size%2 == 0, size)))
	}
	f.Add([]byte{0x80})
	f.Add(bytes.Repeat([]byte{0x90}, 40))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		o, err := NewOpener(OpenerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		_ = o.AddKey(k1)
		_ = o.AddKey(k2)
		_ = o.AddSender(Sender{7, 42})
		in := bytes.Clone(pkt)
		out, err := o.Open(nil, pkt)
		if !bytes.Equal(in, pkt) {
			t.Fatal("Open changed its input")
		}
		st := o.Stats()
		if err != nil {
			if st.Rejected() != 1 || st.Opened != 0 {
				t.Fatalf("rejection not counted once: %+v", st)
			}
			return
		}
		if st.Opened != 1 || len(out) != len(pkt)-Overhead {
			t.Fatalf("accepted packet: len %d of %d, %+v", len(out), len(pkt), st)
		}
		if _, err := o.Open(nil, pkt); err != ErrReplayed {
			t.Fatalf("second open: %v", err)
		}
	})
}

// FuzzRTCPOpen feeds arbitrary datagrams to the router side of an RTCP
// flow.
func FuzzRTCPOpen(f *testing.F) {
	sec := bytes.Repeat([]byte{3}, SecretSize)
	c, err := NewRTCPFlow(sec, 5, media.Video, ClientSide, 0)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range [][]byte{
		marshalRTCP(f, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}}),
		marshalRTCP(f, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2}),
	} {
		sp, err := c.Seal(nil, p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sp)
	}
	f.Add([]byte{0x80, 200, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := NewRTCPFlow(sec, 5, media.Video, RouterSide, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Open(nil, pkt)
		st := r.Stats()
		if err != nil {
			if st.Rejected() != 1 {
				t.Fatalf("rejection not counted once: %+v", st)
			}
			return
		}
		if len(out) != len(pkt)-RTCPOverhead {
			t.Fatalf("accepted len %d of %d", len(out), len(pkt))
		}
	})
}
