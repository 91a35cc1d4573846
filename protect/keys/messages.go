package keys

import (
	"encoding/hex"
	"errors"

	"github.com/openmmr/mmr/protect"
)

// MediaKey is the JSON form of a Standard-mode meeting key: the media_key
// field of joined/resumed and the body of the media-key event
// (docs/PROTOCOL.md). Key is 64 lowercase hex digits; secret, never log it.
type MediaKey struct {
	KeyID uint32 `json:"key_id"`
	Key   string `json:"key"`
}

// ErrMessage is returned for a malformed key message field.
var ErrMessage = errors.New("keys: malformed key message")

// NewMediaKey returns the JSON form of k.
func NewMediaKey(k protect.MeetingKey) MediaKey {
	return MediaKey{KeyID: uint32(k.ID), Key: hex.EncodeToString(k.Secret[:])}
}

// MeetingKey validates m (nonzero ID, 64 hex digits) and returns the key.
func (m MediaKey) MeetingKey() (protect.MeetingKey, error) {
	k := protect.MeetingKey{ID: protect.KeyID(m.KeyID)}
	if k.ID == 0 || len(m.Key) != 2*protect.SecretSize {
		return protect.MeetingKey{}, ErrMessage
	}
	if _, err := hex.Decode(k.Secret[:], []byte(m.Key)); err != nil {
		return protect.MeetingKey{}, ErrMessage
	}
	return k, nil
}

// E2EEKey is the JSON body of the e2ee-key message: a client's request
// (To set, From omitted) and the server's relayed event (From set by the
// server from the sending connection, To omitted). Wrap is the 114-byte
// KeyWrap as 228 lowercase hex digits.
type E2EEKey struct {
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`
	Wrap string `json:"wrap"`
}

// NewE2EEKey returns the request carrying w to w.To.
func NewE2EEKey(w *KeyWrap) E2EEKey {
	var b [WrapSize]byte
	_, _ = w.MarshalTo(b[:])
	return E2EEKey{To: w.To, Wrap: hex.EncodeToString(b[:])}
}

// KeyWrap decodes and checks the wrap: hex, layout, and that the From/To
// fields present agree with the wrap's own (the server checks From against
// the sender, the recipient To against itself).
func (m E2EEKey) KeyWrap() (*KeyWrap, error) {
	if len(m.Wrap) != 2*WrapSize {
		return nil, ErrWrapSize
	}
	var b [WrapSize]byte
	if _, err := hex.Decode(b[:], []byte(m.Wrap)); err != nil {
		return nil, ErrMessage
	}
	w := &KeyWrap{}
	if err := w.Unmarshal(b[:]); err != nil {
		return nil, err
	}
	if (m.From != 0 && m.From != w.From) || (m.To != 0 && m.To != w.To) {
		return nil, ErrMessage
	}
	return w, nil
}

// PublicKeyHex returns a public key's JSON form (the e2ee_public_key
// field): 64 lowercase hex digits.
func PublicKeyHex(pub []byte) string { return hex.EncodeToString(pub) }

// ParsePublicKeyHex decodes and checks the e2ee_public_key field.
func ParsePublicKeyHex(s string) ([]byte, error) {
	if len(s) != 2*PublicKeySize {
		return nil, ErrPublicKey
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, ErrPublicKey
	}
	if _, err := ParsePublicKey(b); err != nil {
		return nil, err
	}
	return b, nil
}
