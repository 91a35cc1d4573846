package wire

import (
	"encoding/binary"
	"errors"
	"io"
)

// FrameHeaderSize is the RFC 4571 §2 length prefix: a 16-bit big-endian
// count of the bytes of the packet that follows.
const FrameHeaderSize = 2

// ErrFrameSize is returned for a frame of length 0 or above the limit: on a
// media stream that means garbage or a peer out of sync, and the
// connection must close.
var ErrFrameSize = errors.New("wire: RFC 4571 frame length out of range")

// Deframer reads RFC 4571 framed packets from a stream. It buffers reads
// (several frames per read syscall) in a buffer it owns. Not safe for
// concurrent use.
type Deframer struct {
	r          io.Reader
	buf        []byte
	start, end int
	max        int
}

// deframerBuf is the read buffer size: several 1500-byte frames per read
// while keeping an idle connection's memory small.
const deframerBuf = 8 << 10

// NewDeframer returns a Deframer reading from r that accepts frames of 1 to
// max bytes (max at most 65535).
func NewDeframer(r io.Reader, max int) *Deframer {
	if max > 0xffff {
		max = 0xffff
	}
	size := deframerBuf
	if size < FrameHeaderSize+max {
		size = FrameHeaderSize + max
	}
	return &Deframer{r: r, buf: make([]byte, size), max: max}
}

// Next returns the next packet. The slice is valid until the next call
// that reads (any call made while HasFrame is false); packets returned
// while frames were buffered stay valid together until then. It
// returns io.EOF at a clean end of stream (between frames),
// io.ErrUnexpectedEOF in the middle of one, and ErrFrameSize for an
// impossible length.
func (d *Deframer) Next() ([]byte, error) {
	if err := d.fill(FrameHeaderSize); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(d.buf[d.start:]))
	if n == 0 || n > d.max {
		return nil, ErrFrameSize
	}
	if err := d.fill(FrameHeaderSize + n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	p := d.buf[d.start+FrameHeaderSize : d.start+FrameHeaderSize+n]
	d.start += FrameHeaderSize + n
	return p, nil
}

// Buffered reports whether a whole frame may already be buffered, so a
// caller can keep routing before it flushes its output.
func (d *Deframer) Buffered() int { return d.end - d.start }

// HasFrame reports whether the next frame is already buffered whole with a
// valid length, so that Next will return it without reading and without
// moving the buffer: frames returned earlier stay valid across that call.
func (d *Deframer) HasFrame() bool {
	avail := d.end - d.start
	if avail < FrameHeaderSize {
		return false
	}
	n := int(binary.BigEndian.Uint16(d.buf[d.start:]))
	return n != 0 && n <= d.max && avail >= FrameHeaderSize+n
}

// fill makes at least n bytes available from d.start.
func (d *Deframer) fill(n int) error {
	for d.end-d.start < n {
		if d.start > 0 && len(d.buf)-d.start < n {
			d.end = copy(d.buf, d.buf[d.start:d.end])
			d.start = 0
		}
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if d.end-d.start >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF && d.end-d.start > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// AppendFrame appends pkt to dst with its RFC 4571 length prefix.
func AppendFrame(dst, pkt []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(pkt)))
	return append(dst, pkt...)
}
