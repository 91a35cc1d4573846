package proto

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func frames(t *testing.T, payloads ...[]byte) []byte {
	t.Helper()
	var b []byte
	for _, p := range payloads {
		var err error
		b, err = AppendFrame(b, p)
		require.NoError(t, err)
	}
	return b
}

func TestFrameReaderRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 10_000)
	stream := frames(t, []byte("a"), big, []byte(`{"type":"ping"}`))
	fr := NewFrameReader(bytes.NewReader(stream), 0)

	p, err := fr.Next()
	require.NoError(t, err)
	require.Equal(t, []byte("a"), p)
	require.Equal(t, smallBuf, cap(fr.buf), "small frames use the small buffer")

	p, err = fr.Next()
	require.NoError(t, err)
	require.Equal(t, big, p)

	p, err = fr.Next()
	require.NoError(t, err)
	require.Equal(t, []byte(`{"type":"ping"}`), p)
	require.Equal(t, smallBuf, cap(fr.buf), "the big frame's buffer is released")

	_, err = fr.Next()
	require.ErrorIs(t, err, io.EOF)
}

func TestFrameReaderErrors(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name  string
		input []byte
		max   int
		want  error
	}{
		{"empty stream", nil, 0, io.EOF},
		{"short header", []byte{0, 0}, 0, io.ErrUnexpectedEOF},
		{"zero length", hdr(0), 0, ErrEmptyFrame},
		{"over default max", hdr(DefaultMaxFrame + 1), 0, ErrFrameTooLarge},
		{"over custom max", append(hdr(11), make([]byte, 11)...), 10, ErrFrameTooLarge},
		{"huge length", hdr(0xffffffff), 0, ErrFrameTooLarge},
		{"truncated payload", append(hdr(5), 'a', 'b'), 0, io.ErrUnexpectedEOF},
		{"header only", hdr(5), 0, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tc.input), tc.max).Next()
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestFrameReaderExactMax(t *testing.T) {
	p := bytes.Repeat([]byte{'z'}, 100)
	got, err := NewFrameReader(bytes.NewReader(frames(t, p)), 100).Next()
	require.NoError(t, err)
	require.Equal(t, p, got)
}

func TestAppendFrameEmpty(t *testing.T) {
	_, err := AppendFrame(nil, nil)
	require.ErrorIs(t, err, ErrEmptyFrame)
}

func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'a'})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1})
	f.Add(append([]byte{0, 0, 0x10, 0}, make([]byte, 4096)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewFrameReader(bytes.NewReader(in), 1<<12)
		consumed := 0
		for {
			p, err := fr.Next()
			if err != nil {
				return
			}
			require.NotEmpty(t, p)
			require.LessOrEqual(t, len(p), 1<<12)
			consumed += HeaderSize + len(p)
			require.LessOrEqual(t, consumed, len(in))
			require.Equal(t, in[consumed-len(p):consumed], p)
		}
	})
}
