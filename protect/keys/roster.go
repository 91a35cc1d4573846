package keys

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/openmmr/mmr/protect"
)

// PublicKeySize is the size of an X25519 public key (RFC 7748).
const PublicKeySize = 32

// MaxIdentity bounds a member's identity string (the join token's
// identity, docs/PROTOCOL.md join tokens).
const MaxIdentity = 255

// Member is one participant of an E2EE meeting as the roster shows it.
type Member struct {
	Participant uint64 // participant ID from the control channel
	Identity    string // identity from the join token
	Host        bool   // role "host"
	PublicKey   []byte // X25519 public key announced by its client (32 bytes)
}

// Roster errors.
var (
	ErrRoster    = errors.New("keys: invalid roster")
	ErrPublicKey = errors.New("keys: invalid X25519 public key")
)

// Roster is a validated E2EE roster: members sorted by participant ID,
// each with a valid public key, and its hash. Build it with NewRoster.
// Immutable once built; safe for concurrent reads.
type Roster struct {
	members []Member
	pubs    []*ecdh.PublicKey
	hash    [32]byte
}

// NewRoster validates members (unique nonzero participant IDs, identities
// of at most MaxIdentity bytes, 32-byte X25519 public keys) and returns
// them sorted by participant ID with the roster hash:
//
//	H = SHA-256("openmmr/1 roster" || for each member in ascending participant ID:
//	        BE64(participant) || u8(len(identity)) || identity || public key (32) || u8(host))
//
// Members whose client has not announced a public key yet must be left
// out (they cannot receive keys and take no part in the leader rule).
func NewRoster(members []Member) (*Roster, error) {
	r := &Roster{members: slices.Clone(members)}
	slices.SortFunc(r.members, func(a, b Member) int {
		switch {
		case a.Participant < b.Participant:
			return -1
		case a.Participant > b.Participant:
			return 1
		}
		return 0
	})
	h := sha256.New()
	h.Write([]byte("openmmr/1 roster"))
	var buf [8]byte
	for i, m := range r.members {
		if m.Participant == 0 || (i > 0 && r.members[i-1].Participant == m.Participant) {
			return nil, fmt.Errorf("%w: participant %d missing or repeated", ErrRoster, m.Participant)
		}
		if len(m.Identity) > MaxIdentity {
			return nil, fmt.Errorf("%w: identity too long", ErrRoster)
		}
		pub, err := ParsePublicKey(m.PublicKey)
		if err != nil {
			return nil, err
		}
		r.members[i].PublicKey = slices.Clone(m.PublicKey)
		r.pubs = append(r.pubs, pub)
		binary.BigEndian.PutUint64(buf[:], m.Participant)
		h.Write(buf[:])
		h.Write([]byte{byte(len(m.Identity))})
		h.Write([]byte(m.Identity))
		h.Write(m.PublicKey)
		host := byte(0)
		if m.Host {
			host = 1
		}
		h.Write([]byte{host})
	}
	h.Sum(r.hash[:0])
	return r, nil
}

// ParsePublicKey checks a 32-byte X25519 public key. It rejects the
// all-zero key and other low-order points only at ECDH time (crypto/ecdh
// returns an error for an all-zero shared secret).
func ParsePublicKey(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, ErrPublicKey
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, ErrPublicKey
	}
	return pub, nil
}

// Hash returns the roster hash H.
func (r *Roster) Hash() [32]byte { return r.hash }

// Members returns the members in ascending participant ID (a copy).
func (r *Roster) Members() []Member { return slices.Clone(r.members) }

func (r *Roster) find(p uint64) int {
	i, ok := slices.BinarySearchFunc(r.members, p, func(m Member, p uint64) int {
		switch {
		case m.Participant < p:
			return -1
		case m.Participant > p:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

// Leader returns the participant ID of the meeting's key leader: the host
// with the smallest participant ID if a host is in the roster, otherwise
// the member with the smallest participant ID, which is the one present
// longest because the server assigns participant IDs in increasing order
// of joining and a resume keeps the ID. 0 for an empty roster.
func (r *Roster) Leader() uint64 {
	for _, m := range r.members {
		if m.Host {
			return m.Participant
		}
	}
	if len(r.members) == 0 {
		return 0
	}
	return r.members[0].Participant
}

// SecurityCode returns the code the participants compare (aloud, or side
// by side) to check that nobody is in the middle:
//
//	D = SHA-256("openmmr/1 code" || H || BE32(keyID))
//	group i (i = 0..5) = BE40(D[5i : 5i+5]) mod 100000, as 5 decimal digits
//
// joined by single spaces, e.g. "01234 56789 ...". Every participant
// that sees the same roster (identities and public keys) and the same
// current key ID computes the same code; substituting any public key
// changes it.
func (r *Roster) SecurityCode(keyID protect.KeyID) string {
	h := sha256.New()
	h.Write([]byte("openmmr/1 code"))
	h.Write(r.hash[:])
	var id [4]byte
	binary.BigEndian.PutUint32(id[:], uint32(keyID))
	h.Write(id[:])
	d := h.Sum(nil)
	groups := make([]string, 6)
	for i := range groups {
		var v uint64
		for _, b := range d[5*i : 5*i+5] {
			v = v<<8 | uint64(b)
		}
		groups[i] = fmt.Sprintf("%05d", v%100000)
	}
	return strings.Join(groups, " ")
}
