package wire

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/openmmr/mmr/media"
	"github.com/stretchr/testify/require"
)

var testToken = Token{
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
}

const testTokenHex = "00112233445566778899aabbccddeeff"

func TestToken(t *testing.T) {
	a, err := NewToken()
	require.NoError(t, err)
	b, err := NewToken()
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	require.NotEqual(t, Token{}, a)

	s := a.String()
	require.Len(t, s, 2*TokenSize)
	require.Equal(t, strings.ToLower(s), s)
	got, err := ParseToken(s)
	require.NoError(t, err)
	require.Equal(t, a, got)

	require.Equal(t, testTokenHex, testToken.String())
}

func TestParseToken(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Token
		err  error
	}{
		{"lower", testTokenHex, testToken, nil},
		{"upper", strings.ToUpper(testTokenHex), testToken, nil},
		{"zero", strings.Repeat("0", 32), Token{}, nil},
		{"empty", "", Token{}, ErrToken},
		{"short", testTokenHex[:31], Token{}, ErrToken},
		{"long", testTokenHex + "0", Token{}, ErrToken},
		{"long even", testTokenHex + "00", Token{}, ErrToken},
		{"not hex", "zz" + testTokenHex[2:], Token{}, ErrToken},
		{"spaces", " " + testTokenHex[1:], Token{}, ErrToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.in)
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSizesNoAmplification(t *testing.T) {
	require.Equal(t, 56, BindSize)
	require.Equal(t, 36, BindAckSize)
	require.Equal(t, 16, KeepaliveSize)
	require.Less(t, BindAckSize, BindSize, "a BindAck must be smaller than the Bind it answers")
}

func with(b []byte, f func([]byte) []byte) []byte { return f(b) }

func set(i int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[i] = v; return b }
}

// bindAck builds a BindAck packet by hand.
func bindAck(kind media.Kind, status uint8, txID uint32, port uint16, family byte, addr [16]byte) []byte {
	b := make([]byte, BindAckSize)
	b[0], b[1], b[2], b[3] = TypeBindAck, Version, byte(kind), status
	binary.BigEndian.PutUint32(b[4:], txID)
	binary.BigEndian.PutUint16(b[8:], port)
	b[10] = family
	copy(b[12:], addr[:])
	return b
}

var (
	v4       = netip.MustParseAddr("192.0.2.7")
	v4Mapped = netip.MustParseAddr("::ffff:192.0.2.7")
	v6       = netip.MustParseAddr("2001:db8::1")
)

func TestBindAckUnmarshal(t *testing.T) {
	validV4 := func() []byte { return bindAck(media.Video, StatusOK, 7, 40000, 4, v4.As16()) }
	validV6 := func() []byte { return bindAck(media.Content, 3, 0xffffffff, 1, 6, v6.As16()) }
	tests := []struct {
		name string
		in   []byte
		want BindAck
		err  error
	}{
		{"ipv4", validV4(), BindAck{Kind: media.Video, TxID: 7, Mapped: netip.AddrPortFrom(v4, 40000)}, nil},
		{"ipv6 and status", validV6(), BindAck{Kind: media.Content, Status: 3, TxID: 0xffffffff, Mapped: netip.AddrPortFrom(v6, 1)}, nil},
		{"longer accepted", append(validV4(), 1, 2, 3), BindAck{Kind: media.Video, TxID: 7, Mapped: netip.AddrPortFrom(v4, 40000)}, nil},
		{"empty", nil, BindAck{}, ErrShort},
		{"short by one", validV4()[:BindAckSize-1], BindAck{}, ErrShort},
		{"wrong type", with(validV4(), set(0, TypeBind)), BindAck{}, ErrType},
		{"version", with(validV4(), set(1, 0)), BindAck{}, ErrVersion},
		{"kind", with(validV4(), set(2, 0)), BindAck{}, ErrKind},
		{"family 0", with(validV4(), set(10, 0)), BindAck{}, ErrFamily},
		{"family 5", with(validV4(), set(10, 5)), BindAck{}, ErrFamily},
		{"family 4 not mapped", with(validV6(), set(10, 4)), BindAck{}, ErrFamily},
		{"family 6 mapped", with(validV4(), set(10, 6)), BindAck{}, ErrFamily},
		{"reserved", with(validV4(), set(11, 1)), BindAck{}, ErrReserved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got BindAck
			err := got.Unmarshal(tc.in)
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, tc.want, got)
			if err == nil && tc.want.Mapped.Addr().Is4() {
				require.Equal(t, 32, got.Mapped.Addr().BitLen(), "IPv4 must be unmapped")
			}
		})
	}
}

