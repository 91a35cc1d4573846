package wire

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/media"
)

// BindVersion is the version byte (byte 1) of a Bind. Version 1, which
// carried the media token in clear, is no longer accepted: its Unmarshal
// fails with ErrVersion. Immutable; safe for concurrent use.
const BindVersion = 2

// Sizes of the fields that authenticate a Bind. Immutable; safe for
// concurrent use.
const (
	// BindHandleSize is the size of a BindHandle: 64 bits name a
	// participant among a router's (the router refuses to create a
	// participant whose handle is taken, so handles never collide).
	BindHandleSize = 8
	// BindMACSize is the size of a Bind's MAC: HMAC-SHA-256 truncated to
	// its first 128 bits. RFC 2104 §5 asks for at least half the hash
	// output (128 bits for SHA-256) and NIST SP 800-107 §5.3.4 allows
	// truncation to it; a forger's chance per packet is 2^-128, each try
	// costs a datagram, and the 16 bytes saved keep the Bind at 56 bytes.
	BindMACSize = 16
	// signedSize is the part of a Bind the MAC covers: everything before
	// the MAC.
	signedSize = BindSize - BindMACSize
)

// BindTimeWindow is how far a Bind's Time may be from the router's clock,
// in either direction, for the Bind to be accepted. 30 s covers the
// clock error of any host that synchronises its clock (NTP keeps it
// within milliseconds, a phone's network time within a second or two),
// the 3.1 s of bind retransmissions and any queueing on the way, while a
// Bind that an attacker captured and kept from the router (one the
// router never saw, so its counter check cannot catch it) is useless
// half a minute later. It equals ConsentTimeout: a captured bind lives
// no longer than the consent a client proves. Immutable; safe for
// concurrent use.
const BindTimeWindow = 30 * time.Second

// Domain-separation labels: the ASCII bytes that start every HMAC input
// keyed by a media token, one per use, so that no value computed for one
// use is ever valid for another (docs/PROTOCOL.md, "Bind").
const (
	labelBind    = "openmmr/1 bind"
	labelHandle  = "openmmr/1 bind handle"
	labelConsent = "openmmr/1 consent"
)

// BindHandle is the public name of a participant in its Binds: the first
// BindHandleSize bytes of HMAC-SHA-256(token, "openmmr/1 bind handle").
// It reveals nothing about the token (HMAC is a pseudo-random function)
// and lets the router find the participant without the token. A plain
// comparable value; safe for concurrent use.
type BindHandle [BindHandleSize]byte

// Handle returns t's BindHandle. No allocation; safe for concurrent use.
func (t Token) Handle() BindHandle {
	s := tokenMAC(&t, labelHandle, nil)
	return BindHandle(s[:BindHandleSize])
}

// tokenMAC returns HMAC-SHA-256(key, label || msg) (RFC 2104), computed
// in stack buffers: no allocation. label and msg together must fit in one
// SHA-256 block (64 bytes), which every caller's does.
func tokenMAC(key *Token, label string, msg []byte) [sha256.Size]byte {
	const block = 64 // SHA-256 block size, RFC 2104's B
	var in [2 * block]byte
	for i := range block {
		in[i] = 0x36 // ipad
	}
	for i, k := range key {
		in[i] ^= k
	}
	n := block + copy(in[block:], label)
	n += copy(in[n:], msg)
	inner := sha256.Sum256(in[:n])
	var out [block + sha256.Size]byte
	for i := range block {
		out[i] = 0x5c // opad
	}
	for i, k := range key {
		out[i] ^= k
	}
	copy(out[block:], inner[:])
	return sha256.Sum256(out[:])
}

