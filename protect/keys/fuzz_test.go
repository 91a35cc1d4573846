package keys

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/openmmr/mmr/protect"
)

// FuzzKeyWrapUnmarshal: the binary key wrap decoder never panics, and what
// it accepts marshals back to the same bytes.
func FuzzKeyWrapUnmarshal(f *testing.F) {
	var b [WrapSize]byte
	w := KeyWrap{From: 1, To: 2, KeyID: 3}
	_, _ = w.MarshalTo(b[:])
	f.Add(b[:])
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var w KeyWrap
		if err := w.Unmarshal(in); err != nil {
			return
		}
		var out [WrapSize]byte
		n, err := w.MarshalTo(out[:])
		if err != nil || !bytes.Equal(out[:n], in) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzE2EEKeyJSON: the e2ee-key JSON body, as the control channel decodes
// it, then the wrap inside it.
func FuzzE2EEKeyJSON(f *testing.F) {
	msg, _ := json.Marshal(NewE2EEKey(&KeyWrap{From: 1, To: 2, KeyID: 3}))
	f.Add(msg)
	f.Add([]byte(`{"from":1,"wrap":"zz"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m E2EEKey
		if json.Unmarshal(in, &m) != nil {
			return
		}
		w, err := m.KeyWrap()
		if err == nil && (w.KeyID == 0 || (m.From != 0 && w.From != m.From)) {
			t.Fatalf("accepted inconsistent wrap %+v", w)
		}
	})
}

// FuzzMediaKeyJSON: the media_key / media-key JSON body.
func FuzzMediaKeyJSON(f *testing.F) {
	msg, _ := json.Marshal(NewMediaKey(protect.MeetingKey{ID: 1, Secret: [32]byte{9}}))
	f.Add(msg)
	f.Add([]byte(`{"key_id":0,"key":""}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m MediaKey
		if json.Unmarshal(in, &m) != nil {
			return
		}
		k, err := m.MeetingKey()
		if err == nil && (k.ID == 0 || NewMediaKey(k).KeyID != m.KeyID) {
			t.Fatalf("accepted %+v", m)
		}
	})
}

// FuzzPublicKeyHex: the e2ee_public_key field.
func FuzzPublicKeyHex(f *testing.F) {
	f.Add("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	f.Add("00")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParsePublicKeyHex(s)
		if err == nil && len(b) != PublicKeySize {
			t.Fatal("accepted wrong size")
		}
	})
}

// FuzzRoster: NewRoster on members decoded from arbitrary bytes never
// panics and, when it accepts, sorts by participant ID.
func FuzzRoster(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 3)
	f.Fuzz(func(t *testing.T, in []byte, n int) {
		var ms []Member
		for i := 0; len(in) >= 41 && i < 8; i++ {
			ms = append(ms, Member{Participant: uint64(in[0]), Identity: string(in[1:9]), Host: in[0]&1 == 1, PublicKey: in[9:41]})
			in = in[41:]
		}
		r, err := NewRoster(ms)
		if err != nil {
			return
		}
		mm := r.Members()
		for i := 1; i < len(mm); i++ {
			if mm[i-1].Participant >= mm[i].Participant {
				t.Fatal("not sorted")
			}
		}
		_ = r.SecurityCode(protect.KeyID(n))
	})
}
