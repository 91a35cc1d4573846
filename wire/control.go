package wire

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"

	"github.com/openmmr/mmr/media"
)

// Control packet types: the first byte of each control packet. RFC 7983 §7
// leaves first bytes 4..19 unassigned (0..3 is STUN, 16..19 ZRTP, 20..63
// DTLS, 64..79 TURN channels, 128..191 RTP/RTCP); openmmr uses 4..7 so that
// a control packet can never be mistaken for any of those protocols.
// Immutable; safe for concurrent use.
const (
	TypeBind         = 4 // client → router: bind this flow to a participant
	TypeBindAck      = 5 // router → client: bind accepted, with mapped address
	TypeKeepalive    = 6 // client → router: keep NAT binding and flow alive
	TypeKeepaliveAck = 7 // router → client: answer to a keepalive
)

// Version is the protocol version carried in byte 1 of the BindAck,
// Keepalive and KeepaliveAck control packets; a Bind carries BindVersion.
// Packets with any other version are rejected with ErrVersion (and get no
// answer from the router). Immutable; safe for concurrent use.
const Version = 1

// Control packet sizes in bytes. Immutable; safe for concurrent use.
const (
	// headerSize is the common header: type, version, kind, status or
	// reserved (4 bytes), then TxID (4 bytes).
	headerSize = 8
	// BindSize is the size of a Bind (version 2): header (8), Handle (8),
	// Counter (8), Time (8), Nonce (8), MAC (16). It is larger than the
	// BindAck it triggers (BindAckSize), so the router never amplifies: a
	// spoofed source can get back at most what it sent.
	BindSize = headerSize + BindHandleSize + 8 + 8 + 8 + BindMACSize
	// BindAckSize is the size of a BindAck: header (8), port (2), address
	// family (1), reserved (1), mapped address (16), Nonce (8).
	BindAckSize = headerSize + 2 + 1 + 1 + 16 + 8
	// KeepaliveSize is the size of a Keepalive and of a KeepaliveAck: the
	// header and a Nonce (8).
	KeepaliveSize = headerSize + 8
)

// StatusVerify is the BindAck status of a return-routability challenge:
// the router has not bound the flow, and will once the client sends the
// Bind again, from the same address and port, with the BindAck's Nonce
// (docs/PROTOCOL.md, "Binding a flow"). Immutable; safe for concurrent use.
const StatusVerify uint8 = 1

// Consent freshness (RFC 7675), docs/PROTOCOL.md "Keepalives": the router
// stops sending media to a UDP flow whose client has not echoed a recent
// consent nonce for ConsentTimeout; clients send a Keepalive echoing the
// latest nonce every ConsentInterval (RFC 7675 §5.1's 5 s), so that
// several in a row may be lost before consent lapses. Immutable; safe for
// concurrent use.
const (
	ConsentInterval = 5 * time.Second
	ConsentTimeout  = 30 * time.Second
)

// StatusOK is the BindAck status of an accepted bind. With StatusVerify
// it is one of the two statuses of Version 1; a client must treat a
// BindAck with any other status as a failed bind. (The router does not
// answer binds it rejects, see docs/PROTOCOL.md.) Immutable; safe for
// concurrent use.
const StatusOK uint8 = 0

// Address family codes of BindAck byte 10 (the IP version).
const (
	familyIPv4 = 4
	familyIPv6 = 6
)

// KeepaliveInterval is the longest a client may wait between two Keepalives
// on a bound flow. 15 s is well below the 30 s UDP mapping timeout common in
// home NATs: RFC 4787 REQ-5 asks NATs to keep idle UDP mappings for at least
// 2 minutes, but many deployed devices use 30 s, so refreshing twice per
// such period keeps the mapping alive even if one keepalive is lost.
// Immutable; safe for concurrent use.
const KeepaliveInterval = 15 * time.Second

