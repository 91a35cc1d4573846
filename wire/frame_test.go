package wire

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func TestDeframer(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := 1; i <= 40; i++ {
		p := bytes.Repeat([]byte{byte(i)}, i*37)
		want = append(want, p)
		stream = AppendFrame(stream, p)
	}
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDeframer(tc.r(), 1500)
			for _, w := range want {
				got, err := d.Next()
				require.NoError(t, err)
				require.Equal(t, w, got)
			}
			_, err := d.Next()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

func TestDeframerErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		err   error
	}{
		{"zero length", []byte{0, 0, 1}, ErrFrameSize},
		{"too long", []byte{0x05, 0xdd, 1}, ErrFrameSize}, // 1501
		{"truncated body", []byte{0, 4, 1, 2}, io.ErrUnexpectedEOF},
		{"truncated header", []byte{0}, io.ErrUnexpectedEOF},
		{"empty", nil, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDeframer(bytes.NewReader(tc.input), 1500).Next()
			require.ErrorIs(t, err, tc.err)
		})
	}
}

func TestDeframerAllocs(t *testing.T) {
	frame := AppendFrame(nil, make([]byte, 1200))
	r := bytes.NewReader(nil)
	d := NewDeframer(r, 1500)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(frame)
		if _, err := d.Next(); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
}

func FuzzDeframer(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte{1, 2, 3}), []byte{4}))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewDeframer(bytes.NewReader(in), 1500)
		total := 0
		for {
			p, err := d.Next()
			if err != nil {
				break
			}
			if len(p) == 0 || len(p) > 1500 {
				t.Fatalf("frame of %d bytes", len(p))
			}
			total += FrameHeaderSize + len(p)
		}
		if total > len(in) {
			t.Fatalf("read %d bytes of frames from %d input bytes", total, len(in))
		}
	})
}