func TestBindAckMarshalTo(t *testing.T) {
	tests := []struct {
		name string
		in   BindAck
		dst  int
		want []byte
		err  error
	}{
		{"ipv4", BindAck{Kind: media.Video, TxID: 7, Mapped: netip.AddrPortFrom(v4, 40000)}, BindAckSize,
			bindAck(media.Video, StatusOK, 7, 40000, 4, v4.As16()), nil},
		{"ipv4-mapped written as family 4", BindAck{Kind: media.Video, TxID: 7, Mapped: netip.AddrPortFrom(v4Mapped, 40000)}, BindAckSize,
			bindAck(media.Video, StatusOK, 7, 40000, 4, v4.As16()), nil},
		{"ipv6", BindAck{Kind: media.Audio, Status: 9, TxID: 1, Mapped: netip.AddrPortFrom(v6, 8801)}, 100,
			bindAck(media.Audio, 9, 1, 8801, 6, v6.As16()), nil},
		{"ipv6 zone dropped", BindAck{Kind: media.Audio, TxID: 1, Mapped: netip.AddrPortFrom(netip.MustParseAddr("fe80::1%eth0"), 5)}, BindAckSize,
			bindAck(media.Audio, 0, 1, 5, 6, netip.MustParseAddr("fe80::1").As16()), nil},
		{"short dst", BindAck{Kind: media.Video, Mapped: netip.AddrPortFrom(v4, 1)}, BindAckSize - 1, nil, ErrShortBuffer},
		{"kind", BindAck{Mapped: netip.AddrPortFrom(v4, 1)}, BindAckSize, nil, ErrKind},
		{"zero address", BindAck{Kind: media.Video}, BindAckSize, nil, ErrFamily},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, tc.dst)
			for i := range dst {
				dst[i] = 0xee
			}
			n, err := tc.in.MarshalTo(dst)
			require.ErrorIs(t, err, tc.err)
			if tc.err != nil {
				require.Zero(t, n)
				for _, c := range dst {
					require.Equal(t, byte(0xee), c)
				}
				return
			}
			require.Equal(t, BindAckSize, n)
			require.Equal(t, tc.want, dst[:n])
			var back BindAck
			require.NoError(t, back.Unmarshal(dst[:n]))
			require.Equal(t, tc.in.Kind, back.Kind)
			require.Equal(t, tc.in.Status, back.Status)
			require.Equal(t, tc.in.TxID, back.TxID)
			require.Equal(t, tc.in.Mapped.Port(), back.Mapped.Port())
			require.Equal(t, tc.in.Mapped.Addr().Unmap().WithZone(""), back.Mapped.Addr())
		})
	}
}

func keepalive(typ byte) []byte {
	return []byte{typ, Version, byte(media.Content), 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0}
}