// BindRTO is the time a client waits for a BindAck after its first Bind
// before retransmitting; each further wait doubles (100, 200, 400, 800,
// 1600 ms). BindMaxTries is the number of Binds a client sends in total
// before it gives up on UDP for that media kind (3.1 s in all).
// Immutable; safe for concurrent use.
const (
	BindRTO      = 100 * time.Millisecond
	BindMaxTries = 5
)

// Sentinel errors returned by the control-packet codecs. They are returned
// as is (never wrapped) so that comparing them costs no allocation.
// Read-only; safe for concurrent use.
var (
	// ErrShort means the packet is shorter than its type requires.
	ErrShort = errors.New("wire: packet too short")
	// ErrType means the first byte is not the packet type expected by the
	// Unmarshal that was called.
	ErrType = errors.New("wire: wrong packet type")
	// ErrVersion means byte 1 is not Version.
	ErrVersion = errors.New("wire: unsupported control packet version")
	// ErrKind means the media kind (byte 2, or a struct's Kind field when
	// marshalling) is not a valid media.Kind.
	ErrKind = errors.New("wire: invalid media kind")
	// ErrFamily means a BindAck's address family is neither 4 nor 6, or
	// does not match its address (IPv4 not in IPv4-mapped form, or an
	// IPv4-mapped address under family 6), or, when marshalling, that the
	// mapped address is not a valid IP address.
	ErrFamily = errors.New("wire: invalid address family")
	// ErrShortBuffer means the destination passed to MarshalTo is too small.
	ErrShortBuffer = errors.New("wire: destination buffer too small")
	// ErrReserved means a reserved byte that must be zero is not.
	ErrReserved = errors.New("wire: reserved field not zero")
	// ErrToken means a string given to ParseToken is not 32 hex digits.
	ErrToken = errors.New("wire: token must be 32 hexadecimal digits")
)

// TokenSize is the size in bytes of a media Token. Immutable; safe for
// concurrent use.
const TokenSize = 16

// Token is a participant's secret media token: 128 random bits, handed to
// the client over the control channel (or by the embedding API). It never
// travels on the media port: a Bind proves it with an HMAC (Bind.Sign) and
// names the participant by its public BindHandle, and Keepalives prove it
// with ConsentEcho. Whoever knows it can bind (and so redirect) that
// participant's media flows, so treat it like a password; in particular
// String reveals it, so do not log a Token or any struct that contains
// one. Token is a plain comparable value (usable as a map key); safe for
// concurrent use.
type Token [TokenSize]byte

// NewToken returns a new random Token drawn from crypto/rand. The error is
// non-nil only if the system's random source fails. Safe for concurrent use.
func NewToken() (Token, error) {
	var t Token
	if _, err := rand.Read(t[:]); err != nil {
		return Token{}, err
	}
	return t, nil
}

// String returns t as 32 lowercase hexadecimal digits. It allocates the
// returned string (not for the packet path). This is the secret itself: do
// not log it. Safe for concurrent use.
func (t Token) String() string {
	return hex.EncodeToString(t[:])
}

// ParseToken parses 32 hexadecimal digits (either case) as a Token, the
// inverse of Token.String. Any other input returns ErrToken. It keeps no
// reference to s. Safe for concurrent use.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) != 2*TokenSize {
		return Token{}, ErrToken
	}
	if _, err := hex.Decode(t[:], []byte(s)); err != nil {
		return Token{}, ErrToken
	}
	return t, nil
}

// parseHeader checks the common control header of b, whose first byte the
// caller has already checked, that b holds at least size bytes and that
// byte 1 is version. It returns the kind, byte 3 (status or reserved) and
// the TxID.
func parseHeader(b []byte, size int, version byte) (media.Kind, uint8, uint32, error) {
	if len(b) < size {
		return 0, 0, 0, ErrShort
	}
	if b[1] != version {
		return 0, 0, 0, ErrVersion
	}
	k := media.Kind(b[2])
	if !k.Valid() {
		return 0, 0, 0, ErrKind
	}
	return k, b[3], binary.BigEndian.Uint32(b[4:8]), nil
}

