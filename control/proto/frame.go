package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// HeaderSize is the size of the frame header: the payload length as an
// unsigned 32-bit big-endian integer (docs/control-protocol.md, "Framing").
const HeaderSize = 4

// Frame size limits. Each side enforces its own limit on what it receives.
const (
	// DefaultMaxFrame is the largest payload the server accepts by default
	// (announced in welcome.max_frame). 64 KiB is two orders of magnitude
	// above the largest client message (a join with a 128-byte meeting ID,
	// a 512-byte token and a 128-byte name), and small enough that a flood
	// of maximal frames costs little memory.
	DefaultMaxFrame = 64 << 10
	// ClientMaxFrame is the largest payload a client must accept. The
	// biggest server message is a joined or resumed carrying the roster of a
	// full meeting: 1,000 participants of at most ~700 bytes each fit in 1
	// MiB; 16 MiB leaves room for larger configured meetings.
	ClientMaxFrame = 16 << 20
	// smallBuf is the read buffer a FrameReader keeps between frames. Most
	// control messages are below 256 bytes; anything bigger gets a buffer of
	// its own size that is released again after the frame (shrinkAbove), so
	// an idle connection holds at most smallBuf bytes here.
	smallBuf    = 512
	shrinkAbove = 4 << 10
)

// Frame errors. They are returned unwrapped.
var (
	// ErrFrameTooLarge means the length prefix exceeds the reader's limit.
	// The payload has not been read; the stream cannot be resynchronised.
	ErrFrameTooLarge = errors.New("proto: frame exceeds the maximum size")
	// ErrEmptyFrame means a length prefix of zero, which is never valid.
	ErrEmptyFrame = errors.New("proto: empty frame")
)

// FrameReader reads length-prefixed frames from a stream, reusing a small
// buffer between frames and allocating only for larger ones. It does no
// buffering of its own beyond one frame (the TLS connection below already
// buffers a record). Not safe for concurrent use; the slice returned by Next
// is owned by the FrameReader and valid only until the next call.
type FrameReader struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
}

// NewFrameReader returns a FrameReader on r that rejects payloads longer
// than max bytes (max <= 0 means DefaultMaxFrame).
func NewFrameReader(r io.Reader, max int) *FrameReader {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	return &FrameReader{r: r, max: max}
}

// Next reads one frame and returns its payload. Errors: io.EOF when the
// stream ends cleanly between frames, io.ErrUnexpectedEOF when it ends inside
// one, ErrEmptyFrame, ErrFrameTooLarge, or the reader's own error. After any
// error the stream is unusable. Never panics.
func (fr *FrameReader) Next() ([]byte, error) {
	if cap(fr.buf) > shrinkAbove {
		fr.buf = nil // give a big frame's buffer back between frames
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	if uint64(n) > uint64(fr.max) {
		return nil, ErrFrameTooLarge
	}
	if int(n) > cap(fr.buf) {
		fr.buf = make([]byte, max(int(n), smallBuf))
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// AppendFrame appends payload with its length prefix to dst and returns the
// extended slice. It fails only for an empty payload or one longer than
// 2^32-1 bytes.
func AppendFrame(dst, payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return dst, ErrEmptyFrame
	}
	if uint64(len(payload)) > 1<<32-1 {
		return dst, fmt.Errorf("proto: payload of %d bytes: %w", len(payload), ErrFrameTooLarge)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...), nil
}
