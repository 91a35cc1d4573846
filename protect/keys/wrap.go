package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"

	"github.com/openmmr/mmr/protect"
)

// KeyWrap layout (docs/PROTOCOL.md "E2EE key wrap"): a 66-byte header that
// is the AEAD's associated data, then the encrypted 32-byte meeting key and
// the 16-byte GCM tag.
const (
	WrapVersion    = 1
	WrapType       = 1
	wrapHeaderSize = 66
	// WrapSize is the size of a marshalled KeyWrap.
	WrapSize = wrapHeaderSize + protect.SecretSize + 16
)

// KeyWrap carries one meeting key from the leader to one participant,
// encrypted to that participant's X25519 public key. Plain data.
type KeyWrap struct {
	From       uint64 // the leader's participant ID
	To         uint64 // the recipient's participant ID
	KeyID      protect.KeyID
	RosterHash [32]byte // the leader's roster hash H when it made the key
	Nonce      [12]byte // random
	Sealed     [protect.SecretSize + 16]byte
}

// Wrap errors.
var (
	ErrWrapSize    = errors.New("keys: key wrap must be 114 bytes")
	ErrWrapVersion = errors.New("keys: unknown key wrap version or type")
	ErrWrapOpen    = errors.New("keys: key wrap does not decrypt")
)

// MarshalTo writes the wrap into dst (at least WrapSize bytes) and returns
// WrapSize. Does not allocate.
func (w *KeyWrap) MarshalTo(dst []byte) (int, error) {
	if len(dst) < WrapSize {
		return 0, ErrWrapSize
	}
	w.header(dst)
	copy(dst[wrapHeaderSize:], w.Sealed[:])
	return WrapSize, nil
}

func (w *KeyWrap) header(dst []byte) {
	dst[0], dst[1] = WrapVersion, WrapType
	binary.BigEndian.PutUint64(dst[2:], w.From)
	binary.BigEndian.PutUint64(dst[10:], w.To)
	binary.BigEndian.PutUint32(dst[18:], uint32(w.KeyID))
	copy(dst[22:54], w.RosterHash[:])
	copy(dst[54:66], w.Nonce[:])
}

// Unmarshal parses exactly WrapSize bytes. It checks the layout only (the
// key ID is nonzero); Group.Receive checks the rest. Does not keep b.
func (w *KeyWrap) Unmarshal(b []byte) error {
	if len(b) != WrapSize {
		return ErrWrapSize
	}
	if b[0] != WrapVersion || b[1] != WrapType {
		return ErrWrapVersion
	}
	w.From = binary.BigEndian.Uint64(b[2:])
	w.To = binary.BigEndian.Uint64(b[10:])
	w.KeyID = protect.KeyID(binary.BigEndian.Uint32(b[18:]))
	if w.KeyID == 0 {
		return ErrKeyID
	}
	copy(w.RosterHash[:], b[22:54])
	copy(w.Nonce[:], b[54:66])
	copy(w.Sealed[:], b[wrapHeaderSize:])
	return nil
}

// wrapKey derives the AES-256-GCM key of one wrap:
//
//	Z   = X25519(sender private, recipient public)  (= X25519(recipient private, sender public))
//	KEK = HKDF-SHA-256(IKM = Z, salt = "openmmr/1 e2ee wrap",
//	      info = BE64(from) || BE64(to) || sender public (32) || recipient public (32) || BE32(keyID) || H,
//	      L = 32)
func wrapKey(z []byte, w *KeyWrap, fromPub, toPub []byte) ([]byte, error) {
	info := make([]byte, 0, 8+8+32+32+4+32)
	info = binary.BigEndian.AppendUint64(info, w.From)
	info = binary.BigEndian.AppendUint64(info, w.To)
	info = append(info, fromPub...)
	info = append(info, toPub...)
	info = binary.BigEndian.AppendUint32(info, uint32(w.KeyID))
	info = append(info, w.RosterHash[:]...)
	return hkdf.Key(sha256.New, z, []byte("openmmr/1 e2ee wrap"), string(info), 32)
}

func gcm(kek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealWrap encrypts key k from participant from (private key priv) to
// participant to (public key toPub) under roster hash h, with a random
// nonce from rnd. The ciphertext is AES-256-GCM(KEK, nonce, k.Secret,
// AAD = the 66 header bytes).
func SealWrap(rnd io.Reader, priv *ecdh.PrivateKey, from, to uint64, toPub *ecdh.PublicKey, h [32]byte, k protect.MeetingKey) (*KeyWrap, error) {
	w := &KeyWrap{From: from, To: to, KeyID: k.ID, RosterHash: h}
	if _, err := io.ReadFull(rnd, w.Nonce[:]); err != nil {
		return nil, err
	}
	z, err := priv.ECDH(toPub)
	if err != nil {
		return nil, ErrPublicKey
	}
	kek, err := wrapKey(z, w, priv.PublicKey().Bytes(), toPub.Bytes())
	if err != nil {
		return nil, err
	}
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	var hdr [wrapHeaderSize]byte
	w.header(hdr[:])
	aead.Seal(w.Sealed[:0], w.Nonce[:], k.Secret[:], hdr[:])
	return w, nil
}

// OpenWrap decrypts a wrap addressed to the holder of priv, sent by the
// holder of fromPub. It checks only the cryptography; Group.Receive checks
// sender, recipient, roster and key ID first.
func OpenWrap(w *KeyWrap, priv *ecdh.PrivateKey, fromPub *ecdh.PublicKey) (protect.MeetingKey, error) {
	z, err := priv.ECDH(fromPub)
	if err != nil {
		return protect.MeetingKey{}, ErrPublicKey
	}
	kek, err := wrapKey(z, w, fromPub.Bytes(), priv.PublicKey().Bytes())
	if err != nil {
		return protect.MeetingKey{}, err
	}
	aead, err := gcm(kek)
	if err != nil {
		return protect.MeetingKey{}, err
	}
	var hdr [wrapHeaderSize]byte
	w.header(hdr[:])
	k := protect.MeetingKey{ID: w.KeyID}
	if _, err := aead.Open(k.Secret[:0], w.Nonce[:], w.Sealed[:], hdr[:]); err != nil {
		return protect.MeetingKey{}, ErrWrapOpen
	}
	return k, nil
}