// putHeader writes the common control header, version 1, into dst, which
// the caller has checked holds at least headerSize bytes.
func putHeader(dst []byte, typ byte, k media.Kind, status uint8, txID uint32) {
	dst[0] = typ
	dst[1] = Version
	dst[2] = byte(k)
	dst[3] = status
	binary.BigEndian.PutUint32(dst[4:8], txID)
}

// BindAck is the router's answer to a valid Bind, sent from the router's
// media port to the Bind's source. It is BindAckSize bytes:
//
//	byte 0      TypeBindAck (5)
//	byte 1      Version (1)
//	byte 2      media kind, copied from the Bind
//	byte 3      status (StatusOK or StatusVerify)
//	bytes 4-7   TxID copied from the Bind, big-endian
//	bytes 8-9   mapped port, big-endian
//	byte 10     address family: 4 (IPv4) or 6 (IPv6)
//	byte 11     reserved, 0
//	bytes 12-27 mapped address, 16 bytes; an IPv4 address is written in
//	            IPv4-mapped IPv6 form ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
//	bytes 28-35 Nonce, big-endian: with StatusVerify the challenge to echo
//	            in a Bind; with StatusOK the first consent nonce to echo
//	            in Keepalives
//
// The mapped address and port are the Bind's source as the router saw it,
// like STUN's MAPPED-ADDRESS (RFC 8489 §14.1), so the client learns its
// NAT mapping. A BindAck is a plain value; see the
// package doc for concurrency.
type BindAck struct {
	Kind   media.Kind // media kind of the bound flow
	Status uint8      // StatusOK or StatusVerify; other values mean failure
	TxID   uint32     // the TxID of the Bind being answered
	// Mapped is the source address and port of the Bind as seen by the
	// router. After Unmarshal an IPv4 address is a 4-byte netip.Addr
	// (family 4) and an IPv6 address never carries a zone. MarshalTo
	// writes family 4 for both 4-byte and IPv4-mapped IPv6 addresses and
	// drops any IPv6 zone.
	Mapped netip.AddrPort
	// Nonce: with StatusVerify the challenge the client echoes in its next
	// Bind; with StatusOK the consent nonce it echoes in its Keepalives.
	Nonce uint64
}

// Unmarshal parses the BindAck packet b into m. b must be at least
// BindAckSize bytes; bytes beyond are ignored. Errors: ErrShort, ErrType,
// ErrVersion, ErrKind, ErrFamily (family not 4 or 6; family 4 with an
// address that is not IPv4-mapped; family 6 with an IPv4-mapped address),
// ErrReserved (byte 11 not 0). Any status is accepted and stored. On error
// m is left unchanged. b stays the caller's and is not retained; no
// allocation; never panics. Not safe for concurrent use on the same m.
func (m *BindAck) Unmarshal(b []byte) error {
	if len(b) == 0 {
		return ErrShort
	}
	if b[0] != TypeBindAck {
		return ErrType
	}
	k, status, txID, err := parseHeader(b, BindAckSize, Version)
	if err != nil {
		return err
	}
	var a16 [16]byte
	copy(a16[:], b[12:28])
	addr := netip.AddrFrom16(a16)
	switch b[10] {
	case familyIPv4:
		if !addr.Is4In6() {
			return ErrFamily
		}
		addr = addr.Unmap()
	case familyIPv6:
		if addr.Is4In6() {
			return ErrFamily
		}
	default:
		return ErrFamily
	}
	if b[11] != 0 {
		return ErrReserved
	}
	m.Kind = k
	m.Status = status
	m.TxID = txID
	m.Mapped = netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[8:10]))
	m.Nonce = binary.BigEndian.Uint64(b[28:36])
	return nil
}

