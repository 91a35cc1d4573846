package proto

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzDecode checks that Decode of type t never panics, and that whatever it
// accepts re-encodes to a frame that decodes and re-encodes to the same
// bytes. (Bytes, not Go values: an empty list and an absent one are the same
// message, encoded alike.)
func fuzzDecode(f *testing.F, t Type) {
	for _, m := range validMessages() {
		if typeOf(m) == t {
			frame, err := AppendMessage(nil, m)
			require.NoError(f, err)
			f.Add(frame[5:])
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"hosted":[{"id":"a","p":-1}]}`))
	f.Fuzz(func(tt *testing.T, body []byte) {
		m, err := Decode(t, body)
		if err != nil {
			return
		}
		frame, err := AppendMessage(nil, m)
		require.NoError(tt, err)
		typ, body2, err := NewFrameReader(bytes.NewReader(frame)).Read(MaxFrame)
		require.NoError(tt, err)
		require.Equal(tt, t, typ)
		m2, err := Decode(typ, body2)
		require.NoError(tt, err)
		frame2, err := AppendMessage(nil, m2)
		require.NoError(tt, err)
		require.Equal(tt, string(frame), string(frame2))
	})
}

func FuzzHello(f *testing.F)     { fuzzDecode(f, TypeHello) }
func FuzzWelcome(f *testing.F)   { fuzzDecode(f, TypeWelcome) }
func FuzzRegister(f *testing.F)  { fuzzDecode(f, TypeRegister) }
func FuzzReport(f *testing.F)    { fuzzDecode(f, TypeReport) }
func FuzzReportAck(f *testing.F) { fuzzDecode(f, TypeReportAck) }
func FuzzBye(f *testing.F)       { fuzzDecode(f, TypeBye) }
func FuzzLookup(f *testing.F)    { fuzzDecode(f, TypeLookup) }
func FuzzPlacement(f *testing.F) { fuzzDecode(f, TypePlacement) }
func FuzzError(f *testing.F)     { fuzzDecode(f, TypeError) }

func FuzzProbe(f *testing.F) {
	frame, err := AppendProbe(nil, TypeProbe, Probe{Seq: 1, Stamp: 2, Pad: 3})
	require.NoError(f, err)
	f.Add(frame[5:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodeProbe(body)
		if err != nil {
			return
		}
		frame, err := AppendProbe(nil, TypeProbeEcho, p)
		require.NoError(t, err)
		require.Equal(t, len(body), len(frame)-5) // echo has the probe's size
	})
}

// FuzzFrameReader feeds arbitrary streams to the frame reader: it must end
// with an error, never panic, and never return a body above the limit.
func FuzzFrameReader(f *testing.F) {
	f.Add(AppendFrame(nil, TypeLookup, []byte(`{"meeting":"m"}`)), uint16(64))
	f.Add([]byte{0, 0, 0, 0}, uint16(64))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(64))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		fr := NewFrameReader(bytes.NewReader(in))
		for range len(in) + 1 {
			_, body, err := fr.Read(int(limit))
			if err != nil {
				return
			}
			require.Less(t, len(body), int(limit)+1)
		}
		t.Fatal("reader did not stop")
	})
}
