package wire

import (
	"bytes"
	"io"
	"math/rand/v2"
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
	big, _ := manyFrames(42, 30) // several buffers' worth: compactions
	f.Add(big)
	f.Fuzz(func(t *testing.T, in []byte) {
		// Reads of varying sizes (the chunk sizes come from the input) so
		// that frames straddle reads and the buffer gets compacted.
		d := NewDeframer(&chunkReader{b: in}, 1500)
		total := 0
		// held are frames returned while HasFrame was true, with a copy:
		// they must stay intact until Next is called with HasFrame false.
		var held, copies [][]byte
		check := func() {
			for i := range held {
				if !bytes.Equal(held[i], copies[i]) {
					t.Fatalf("frame %d changed before the next read", i)
				}
			}
			held, copies = held[:0], copies[:0]
		}
		for {
			if !d.HasFrame() {
				check()
			}
			p, err := d.Next()
			if err != nil {
				break
			}
			if len(p) == 0 || len(p) > 1500 {
				t.Fatalf("frame of %d bytes", len(p))
			}
			held, copies = append(held, p), append(copies, bytes.Clone(p))
			total += FrameHeaderSize + len(p)
		}
		check()
		if total > len(in) {
			t.Fatalf("read %d bytes of frames from %d input bytes", total, len(in))
		}
	})
}

// chunkReader returns b in reads of 1 to 4096 bytes, the size of each taken
// from the data itself.
type chunkReader struct {
	b     []byte
	fixed int // if > 0, every read returns up to this many bytes instead
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.b), 1+int(c.b[0])*16)
	if c.fixed > 0 {
		n = min(len(p), len(c.b), c.fixed)
	}
	n = copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

// manyFrames returns n frames of pseudo-random sizes 1..1500 and contents.
func manyFrames(seed uint64, n int) (stream []byte, frames [][]byte) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for range n {
		p := make([]byte, 1+rng.IntN(1500))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		frames = append(frames, p)
		stream = AppendFrame(stream, p)
	}
	return stream, frames
}

// TestDeframerHeldFrames: frames returned while HasFrame is true stay valid
// together until a Next that reads, whatever the read sizes, across buffer
// compactions (the stream is many times the 8 KiB buffer).
func TestDeframerHeldFrames(t *testing.T) {
	for seed := range uint64(8) {
		stream, want := manyFrames(seed, 300)
		// Chunk sizes from the seed: 1-byte reads up to whole-buffer reads.
		d := NewDeframer(&chunkReader{b: stream, fixed: []int{1, 7, 100, 1500, 3000, 9000, 0, 4096}[seed]}, 1500)
		var held, copies [][]byte
		got := 0
		for {
			if !d.HasFrame() {
				for i := range held {
					require.Equal(t, copies[i], held[i], "seed %d: a held frame changed", seed)
				}
				held, copies = held[:0], copies[:0]
			}
			p, err := d.Next()
			if err != nil {
				require.ErrorIs(t, err, io.EOF)
				break
			}
			require.Equal(t, want[got], p)
			got++
			held, copies = append(held, p), append(copies, bytes.Clone(p))
		}
		require.Equal(t, len(want), got)
	}
}

func TestDeframerHasFrame(t *testing.T) {
	frame := AppendFrame(nil, []byte("abcdef"))
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"empty", nil, false},
		{"half a header", frame[:1], false},
		{"header only", frame[:2], false},
		{"partial payload", frame[:5], false},
		{"whole frame", frame, true},
		{"zero length", []byte{0, 0, 1}, false},
		{"above max", []byte{0x05, 0xdd, 1}, false}, // 1501
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDeframer(bytes.NewReader(tc.in), 1500)
			require.False(t, d.HasFrame(), "nothing buffered before the first read")
			// Buffer the input without consuming a frame: Next on a
			// OneByte reader would consume, so fill directly.
			_ = d.fill(len(tc.in))
			require.Equal(t, tc.want, d.HasFrame())
		})
	}
}
