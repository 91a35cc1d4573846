package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is a message type: the byte after the length of every frame.
type Type uint8

// Message types. The first frame a peer sends fixes its role on the
// connection: TypeHello makes it an MMR registering with the ZC; TypeLookup
// or TypeProbe make it a client. Values are stable wire constants.
const (
	TypeHello     Type = 1  // MMR → ZC: identity and zone-secret proof (JSON)
	TypeWelcome   Type = 2  // ZC → MMR: the ZC's proof and report interval (JSON)
	TypeRegister  Type = 3  // MMR → ZC: endpoints and capacity (JSON)
	TypeReport    Type = 4  // MMR → ZC: load report (JSON)
	TypeReportAck Type = 5  // ZC → MMR: report received (JSON)
	TypeBye       Type = 6  // MMR → ZC: leaving the zone now (JSON)
	TypeLookup    Type = 16 // client → ZC: which MMR hosts meeting M (JSON)
	TypePlacement Type = 17 // ZC → client: answer to a Lookup (JSON)
	TypeProbe     Type = 18 // client → ZC: performance-test probe (binary)
	TypeProbeEcho Type = 19 // ZC → client: the probe sent back (binary)
	TypeError     Type = 127
)

// String returns the type's name, or "type(N)".
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeRegister:
		return "register"
	case TypeReport:
		return "report"
	case TypeReportAck:
		return "report_ack"
	case TypeBye:
		return "bye"
	case TypeLookup:
		return "lookup"
	case TypePlacement:
		return "placement"
	case TypeProbe:
		return "probe"
	case TypeProbeEcho:
		return "probe_echo"
	case TypeError:
		return "error"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Frame size limits, counting the type byte and the body (not the 4-byte
// length itself).
const (
	// MaxSmallFrame bounds every frame before an MMR has authenticated and
	// every frame of a client connection. The largest such message is a
	// Register with the maximum number of endpoints (about 1.5 KiB); 4 KiB
	// leaves room for growth while an unauthenticated peer can make the ZC
	// buffer at most 4 KiB per connection.
	MaxSmallFrame = 4 << 10
	// MaxFrame bounds every frame on an authenticated MMR connection. A
	// Report listing MaxHosted meetings with IDs of MaxIDLen bytes is about
	// 3 MiB in the worst case; typical IDs (≤ 32 bytes) put 20,000 meetings
	// near 1 MiB. 4 MiB caps the memory one MMR can pin in the ZC.
	MaxFrame = 4 << 20
	// lenSize is the size of the length prefix.
	lenSize = 4
)

// Framing errors. They are returned unwrapped so callers can compare them.
var (
	ErrFrameTooLarge = errors.New("zone/proto: frame larger than the limit")
	ErrFrameEmpty    = errors.New("zone/proto: frame without a type byte")
)

// AppendFrame appends the frame (length, t, body) to dst and returns the
// extended slice. len(body) must be below MaxFrame.
func AppendFrame(dst []byte, t Type, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)))
	dst = append(dst, byte(t))
	return append(dst, body...)
}

// WriteFrame writes one frame with a single Write call (so that it leaves in
// one TLS record when it fits).
func WriteFrame(w io.Writer, t Type, body []byte) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, lenSize+1+len(body)), t, body))
	return err
}

// FrameReader reads frames from a stream, reusing one buffer that grows up to
// the largest frame read. It is not safe for concurrent use; the body
// returned by Read is owned by the FrameReader and valid until the next Read.
type FrameReader struct {
	R   io.Reader
	buf []byte
	hdr [lenSize + 1]byte
}

// NewFrameReader returns a FrameReader reading from r.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{R: r} }

// Read reads the next frame, refusing one whose length exceeds limit with
// ErrFrameTooLarge before reading its body (so an oversize length costs no
// memory). io.EOF means a clean end between frames; io.ErrUnexpectedEOF an end
// inside one.
func (fr *FrameReader) Read(limit int) (Type, []byte, error) {
	if _, err := io.ReadFull(fr.R, fr.hdr[:lenSize]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:lenSize])
	if n == 0 {
		return 0, nil, ErrFrameEmpty
	}
	if uint64(n) > uint64(limit) {
		return 0, nil, ErrFrameTooLarge
	}
	if _, err := io.ReadFull(fr.R, fr.hdr[lenSize:]); err != nil {
		return 0, nil, noEOF(err)
	}
	body := int(n) - 1
	if cap(fr.buf) < body {
		fr.buf = make([]byte, body)
	}
	fr.buf = fr.buf[:body]
	if _, err := io.ReadFull(fr.R, fr.buf); err != nil {
		return 0, nil, noEOF(err)
	}
	return Type(fr.hdr[lenSize]), fr.buf, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
