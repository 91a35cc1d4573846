package secure_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"testing"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
)

// FuzzState feeds a State what the network can send it: a joined body,
// control events (one encoded frame payload per line) and media packets
// on every kind. Nothing may panic; a packet that opens must have passed
// the checks (it is at least a header shorter than what came in).
func FuzzState(f *testing.F) {
	priv, err := ecdh.X25519().GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		f.Fatal(err)
	}
	seedJoined := func(mode string) []byte {
		j := proto.Joined{Meeting: "m", Participant: 5, Role: proto.RoleHost, MediaToken: "00112233445566778899aabbccddeeff",
			Resume: string(bytes.Repeat([]byte("ab"), 32)), MediaProtection: mode, RTCPSecret: string(bytes.Repeat([]byte("cd"), 32)),
			Roster: []proto.RosterEntry{{ID: 6, Name: "b", Identity: "b", Role: proto.RoleParticipant,
				Streams:       []proto.Stream{{Kind: proto.Kind(media.Audio), SSRCs: []uint32{66}}},
				E2EEPublicKey: string(bytes.Repeat([]byte("09"), 32))}}}
		if mode == proto.ProtectionStandard {
			j.MediaKey = &proto.MediaKey{KeyID: 1, Key: string(bytes.Repeat([]byte("ef"), 32))}
		}
		b, _ := json.Marshal(j)
		return b
	}
	event := func(m proto.Message) []byte {
		b, _ := proto.Encode(0, m)
		return b[4:] // the frame's payload: the JSON envelope
	}
	events := bytes.Join([][]byte{
		event(&proto.MediaKey{KeyID: 2, Key: string(bytes.Repeat([]byte("01"), 32))}),
		event(&proto.E2EEKey{From: 6, Wrap: string(bytes.Repeat([]byte("01"), proto.WrapSize))}),
		event(&proto.ParticipantLeft{Participant: 6}),
		event(&proto.StreamAdded{Participant: 7, Kind: proto.Kind(media.Video), SSRCs: []uint32{77}}),
	}, []byte("\n"))
	pkt := rtpPacket(66, 1, 60, marker)
	f.Add(seedJoined(proto.ProtectionStandard), events, pkt)
	f.Add(seedJoined(proto.ProtectionE2EE), events, rtcpRR(66))
	f.Fuzz(func(t *testing.T, joined, events, pkt []byte) {
		m, err := proto.DecodeBody(proto.TypeJoined, joined)
		if err != nil {
			return
		}
		st, err := secure.New(m.(*proto.Joined), secure.Config{Private: priv})
		if err != nil {
			return
		}
		for _, line := range bytes.Split(events, []byte("\n")) {
			if _, ev, err := proto.Decode(line); err == nil {
				_ = st.Handle(ev)
			}
		}
		for _, k := range media.Kinds {
			out, err := st.Flow(k).Open(make([]byte, 0, len(pkt)), pkt)
			if err == nil && len(out) >= len(pkt) {
				t.Fatalf("opened %d bytes into %d", len(pkt), len(out))
			}
			_, _ = st.Flow(k).Seal(nil, pkt)
		}
		_ = st.Info()
	})
}

// FuzzParseKeyLog checks the key log parser never panics and that what it
// accepts it returns with nonzero IDs.
func FuzzParseKeyLog(f *testing.F) {
	f.Add([]byte("MEETINGKEY 7 " + string(bytes.Repeat([]byte("00"), 32)) + "\n"))
	f.Add([]byte("MEETINGKEY 1 zz\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := secure.ParseKeyLog(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, k := range ks {
			if k.ID == 0 {
				t.Fatal("key ID 0 accepted")
			}
		}
	})
}