func TestKeepaliveUnmarshal(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Keepalive
		err  error
	}{
		{"keepalive", keepalive(TypeKeepalive), Keepalive{Kind: media.Content, TxID: 0xdeadbeef}, nil},
		{"ack", keepalive(TypeKeepaliveAck), Keepalive{Kind: media.Content, TxID: 0xdeadbeef, Ack: true}, nil},
		{"longer accepted", append(keepalive(TypeKeepalive), 0), Keepalive{Kind: media.Content, TxID: 0xdeadbeef}, nil},
		{"nonce", with(keepalive(TypeKeepaliveAck), set(8, 1)), Keepalive{Kind: media.Content, TxID: 0xdeadbeef, Ack: true, Nonce: 1 << 56}, nil},
		{"header only (old 8-byte form)", keepalive(TypeKeepalive)[:8], Keepalive{}, ErrShort},
		{"empty", nil, Keepalive{}, ErrShort},
		{"short by one", keepalive(TypeKeepalive)[:KeepaliveSize-1], Keepalive{}, ErrShort},
		{"wrong type bind", keepalive(TypeBind), Keepalive{}, ErrType},
		{"wrong type 8", keepalive(8), Keepalive{}, ErrType},
		{"version", with(keepalive(TypeKeepalive), set(1, 2)), Keepalive{}, ErrVersion},
		{"kind", with(keepalive(TypeKeepaliveAck), set(2, 0)), Keepalive{}, ErrKind},
		{"reserved", with(keepalive(TypeKeepalive), set(3, 0x80)), Keepalive{}, ErrReserved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Keepalive
			err := got.Unmarshal(tc.in)
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestKeepaliveMarshalTo(t *testing.T) {
	tests := []struct {
		name string
		in   Keepalive
		dst  int
		want []byte
		err  error
	}{
		{"keepalive", Keepalive{Kind: media.Content, TxID: 0xdeadbeef}, KeepaliveSize, keepalive(TypeKeepalive), nil},
		{"ack", Keepalive{Kind: media.Content, TxID: 0xdeadbeef, Ack: true}, 64, keepalive(TypeKeepaliveAck), nil},
		{"nonce", Keepalive{Kind: media.Content, TxID: 0xdeadbeef, Nonce: 0xff}, KeepaliveSize, with(keepalive(TypeKeepalive), set(15, 0xff)), nil},
		{"short dst", Keepalive{Kind: media.Audio}, KeepaliveSize - 1, nil, ErrShortBuffer},
		{"kind", Keepalive{Kind: 0}, KeepaliveSize, nil, ErrKind},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, tc.dst)
			for i := range dst {
				dst[i] = 0xee
			}
			n, err := tc.in.MarshalTo(dst)
			require.ErrorIs(t, err, tc.err)
			if tc.err != nil {
				require.Zero(t, n)
				for _, c := range dst {
					require.Equal(t, byte(0xee), c)
				}
				return
			}
			require.Equal(t, KeepaliveSize, n)
			require.Equal(t, tc.want, dst[:n])
			var back Keepalive
			require.NoError(t, back.Unmarshal(dst[:n]))
			require.Equal(t, tc.in, back)
		})
	}
}

func TestControlAllocs(t *testing.T) {
	ackV4 := bindAck(media.Video, StatusOK, 7, 40000, 4, v4.As16())
	ackV6 := bindAck(media.Video, StatusOK, 7, 40000, 6, v6.As16())
	kaPkt := keepalive(TypeKeepalive)
	dst := make([]byte, MaxPacketSize)
	var (
		ack BindAck
		ka  Keepalive
	)
	tests := []struct {
		name string
		f    func()
	}{
		{"BindAck.Unmarshal v4", func() { _ = ack.Unmarshal(ackV4) }},
		{"BindAck.MarshalTo v4", func() { _, _ = ack.MarshalTo(dst) }},
		{"BindAck.Unmarshal v6", func() { _ = ack.Unmarshal(ackV6) }},
		{"BindAck.MarshalTo v6", func() { _, _ = ack.MarshalTo(dst) }},
		{"Keepalive.Unmarshal", func() { _ = ka.Unmarshal(kaPkt) }},
		{"Keepalive.MarshalTo", func() { _, _ = ka.MarshalTo(dst) }},
	}
	// Sequential on purpose: each MarshalTo marshals what the Unmarshal
	// before it produced.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Zero(t, testing.AllocsPerRun(100, tc.f))
		})
	}
	require.Equal(t, media.Video, ack.Kind)
	require.Equal(t, v6, ack.Mapped.Addr())
}

// TestProtocolDocExamples pins the example packets printed in
// docs/PROTOCOL.md, so that the document and the code cannot drift apart.
func TestProtocolDocExamples(t *testing.T) {
	tests := []struct {
		name string
		m    interface{ MarshalTo([]byte) (int, error) }
		want string
	}{
		{"bind ack verify", &BindAck{Kind: media.Audio, Status: StatusVerify, TxID: 0x01020304, Mapped: netip.MustParseAddrPort("192.0.2.7:40000"), Nonce: 0xa1b2c3d4e5f60718},
			"0501010101020304" + "9c40040000000000" + "000000000000ffff" + "c0000207" + "a1b2c3d4e5f60718"},
		{"bind ack", &BindAck{Kind: media.Audio, TxID: 0x01020305, Mapped: netip.MustParseAddrPort("192.0.2.7:40000"), Nonce: 0x0123456789abcdef},
			"0501010001020305" + "9c40040000000000" + "000000000000ffff" + "c0000207" + "0123456789abcdef"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var dst [64]byte
			n, err := tc.m.MarshalTo(dst[:])
			require.NoError(t, err)
			require.Equal(t, tc.want, hex.EncodeToString(dst[:n]))
		})
	}
}
