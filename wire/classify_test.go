package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Class
	}{
		{"empty", nil, ClassUnknown},
		{"rtp", []byte{0x80, 96, 0, 1}, ClassRTP},
		{"rtp one byte", []byte{0x80}, ClassRTP},
		{"rtp marker pt 63", []byte{0x80, 0x80 | 63}, ClassRTP},
		{"rtp first byte 191", []byte{191, 0}, ClassRTP},
		{"rtp second byte 224", []byte{0x80, 224}, ClassRTP},
		{"rtp second byte 191", []byte{0x80, 191}, ClassRTP},
		{"rtcp sr", []byte{0x80, 200, 0, 6}, ClassRTCP},
		{"rtcp 192", []byte{0x81, 192}, ClassRTCP},
		{"rtcp 223", []byte{0xbf, 223}, ClassRTCP},
		{"bind", []byte{TypeBind}, ClassBind},
		{"bind ack", []byte{TypeBindAck, 1}, ClassBindAck},
		{"keepalive", []byte{TypeKeepalive}, ClassKeepalive},
		{"keepalive ack", []byte{TypeKeepaliveAck}, ClassKeepaliveAck},
		{"stun 0", []byte{0, 1}, ClassUnknown},
		{"stun 3", []byte{3}, ClassUnknown},
		{"8 unassigned", []byte{8}, ClassUnknown},
		{"zrtp 16", []byte{16}, ClassUnknown},
		{"dtls 22", []byte{22, 0xfe, 0xfd}, ClassUnknown},
		{"turn 64", []byte{64}, ClassUnknown},
		{"127", []byte{127, 200}, ClassUnknown},
		{"192", []byte{192, 200}, ClassUnknown},
		{"255", []byte{255}, ClassUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Classify(tc.in))
		})
	}
}

func TestClassString(t *testing.T) {
	tests := []struct {
		c    Class
		want string
	}{
		{ClassUnknown, "unknown"},
		{ClassRTP, "rtp"},
		{ClassRTCP, "rtcp"},
		{ClassBind, "bind"},
		{ClassBindAck, "bind-ack"},
		{ClassKeepalive, "keepalive"},
		{ClassKeepaliveAck, "keepalive-ack"},
		{Class(42), "class(42)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			require.Equal(t, tc.want, tc.c.String())
		})
	}
}

var classifySink Class

func TestClassifyAllocs(t *testing.T) {
	pkts := [][]byte{nil, {0x80, 96}, {0x80, 200}, {TypeBind}, {TypeKeepaliveAck}, {22}}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range pkts {
			classifySink = Classify(p)
		}
	})
	require.Zero(t, allocs)
}