// MarshalTo writes m as a BindAckSize-byte BindAck packet into dst and
// returns BindAckSize. Errors: ErrShortBuffer if len(dst) < BindAckSize,
// ErrKind if m.Kind is invalid, ErrFamily if m.Mapped's address is not
// valid; on error dst is not modified. dst is the caller's and is not
// retained; no allocation; never panics. Safe for concurrent use as long as
// m is not being written.
func (m *BindAck) MarshalTo(dst []byte) (int, error) {
	if len(dst) < BindAckSize {
		return 0, ErrShortBuffer
	}
	if !m.Kind.Valid() {
		return 0, ErrKind
	}
	addr := m.Mapped.Addr()
	if !addr.IsValid() {
		return 0, ErrFamily
	}
	family := byte(familyIPv6)
	if addr.Is4() || addr.Is4In6() {
		family = familyIPv4
	}
	putHeader(dst, TypeBindAck, m.Kind, m.Status, m.TxID)
	binary.BigEndian.PutUint16(dst[8:10], m.Mapped.Port())
	dst[10] = family
	dst[11] = 0
	a16 := addr.As16() // IPv4 comes out as ::ffff:a.b.c.d; the zone is dropped
	copy(dst[12:28], a16[:])
	binary.BigEndian.PutUint64(dst[28:36], m.Nonce)
	return BindAckSize, nil
}

// Keepalive is a Keepalive (Ack false, type 6, sent by the client on each
// bound flow at least every KeepaliveInterval) or a KeepaliveAck (Ack true,
// type 7, the router's answer, echoing Kind and TxID). Both are
// KeepaliveSize bytes:
//
//	byte 0      TypeKeepalive (6) or TypeKeepaliveAck (7)
//	byte 1      Version (1)
//	byte 2      media kind of the flow
//	byte 3      reserved, 0
//	bytes 4-7   TxID, big-endian
//	bytes 8-15  Nonce, big-endian: in a Keepalive the latest consent nonce
//	            the client received (BindAck or KeepaliveAck); in a
//	            KeepaliveAck the router's current consent nonce
//
// A Keepalive is a plain value; see the package doc for concurrency.
type Keepalive struct {
	Kind  media.Kind // media kind of the flow
	TxID  uint32     // chosen by the client, echoed in the KeepaliveAck
	Ack   bool       // true for a KeepaliveAck (type 7)
	Nonce uint64     // consent nonce (RFC 7675 freshness), see above
}

// Unmarshal parses a Keepalive or KeepaliveAck packet b into m, setting
// m.Ack from the type. b must be at least KeepaliveSize bytes; bytes beyond
// are ignored. Errors: ErrShort, ErrType, ErrVersion, ErrKind, ErrReserved.
// On error m is left unchanged. b stays the caller's and is not retained;
// no allocation; never panics. Not safe for concurrent use on the same m.
func (m *Keepalive) Unmarshal(b []byte) error {
	if len(b) == 0 {
		return ErrShort
	}
	if b[0] != TypeKeepalive && b[0] != TypeKeepaliveAck {
		return ErrType
	}
	k, reserved, txID, err := parseHeader(b, KeepaliveSize, Version)
	if err != nil {
		return err
	}
	if reserved != 0 {
		return ErrReserved
	}
	m.Kind = k
	m.TxID = txID
	m.Ack = b[0] == TypeKeepaliveAck
	m.Nonce = binary.BigEndian.Uint64(b[headerSize:KeepaliveSize])
	return nil
}

// MarshalTo writes m as a KeepaliveSize-byte Keepalive (or KeepaliveAck if
// m.Ack) into dst and returns KeepaliveSize. Errors: ErrShortBuffer if
// len(dst) < KeepaliveSize, ErrKind if m.Kind is invalid; on error dst is
// not modified. dst is the caller's and is not retained; no allocation;
// never panics. Safe for concurrent use as long as m is not being written.
func (m *Keepalive) MarshalTo(dst []byte) (int, error) {
	if len(dst) < KeepaliveSize {
		return 0, ErrShortBuffer
	}
	if !m.Kind.Valid() {
		return 0, ErrKind
	}
	typ := byte(TypeKeepalive)
	if m.Ack {
		typ = TypeKeepaliveAck
	}
	putHeader(dst, typ, m.Kind, 0, m.TxID)
	binary.BigEndian.PutUint64(dst[headerSize:KeepaliveSize], m.Nonce)
	return KeepaliveSize, nil
}
