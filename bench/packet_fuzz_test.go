package bench

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPacketRoundTrip(t *testing.T) {
	for _, size := range []int{rtpHeaderLen, 200, 1200} {
		b := make([]byte, size)
		makePacket(b, 65535, 7, benchSSRC)
		seq, epoch, err := verifyPacket(b, size, benchSSRC)
		require.NoError(t, err)
		require.Equal(t, uint16(65535), seq)
		require.Equal(t, uint32(7), epoch)

		_, _, err = verifyPacket(b, size, benchSSRC+1)
		require.ErrorIs(t, err, errPacket, "other SSRC")
		_, _, err = verifyPacket(b, size+1, benchSSRC)
		require.ErrorIs(t, err, errPacket, "other size")
		if size > rtpHeaderLen {
			b[size-1]++
			_, _, err = verifyPacket(b, size, benchSSRC)
			require.ErrorIs(t, err, errPacket, "flipped payload byte")
		}
	}
}

// FuzzVerifyPacket feeds arbitrary datagrams to the receivers' checker: it
// must never panic, and whatever it accepts must be exactly the packet
// makePacket builds for the sequence number and epoch it reports.
func FuzzVerifyPacket(f *testing.F) {
	for _, size := range []int{rtpHeaderLen, 200, 1200} {
		b := make([]byte, size)
		makePacket(b, uint16(size), uint32(size)*3, benchSSRC)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Add([]byte{0x80, 0xc8, 0, 1, 0, 0, 0, 0, 0x0b, 0xe4, 0xc4, 0x01}) // RTCP SR type
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, epoch, err := verifyPacket(b, len(b), benchSSRC)
		if err != nil {
			require.ErrorIs(t, err, errPacket)
			return
		}
		want := make([]byte, len(b))
		makePacket(want, seq, epoch, benchSSRC)
		require.Equal(t, want, b)
	})
}