// Bind asks the router to bind the flow it arrives on (its source address
// and port, or its stream connection) to the participant named by Handle,
// for media kind Kind, and proves with MAC that it was made by a holder of
// the participant's media token without carrying the token. It is sent by
// the client, BindSize (56) bytes, all integers big-endian:
//
//	byte 0      TypeBind (4)
//	byte 1      BindVersion (2)
//	byte 2      media kind (1 audio, 2 video, 3 content)
//	byte 3      reserved, 0
//	bytes 4-7   TxID
//	bytes 8-15  Handle: Token.Handle() of the participant's token
//	bytes 16-23 Counter: above every earlier Bind's for this participant and kind
//	bytes 24-31 Time: the sender's clock, Unix milliseconds
//	bytes 32-39 Nonce: 0, or the echo of a StatusVerify BindAck's
//	bytes 40-55 MAC: HMAC-SHA-256(token, "openmmr/1 bind" || bytes 0-39), first 16 bytes
//
// A sender fills Kind, TxID and Nonce, then calls Sign (which sets Handle,
// Counter, Time and MAC) and MarshalTo. A receiver calls Unmarshal, finds
// the token by Handle, then checks Verify, Fresh and that Counter is above
// the last one it accepted (docs/PROTOCOL.md, "Binding a flow"). A Bind
// is a plain value; see the package doc for concurrency.
type Bind struct {
	Kind media.Kind // media kind of the flow being bound
	TxID uint32     // chosen by the client, echoed in the BindAck
	// Handle names the participant: Token.Handle() of its media token.
	Handle BindHandle
	// Counter is strictly above the Counter of every Bind sent before for
	// the same participant and kind (whatever the socket or transport);
	// the router refuses one that is not above the last it accepted
	// (a replay). BindCounter hands out such values. Never 0.
	Counter uint64
	// Time is when the Bind was signed, Unix milliseconds; the router
	// refuses a Bind more than BindTimeWindow away from its own clock.
	Time uint64
	// Nonce is 0 in a first Bind, and the Nonce of the router's
	// StatusVerify BindAck in the Bind that answers it (return
	// routability: proof that the source receives what is sent to it).
	Nonce uint64
	// MAC authenticates every other field under the token (Sign, Verify).
	MAC [BindMACSize]byte
}

// putSigned writes the first signedSize bytes of m's packet (everything
// the MAC covers) into dst, which holds at least signedSize bytes.
func (m *Bind) putSigned(dst []byte) {
	dst[0] = TypeBind
	dst[1] = BindVersion
	dst[2] = byte(m.Kind)
	dst[3] = 0
	binary.BigEndian.PutUint32(dst[4:8], m.TxID)
	copy(dst[8:16], m.Handle[:])
	binary.BigEndian.PutUint64(dst[16:24], m.Counter)
	binary.BigEndian.PutUint64(dst[24:32], m.Time)
	binary.BigEndian.PutUint64(dst[32:40], m.Nonce)
}

// mac returns the MAC of m's fields under tok.
func (m *Bind) mac(tok *Token) [BindMACSize]byte {
	var signed [signedSize]byte
	m.putSigned(signed[:])
	s := tokenMAC(tok, labelBind, signed[:])
	return [BindMACSize]byte(s[:BindMACSize])
}

// Sign sets m.Handle to tok's handle, m.Counter to counter, m.Time to now
// (Unix milliseconds) and m.MAC to the MAC of the whole Bind under tok;
// m.Kind, m.TxID and m.Nonce must be set before. Any later change to m
// invalidates the MAC. No allocation. Not safe for concurrent use on the
// same m.
func (m *Bind) Sign(tok Token, counter uint64, now time.Time) {
	m.Handle = tok.Handle()
	m.Counter = counter
	m.Time = uint64(max(now.UnixMilli(), 0))
	m.MAC = m.mac(&tok)
}

// Verify reports whether m was signed with tok: its MAC is the MAC of its
// other fields under tok and its Handle is tok's. The MAC is compared in
// constant time. It checks neither Time (Fresh) nor Counter (the
// receiver's replay state). No allocation; safe for concurrent use as
// long as m is not being written.
func (m *Bind) Verify(tok Token) bool {
	want := m.mac(&tok)
	if subtle.ConstantTimeCompare(want[:], m.MAC[:]) != 1 {
		return false
	}
	h := tok.Handle()
	return subtle.ConstantTimeCompare(h[:], m.Handle[:]) == 1
}

// Fresh reports whether m.Time is within BindTimeWindow of now, in either
// direction. No allocation; safe for concurrent use as long as m is not
// being written.
func (m *Bind) Fresh(now time.Time) bool {
	const w = uint64(BindTimeWindow / time.Millisecond)
	t := uint64(max(now.UnixMilli(), 0))
	if m.Time > t {
		return m.Time-t <= w
	}
	return t-m.Time <= w
}

// Errors of Bind.Check, one per way a well-formed Bind is refused; the
// router counts each under its own drop reason (docs/PROTOCOL.md, "Drop
// reasons"). Returned unwrapped; read-only, safe for concurrent use.
var (
	// ErrBindMAC means the Bind was not signed with the token (Verify).
	ErrBindMAC = errors.New("wire: bind MAC does not verify")
	// ErrBindStale means the Bind's Time is more than BindTimeWindow from
	// the receiver's clock (Fresh).
	ErrBindStale = errors.New("wire: bind time outside the window")
	// ErrBindReplayed means the Bind's Counter is not above the last one
	// the receiver accepted for the participant and kind.
	ErrBindReplayed = errors.New("wire: bind counter not above the last accepted")
)

