package protect

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/openmmr/mmr/media"
)

// Sizes of the AEAD_AES_256_GCM profile (RFC 7714 §12) and of openmmr's
// key identifiers.
const (
	// SecretSize is the size of a meeting key secret and of an RTCP secret:
	// 32 bytes, the AES-256 key size, so HKDF's input has full strength.
	SecretSize = 32
	// MasterKeySize and MasterSaltSize are the SRTP master key and salt of
	// AEAD_AES_256_GCM (RFC 7714 §12: 256-bit key, 96-bit salt).
	MasterKeySize  = 32
	MasterSaltSize = 12
	// TagSize is the GCM authentication tag: 16 bytes (RFC 7714 §12, the
	// only length it defines for this profile).
	TagSize = 16
	// MKISize is the length of the MKI carried in every SRTP packet: the
	// 32-bit KeyID, big-endian.
	MKISize = 4
	// Overhead is what Sealer.Seal adds to an RTP packet: tag and MKI.
	Overhead = TagSize + MKISize
	// RTCPOverhead is what RTCPFlow.Seal adds to an RTCP packet: tag and
	// the 4-byte E flag + SRTCP index (RFC 7714 §9.1; no MKI on RTCP).
	RTCPOverhead = TagSize + 4
)

// KeyID names one meeting key. It is carried big-endian as the MKI of every
// SRTP packet. 0 is never a valid KeyID (it means "no key"). Plain value,
// safe for concurrent use.
type KeyID uint32

// MeetingKey is one meeting key: its ID and 32-byte secret. It is plain
// data (copy it freely); its String method never prints the secret.
type MeetingKey struct {
	ID     KeyID
	Secret [SecretSize]byte
}

// String returns "key#ID" without the secret, so a key can be logged.
func (k MeetingKey) String() string { return fmt.Sprintf("key#%d", k.ID) }

// Sender names one SRTP sender stream: the participant that sends it (its
// participant ID from the control channel) and the stream's SSRC. Plain
// value, safe for concurrent use.
type Sender struct {
	Participant uint64
	SSRC        uint32
}

// Errors returned by constructors and key management.
var (
	ErrKeyID        = errors.New("protect: invalid key ID 0")
	ErrSecret       = errors.New("protect: secret must be 32 bytes")
	ErrTooManyKeys  = errors.New("protect: too many live keys")
	ErrKeyConflict  = errors.New("protect: key ID already live with another secret")
	ErrNoKey        = errors.New("protect: no send key")
	ErrTooManySSRCs = errors.New("protect: too many streams")
	ErrKind         = errors.New("protect: invalid media kind")
	ErrSSRC         = errors.New("protect: SSRC 0")
	ErrSide         = errors.New("protect: invalid side")
)

// HKDF salts and info prefixes (docs/PROTOCOL.md gives them as bytes). The
// trailing version "/1" separates these keys from any later revision.
const (
	srtpSalt   = "openmmr/1 srtp"
	srtpInfo   = "openmmr/1 sender"
	srtcpSalt  = "openmmr/1 srtcp"
	srtcpInfo  = "openmmr/1 flow"
	masterSize = MasterKeySize + MasterSaltSize
)

// DeriveSender returns the SRTP master key and master salt of sender s
// under meeting key k:
//
//	OKM = HKDF-SHA-256(IKM = k.Secret, salt = "openmmr/1 srtp",
//	      info = "openmmr/1 sender" || BE32(k.ID) || BE64(s.Participant) || BE32(s.SSRC),
//	      L = 44)
//	master key = OKM[0:32], master salt = OKM[32:44]
//
// Safe for concurrent use; allocates (call it on key changes, not per
// packet).
func DeriveSender(k MeetingKey, s Sender) (key [MasterKeySize]byte, salt [MasterSaltSize]byte) {
	info := make([]byte, 0, len(srtpInfo)+16)
	info = append(info, srtpInfo...)
	info = binary.BigEndian.AppendUint32(info, uint32(k.ID))
	info = binary.BigEndian.AppendUint64(info, s.Participant)
	info = binary.BigEndian.AppendUint32(info, s.SSRC)
	okm, err := hkdf.Key(sha256.New, k.Secret[:], []byte(srtpSalt), string(info), masterSize)
	if err != nil { // only for L > 255*32, impossible here
		panic(err)
	}
	copy(key[:], okm[:MasterKeySize])
	copy(salt[:], okm[MasterKeySize:])
	return key, salt
}

// Direction of an RTCP flow's traffic, as carried in the SRTCP derivation.
const (
	dirClientToRouter = 1
	dirRouterToClient = 2
)

// DeriveRTCP returns the SRTCP master key and salt for one direction of one
// client-router flow: participant p's flow of kind k, direction dir (1
// client to router, 2 router to client), from the participant's RTCP
// secret:
//
//	OKM = HKDF-SHA-256(IKM = secret, salt = "openmmr/1 srtcp",
//	      info = "openmmr/1 flow" || BE64(p) || kind || dir, L = 44)
//
// Safe for concurrent use; allocates.
func DeriveRTCP(secret []byte, p uint64, k media.Kind, dir byte) (key [MasterKeySize]byte, salt [MasterSaltSize]byte) {
	info := make([]byte, 0, len(srtcpInfo)+10)
	info = append(info, srtcpInfo...)
	info = binary.BigEndian.AppendUint64(info, p)
	info = append(info, byte(k), dir)
	okm, err := hkdf.Key(sha256.New, secret, []byte(srtcpSalt), string(info), masterSize)
	if err != nil {
		panic(err)
	}
	copy(key[:], okm[:MasterKeySize])
	copy(salt[:], okm[MasterKeySize:])
	return key, salt
}

func mki(id KeyID) []byte {
	var b [MKISize]byte
	binary.BigEndian.PutUint32(b[:], uint32(id))
	return b[:]
}
