// Package token mints and verifies openmmr join tokens: an HMAC-SHA256
// (RFC 2104, FIPS 180-4) signature over a meeting ID, a participant
// identity, a role and an expiry (version 1), plus a unique token ID and
// the participant's display name (version 2), plus a flags byte saying
// whether the meeting is end-to-end encrypted (version 3, what the web tier
// mints), keyed with a secret shared by the MMR and
// whoever admits participants (a meeting service, or an operator running
// `mmr token`). The exact byte layout is in docs/control-protocol.md, "Join
// tokens", so that tokens can be minted in any language.
//
// Every function and method is safe for concurrent use; a Verifier is
// immutable after NewVerifier. No function keeps a reference to the caller's
// byte slices.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Role is what a participant may do in its meeting. It is a plain value,
// safe for concurrent use.
type Role uint8

// Roles, with their wire values (byte 1 of a token).
const (
	Host        Role = 1 // may publish, subscribe, and end the meeting
	Participant Role = 2 // may publish and subscribe
	Viewer      Role = 3 // webinar attendee: may subscribe, never publish
)

// String returns "host", "participant", "viewer", or "role(N)"; the first
// three are also the role names of the control protocol.
func (r Role) String() string {
	switch r {
	case Host:
		return "host"
	case Participant:
		return "participant"
	case Viewer:
		return "viewer"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole is the inverse of String for valid roles.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{Host, Participant, Viewer} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("token: unknown role %q (want host, participant or viewer)", s)
}

// Valid reports whether r is Host, Participant or Viewer.
func (r Role) Valid() bool { return r >= Host && r <= Viewer }

// CanPublish reports whether the role may publish media.
func (r Role) CanPublish() bool { return r == Host || r == Participant }

// CanEndMeeting reports whether the role may end the meeting for everyone.
func (r Role) CanEndMeeting() bool { return r == Host }

// Token layout constants (docs/control-protocol.md, "Join tokens").
const (
	// Version is byte 0 of a version 1 token: meeting, identity, role,
	// expiry. Mint writes it for claims without ID and Name.
	Version = 1
	// Version2 is byte 0 of a version 2 token, which adds a unique 16-byte
	// token ID and the display name. Mint writes it for claims with an ID
	// or a Name.
	Version2 = 2
	// Version3 is byte 0 of a version 3 token: version 2 plus a flags
	// byte before the MAC (FlagE2EE). Mint writes it for claims with E2EE
	// set, or when Claims.Version asks for it.
	Version3 = 3
	// FlagE2EE is bit 0 of a version 3 token's flags byte: the meeting is
	// end-to-end encrypted (docs/PROTOCOL.md "Media protection"). The
	// other bits are reserved and must be 0: a token with one set is
	// malformed, so that a later flag can never be silently ignored.
	FlagE2EE = 1 << 0
	// IDSize is the size of a version 2 and 3 token ID.
	IDSize = 16
	// Context is prepended to the signed bytes so that a MAC made with the
	// same secret for any other purpose can never pass as a join token.
	Context = "openmmr-join-token\x00"
	// MaxField is the longest meeting ID or identity in bytes; the same
	// limit as the control protocol's (proto.MaxMeetingID, proto.MaxName).
	MaxField = 128
	// MinSecret is the shortest secret accepted: 16 bytes (128 bits), the
	// security level of the media token and far beyond online guessing.
	MinSecret = 16
	// macSize is the size of the HMAC-SHA256 tag at the end of a token.
	macSize = sha256.Size
	// minSize: version, role, expiry (8), two length bytes, two 1-byte
	// fields, and the tag.
	minSize = 1 + 1 + 8 + 1 + 1 + 1 + 1 + macSize
	// maxSize: version 3 with every field at MaxField.
	maxSize = 1 + 1 + 8 + IDSize + 3 + 3*MaxField + 1 + macSize
)

// Errors returned by Verify and Mint, unwrapped.
var (
	// ErrMalformed means the token is not base64url or its layout is wrong.
	ErrMalformed = errors.New("token: malformed join token")
	// ErrSignature means no configured secret produces the token's MAC:
	// forged, altered, or minted with an unknown secret.
	ErrSignature = errors.New("token: join token signature does not verify")
	// ErrExpired means the signature is good but the expiry has passed.
	ErrExpired = errors.New("token: join token expired")
	// ErrSecret means a secret shorter than MinSecret.
	ErrSecret = fmt.Errorf("token: secret shorter than %d bytes", MinSecret)
)

// Claims is what a token asserts. It is a plain value.
type Claims struct {
	Meeting  string    // meeting ID, 1..MaxField bytes of UTF-8
	Identity string    // participant identity (user ID, e-mail), 1..MaxField bytes of UTF-8
	Role     Role      // what the participant may do
	Expiry   time.Time // the token is refused after this instant (second resolution)
	// Version 2 and 3 only (both zero in a version 1 token):
	ID   [IDSize]byte // unique token ID (random), e.g. for audit logs and replay lists
	Name string       // display name, 0..MaxField bytes of UTF-8 ("" : none)
	// E2EE (version 3 only, false in older tokens) says the meeting is
	// end-to-end encrypted: the MMR gives it no media key and relays the
	// participants' key wraps. A meeting's mode is fixed by its first join.
	E2EE bool
	// Version is the version the token was minted with (set by Verify).
	// For Mint, 0 picks the lowest version that carries the claims (3 for
	// E2EE, 2 for an ID or Name, else 1); 1, 2 or 3 asks for exactly that
	// version, an error if it cannot carry the claims.
	Version int
}

// version returns the version Mint writes for c, or an error.
func (c *Claims) version() (int, error) {
	need := Version
	switch {
	case c.E2EE:
		need = Version3
	case c.ID != [IDSize]byte{} || c.Name != "":
		need = Version2
	}
	switch {
	case c.Version == 0:
		return need, nil
	case c.Version < need || c.Version > Version3:
		return 0, fmt.Errorf("token: version %d cannot carry these claims (needs %d..%d)", c.Version, need, Version3)
	}
	return c.Version, nil
}

func (c *Claims) validate() error {
	if !c.Role.Valid() {
		return fmt.Errorf("token: invalid role %d", c.Role)
	}
	for _, f := range [...]struct{ name, v string }{{"meeting", c.Meeting}, {"identity", c.Identity}} {
		if len(f.v) == 0 || len(f.v) > MaxField || !utf8.ValidString(f.v) {
			return fmt.Errorf("token: %s must be 1..%d bytes of UTF-8", f.name, MaxField)
		}
	}
	if len(c.Name) > MaxField || !utf8.ValidString(c.Name) {
		return fmt.Errorf("token: name must be 0..%d bytes of UTF-8", MaxField)
	}
	if c.Expiry.Unix() <= 0 {
		return errors.New("token: expiry must be after 1970")
	}
	return nil
}

// Mint returns a token for c signed with secret, of the version
// Claims.Version says (0: the lowest that carries c: 3 when c is E2EE, 2
// when it has an ID or a Name, else 1). It fails for a secret shorter than
// MinSecret and for claims outside the limits above.
func Mint(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecret {
		return "", ErrSecret
	}
	if err := c.validate(); err != nil {
		return "", err
	}
	ver, err := c.version()
	if err != nil {
		return "", err
	}
	b := make([]byte, 0, maxSize)
	b = append(b, byte(ver), byte(c.Role))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expiry.Unix()))
	if ver >= Version2 {
		b = append(b, c.ID[:]...)
	}
	b = append(b, byte(len(c.Meeting)))
	b = append(b, c.Meeting...)
	b = append(b, byte(len(c.Identity)))
	b = append(b, c.Identity...)
	if ver >= Version2 {
		b = append(b, byte(len(c.Name)))
		b = append(b, c.Name...)
	}
	if ver >= Version3 {
		var flags byte
		if c.E2EE {
			flags |= FlagE2EE
		}
		b = append(b, flags)
	}
	b = append(b, sign(secret, b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sign returns HMAC-SHA256(secret, Context || body).
func sign(secret, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(Context))
	h.Write(body)
	return h.Sum(nil)
}

// Verifier checks tokens against the current secret and any previous ones
// still accepted while secrets rotate. Immutable; safe for concurrent use.
type Verifier struct {
	secrets [][]byte
}

// NewVerifier returns a Verifier accepting tokens signed with current or
// any of previous. Every secret must be at least MinSecret bytes; they are
// copied.
func NewVerifier(current []byte, previous ...[]byte) (*Verifier, error) {
	v := &Verifier{}
	for _, s := range append([][]byte{current}, previous...) {
		if len(s) < MinSecret {
			return nil, ErrSecret
		}
		v.secrets = append(v.secrets, append([]byte(nil), s...))
	}
	return v, nil
}

// Verify parses tok, checks its MAC against every accepted secret (in
// constant time), then its expiry against now. Errors: ErrMalformed,
// ErrSignature, ErrExpired (in that order of checking, so a forged token is
// reported as forged even when its claimed expiry has passed).
func (v *Verifier) Verify(tok string, now time.Time) (Claims, error) {
	c, body, mac, err := parse(tok)
	if err != nil {
		return Claims{}, err
	}
	ok := false
	for _, s := range v.secrets {
		ok = hmac.Equal(sign(s, body), mac) || ok
	}
	if !ok {
		return Claims{}, ErrSignature
	}
	if !now.Before(c.Expiry) {
		return c, ErrExpired
	}
	return c, nil
}

// parse decodes the layout without checking the MAC. body is the signed
// part (everything before the tag).
func parse(tok string) (c Claims, body, mac []byte, err error) {
	if len(tok) > base64.RawURLEncoding.EncodedLen(maxSize) {
		return Claims{}, nil, nil, ErrMalformed
	}
	// Strict rejects non-zero trailing bits, but every Go base64 decoder
	// skips '\r' and '\n' anywhere: refuse anything outside the URL-safe
	// alphabet first, so a token has exactly one accepted spelling.
	for i := 0; i < len(tok); i++ {
		if !isBase64URL(tok[i]) {
			return Claims{}, nil, nil, ErrMalformed
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok) // strict: one encoding per token
	if err != nil || len(b) < minSize || b[0] < Version || b[0] > Version3 {
		return Claims{}, nil, nil, ErrMalformed
	}
	c.Version = int(b[0])
	body, mac = b[:len(b)-macSize], b[len(b)-macSize:]
	c.Role = Role(b[1])
	exp := binary.BigEndian.Uint64(b[2:10])
	rest := body[10:]
	if c.Version >= Version2 {
		if len(rest) < IDSize {
			return Claims{}, nil, nil, ErrMalformed
		}
		copy(c.ID[:], rest)
		rest = rest[IDSize:]
	}
	var ok bool
	if c.Meeting, rest, ok = field(rest); !ok {
		return Claims{}, nil, nil, ErrMalformed
	}
	if c.Identity, rest, ok = field(rest); !ok {
		return Claims{}, nil, nil, ErrMalformed
	}
	if c.Version >= Version2 {
		if c.Name, rest, ok = field(rest); !ok {
			return Claims{}, nil, nil, ErrMalformed
		}
	}
	if c.Version >= Version3 {
		if len(rest) < 1 || rest[0]&^FlagE2EE != 0 { // reserved flags must be 0
			return Claims{}, nil, nil, ErrMalformed
		}
		c.E2EE = rest[0]&FlagE2EE != 0
		rest = rest[1:]
	}
	if len(rest) != 0 {
		return Claims{}, nil, nil, ErrMalformed
	}
	if exp == 0 || exp > 1<<62 {
		return Claims{}, nil, nil, ErrMalformed
	}
	c.Expiry = time.Unix(int64(exp), 0)
	if c.validate() != nil {
		return Claims{}, nil, nil, ErrMalformed
	}
	return c, body, mac, nil
}

// field splits a length-prefixed field off b.
func field(b []byte) (string, []byte, bool) {
	if len(b) < 1 || int(b[0]) > len(b)-1 {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// isBase64URL reports whether c is in the RFC 4648 §5 alphabet.
func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