// Check is the receiver's whole test of a Bind whose Handle named tok's
// participant: nil if m was signed with tok (else ErrBindMAC), is fresh
// at now (else ErrBindStale) and its Counter is above last, the last
// counter accepted for the participant and kind (else ErrBindReplayed),
// tested in that order. A receiver that accepts m then records m.Counter
// as last, atomically with the comparison if binds are checked
// concurrently. No allocation; safe for concurrent use as long as m is not
// being written.
func (m *Bind) Check(tok Token, now time.Time, last uint64) error {
	switch {
	case !m.Verify(tok):
		return ErrBindMAC
	case !m.Fresh(now):
		return ErrBindStale
	case m.Counter <= last:
		return ErrBindReplayed
	}
	return nil
}

// Unmarshal parses the Bind packet b into m. b must be at least BindSize
// bytes; bytes beyond BindSize are ignored (they are not covered by the
// MAC and carry no meaning). Errors: ErrShort, ErrType, ErrVersion (byte 1
// not BindVersion, in particular a version-1 Bind), ErrKind, ErrReserved
// (byte 3 not 0). It does not check the MAC (Verify). On error m is left
// unchanged. b stays the caller's and is not retained; no allocation;
// never panics. Not safe for concurrent use on the same m.
func (m *Bind) Unmarshal(b []byte) error {
	if len(b) == 0 {
		return ErrShort
	}
	if b[0] != TypeBind {
		return ErrType
	}
	k, reserved, txID, err := parseHeader(b, BindSize, BindVersion)
	if err != nil {
		return err
	}
	if reserved != 0 {
		return ErrReserved
	}
	m.Kind = k
	m.TxID = txID
	m.Handle = BindHandle(b[8:16])
	m.Counter = binary.BigEndian.Uint64(b[16:24])
	m.Time = binary.BigEndian.Uint64(b[24:32])
	m.Nonce = binary.BigEndian.Uint64(b[32:40])
	m.MAC = [BindMACSize]byte(b[signedSize:BindSize])
	return nil
}

// MarshalTo writes m as a BindSize-byte Bind packet into dst and returns
// BindSize. It writes m.MAC as it is: call Sign first. Errors:
// ErrShortBuffer if len(dst) < BindSize, ErrKind if m.Kind is invalid; on
// error dst is not modified. dst is the caller's and is not retained; no
// allocation; never panics. Safe for concurrent use as long as m is not
// being written.
func (m *Bind) MarshalTo(dst []byte) (int, error) {
	if len(dst) < BindSize {
		return 0, ErrShortBuffer
	}
	if !m.Kind.Valid() {
		return 0, ErrKind
	}
	m.putSigned(dst)
	copy(dst[signedSize:BindSize], m.MAC[:])
	return BindSize, nil
}

// BindCounter hands out the Counters of one participant's Binds of one
// kind: each Next is above every value it returned before and at least
// the current Unix time in microseconds, so counters also keep rising
// across BindCounter values (a new socket, a fallback to TCP, a
// restarted client) as long as the clock does not step back and no two
// binds of the kind are signed in the same microsecond by different
// counters. The zero value is ready to use; safe for concurrent use; do
// not copy one in use.
type BindCounter struct{ last atomic.Uint64 }

// Next returns the next counter at now. No allocation.
func (c *BindCounter) Next(now time.Time) uint64 {
	t := uint64(max(now.UnixMicro(), 0))
	for {
		last := c.last.Load()
		n := max(last+1, t)
		if c.last.CompareAndSwap(last, n) {
			return n
		}
	}
}

// ConsentEcho returns what a client puts in a UDP Keepalive's Nonce to
// echo the router's consent nonce on a flow of kind k: the first 8 bytes
// of HMAC-SHA-256(tok, "openmmr/1 consent" || kind || BE64(nonce)), 1 if
// those are 0, and 0 (no echo) for nonce 0. Only a holder of the token
// can compute it, so an observer who sees the router's nonces cannot
// renew consent (RFC 7675 §4 asks for the same of its STUN checks).
// No allocation; safe for concurrent use.
func ConsentEcho(tok Token, k media.Kind, nonce uint64) uint64 {
	if nonce == 0 {
		return 0
	}
	var msg [9]byte
	msg[0] = byte(k)
	binary.BigEndian.PutUint64(msg[1:], nonce)
	s := tokenMAC(&tok, labelConsent, msg[:])
	if e := binary.BigEndian.Uint64(s[:8]); e != 0 {
		return e
	}
	return 1
}
