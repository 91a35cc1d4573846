package proto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func validEndpoints() Endpoints {
	return Endpoints{
		UDP: []netip.AddrPort{ap("192.0.2.1:8801"), ap("[2001:db8::1]:8801")},
		TCP: []netip.AddrPort{ap("192.0.2.1:8801")},
		TLS: []netip.AddrPort{ap("192.0.2.1:443")},
	}
}

func proofBytes() []byte { return bytes.Repeat([]byte{7}, ProofSize) }

// validMessages has one valid message of every JSON type.
func validMessages() []Message {
	hosted := []Hosted{{ID: "m1", Participants: 3}, {ID: "会议", Participants: 0}}
	return []Message{
		&Hello{Version: Version, MMR: "mmr-1", Proof: proofBytes()},
		&Welcome{Version: Version, ZC: "zc-a", Proof: proofBytes(), IntervalMS: 1000},
		&Register{Endpoints: validEndpoints(), Capacity: Capacity{Participants: 1000, Meetings: 100, BitsOut: 1e9, CPU: 0.85},
			Fingerprint: strings.Repeat("ab", 32), Software: "openmmr test"},
		&Report{Seq: 9, Participants: 12, Meetings: 2, PacketsIn: 100, PacketsOut: 900, BitsIn: 1e6, BitsOut: 9e6, CPU: 0.25, Draining: true, Hosted: &hosted},
		&Report{Seq: 10},
		&ReportAck{Seq: 9},
		&Bye{Reason: "drained"},
		&Lookup{Meeting: "123 456 789"},
		&Placement{Meeting: "m<&>", MMR: "mmr-1", Endpoints: validEndpoints(), Existing: true},
		&Error{Code: ErrCodeNoCapacity, Message: "every MMR is full"},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range validMessages() {
		t.Run(typeOf(m).String(), func(t *testing.T) {
			frame, err := AppendMessage(nil, m)
			require.NoError(t, err)
			typ, body, err := NewFrameReader(bytes.NewReader(frame)).Read(MaxSmallFrame)
			require.NoError(t, err)
			require.Equal(t, typeOf(m), typ)
			got, err := Decode(typ, body)
			require.NoError(t, err)
			require.Equal(t, m, got)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	tooMany := make([]netip.AddrPort, MaxEndpoints+1)
	for i := range tooMany {
		tooMany[i] = ap("192.0.2.1:8801")
	}
	cases := []struct {
		name string
		typ  Type
		body string
	}{
		{"not json", TypeLookup, "garbage"},
		{"json array", TypeLookup, `["m"]`},
		{"trailing", TypeLookup, `{"meeting":"m"} {}`},
		{"empty meeting", TypeLookup, `{"meeting":""}`},
		{"long meeting", TypeLookup, `{"meeting":"` + long + `"}`},
		{"hello version", TypeHello, `{"v":2,"mmr":"a","proof":"` + strings.Repeat("A", 43) + `="}`},
		{"hello short proof", TypeHello, `{"v":1,"mmr":"a","proof":"AAAA"}`},
		{"hello no mmr", TypeHello, `{"v":1,"proof":"` + strings.Repeat("A", 43) + `="}`},
		{"welcome interval", TypeWelcome, `{"v":1,"zc":"z","interval_ms":0,"proof":"` + strings.Repeat("A", 43) + `="}`},
		{"register no endpoints", TypeRegister, `{"endpoints":{},"capacity":{}}`},
		{"register bad addr", TypeRegister, `{"endpoints":{"udp":["nonsense"]}}`},
		{"register port 0", TypeRegister, `{"endpoints":{"udp":["192.0.2.1:0"]}}`},
		{"register unspecified", TypeRegister, `{"endpoints":{"udp":["0.0.0.0:8801"]}}`},
		{"register cpu", TypeRegister, `{"endpoints":{"udp":["192.0.2.1:8801"]},"capacity":{"cpu":1.5}}`},
		{"register negative", TypeRegister, `{"endpoints":{"udp":["192.0.2.1:8801"]},"capacity":{"meetings":-1}}`},
		{"register fingerprint", TypeRegister, `{"endpoints":{"udp":["192.0.2.1:8801"]},"fingerprint":"zz"}`},
		{"report negative", TypeReport, `{"seq":1,"participants":-3}`},
		{"report cpu", TypeReport, `{"seq":1,"cpu":-0.1}`},
		{"report negative pps", TypeReport, `{"seq":1,"pps_in":-1}`},
		{"report dup hosted", TypeReport, `{"seq":1,"hosted":[{"id":"a"},{"id":"a"}]}`},
		{"report empty hosted id", TypeReport, `{"seq":1,"hosted":[{"id":""}]}`},
		{"error no code", TypeError, `{"message":"x"}`},
		{"probe is binary", TypeProbe, `{}`},
		{"unknown type", Type(99), `{}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.typ, []byte(c.body))
			require.Error(t, err)
		})
	}
	t.Run("invalid utf8 id", func(t *testing.T) {
		// encoding/json turns invalid UTF-8 into U+FFFD, so only direct
		// callers can hand such an ID in.
		require.Error(t, CheckID("meeting", "\xff"))
		_, err := AppendMessage(nil, &Lookup{Meeting: "\xff"})
		require.Error(t, err)
	})
	t.Run("too many endpoints", func(t *testing.T) {
		_, err := AppendMessage(nil, &Register{Endpoints: Endpoints{UDP: tooMany}})
		require.Error(t, err)
	})
}

func TestDecodeNullHosted(t *testing.T) {
	// "hosted": null decodes to an absent list (no change), [] to an empty one.
	m, err := Decode(TypeReport, []byte(`{"seq":1,"hosted":null}`))
	require.NoError(t, err)
	require.Nil(t, m.(*Report).Hosted)
	m, err = Decode(TypeReport, []byte(`{"seq":1,"hosted":[]}`))
	require.NoError(t, err)
	require.NotNil(t, m.(*Report).Hosted)
	require.Empty(t, *m.(*Report).Hosted)
}

func TestDecodeAs(t *testing.T) {
	frame, err := AppendMessage(nil, &Error{Code: ErrCodeAuth})
	require.NoError(t, err)
	typ, body, err := NewFrameReader(bytes.NewReader(frame)).Read(MaxSmallFrame)
	require.NoError(t, err)
	_, err = DecodeAs[Welcome](typ, body)
	require.ErrorIs(t, err, &Error{Code: ErrCodeAuth})

	_, err = DecodeAs[Welcome](TypeLookup, []byte(`{"meeting":"m"}`))
	require.ErrorContains(t, err, "want welcome")
	l, err := DecodeAs[Lookup](TypeLookup, []byte(`{"meeting":"m"}`))
	require.NoError(t, err)
	require.Equal(t, "m", l.Meeting)
}

func TestFrameReader(t *testing.T) {
	big := AppendFrame(nil, TypeLookup, make([]byte, MaxSmallFrame))
	cases := []struct {
		name  string
		in    []byte
		limit int
		want  error
	}{
		{"clean eof", nil, MaxSmallFrame, io.EOF},
		{"partial length", []byte{0, 0}, MaxSmallFrame, io.ErrUnexpectedEOF},
		{"zero length", []byte{0, 0, 0, 0}, MaxSmallFrame, ErrFrameEmpty},
		{"oversize", big, MaxSmallFrame, ErrFrameTooLarge},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 1}, MaxFrame, ErrFrameTooLarge},
		{"no type", []byte{0, 0, 0, 1}, MaxSmallFrame, io.ErrUnexpectedEOF},
		{"short body", []byte{0, 0, 0, 5, 16, 1}, MaxSmallFrame, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := NewFrameReader(bytes.NewReader(c.in)).Read(c.limit)
			require.ErrorIs(t, err, c.want)
		})
	}
	t.Run("reuses buffer across frames", func(t *testing.T) {
		var in []byte
		in = AppendFrame(in, TypeLookup, []byte("first-longer"))
		in = AppendFrame(in, TypeBye, []byte("2nd"))
		in = AppendFrame(in, TypeBye, nil)
		fr := NewFrameReader(bytes.NewReader(in))
		typ, body, err := fr.Read(MaxSmallFrame)
		require.NoError(t, err)
		require.Equal(t, TypeLookup, typ)
		require.Equal(t, "first-longer", string(body))
		typ, body, err = fr.Read(MaxSmallFrame)
		require.NoError(t, err)
		require.Equal(t, TypeBye, typ)
		require.Equal(t, "2nd", string(body))
		_, body, err = fr.Read(MaxSmallFrame)
		require.NoError(t, err)
		require.Empty(t, body)
		_, _, err = fr.Read(MaxSmallFrame)
		require.ErrorIs(t, err, io.EOF)
	})
}

func TestProbe(t *testing.T) {
	for _, pad := range []int{0, 1, MaxProbePad} {
		p := Probe{Seq: 42, Stamp: 1 << 60, Pad: pad}
		frame, err := AppendProbe(nil, TypeProbe, p)
		require.NoError(t, err)
		typ, body, err := NewFrameReader(bytes.NewReader(frame)).Read(MaxSmallFrame)
		require.NoError(t, err)
		require.Equal(t, TypeProbe, typ)
		got, err := DecodeProbe(body)
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	_, err := AppendProbe(nil, TypeProbe, Probe{Pad: MaxProbePad + 1})
	require.Error(t, err)
	_, err = AppendProbe(nil, TypeLookup, Probe{})
	require.Error(t, err)
	_, err = DecodeProbe(make([]byte, ProbeHeaderSize-1))
	require.Error(t, err)
	_, err = DecodeProbe(make([]byte, ProbeHeaderSize+MaxProbePad+1))
	require.Error(t, err)
}

func TestProofs(t *testing.T) {
	secret := []byte("0123456789abcdef0123")
	exp := bytes.Repeat([]byte{1}, 32)
	p := MMRProof(secret, exp, "mmr-1")
	require.Len(t, p, ProofSize)
	require.True(t, VerifyProof(p, MMRProof(secret, exp, "mmr-1")))
	for name, other := range map[string][]byte{
		"other secret":   MMRProof([]byte("0123456789abcdef0124"), exp, "mmr-1"),
		"other exporter": MMRProof(secret, bytes.Repeat([]byte{2}, 32), "mmr-1"),
		"other mmr":      MMRProof(secret, exp, "mmr-2"),
		"reflected":      ZCProof(secret, exp, "mmr-1"),
	} {
		require.False(t, VerifyProof(p, other), name)
	}
	require.ErrorIs(t, CheckSecret([]byte("short")), ErrSecretShort)
	require.NoError(t, CheckSecret(secret))
}

func TestErrorIs(t *testing.T) {
	var err error = &Error{Code: ErrCodeRateLimited, Message: "x"}
	require.True(t, errors.Is(err, &Error{Code: ErrCodeRateLimited}))
	require.False(t, errors.Is(err, &Error{Code: ErrCodeAuth}))
	require.Equal(t, "zone: rate_limited: x", err.Error())
}
