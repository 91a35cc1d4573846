package proto

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/openmmr/mmr/media"
	"github.com/stretchr/testify/require"
)

const (
	hexToken = "00112233445566778899aabbccddeeff"
	hexCred  = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

// validMessages holds one valid, fully populated message of every type.
func validMessages() []Message {
	entry := RosterEntry{ID: 7, Name: "Ann", Identity: "ann@example.org", Role: RoleHost,
		Streams:       []Stream{{Kind: Kind(media.Audio), SSRCs: []uint32{1, 2}}},
		E2EEPublicKey: hexCred}
	joined := Joined{Meeting: "m1", Participant: 9, Role: RoleParticipant, MediaToken: hexToken,
		Resume: hexCred, GraceMS: 10000,
		Endpoints:       []Endpoint{{Kind: Kind(media.Video), Transport: TransportUDP, Addr: netip.MustParseAddrPort("[::1]:8801")}},
		Roster:          []RosterEntry{entry},
		MediaProtection: ProtectionStandard, RTCPSecret: hexCred,
		MediaKey: &MediaKey{KeyID: 3, Key: hexCred}, Identity: "bob@example.org"}
	return []Message{
		&Hello{Versions: []int{1}, Software: "test", Capabilities: []string{CapResume}},
		&Welcome{Version: 1, Software: "openmmr", Capabilities: []string{CapResume, CapRTT}, MaxFrame: 65536, IdleTimeoutMS: 30000, PingIntervalMS: 10000, GraceMS: 10000},
		&Join{Meeting: "m1", Token: "tok", Name: "Ann", E2EEPublicKey: hexCred},
		&joined,
		&Resume{Participant: 9, Credential: hexCred},
		&Resumed{Joined: joined},
		&Publish{Kind: Kind(media.Audio), SSRCs: []uint32{1, 2}},
		&Unpublish{Kind: Kind(media.Video), SSRCs: []uint32{3}},
		&Subscribe{Kind: Kind(media.Content), Publishers: []uint64{7}},
		&Unsubscribe{Kind: Kind(media.Audio)},
		&Ping{},
		&Pong{RTTMicros: 1234},
		&Leave{},
		&EndMeeting{},
		&OK{},
		&Error{Code: CodeForbidden, Message: "viewers cannot publish"},
		&ParticipantJoined{Participant: entry},
		&ParticipantLeft{Participant: 7, Reason: ReasonTimeout},
		&StreamAdded{Participant: 7, Kind: Kind(media.Audio), SSRCs: []uint32{5}},
		&StreamRemoved{Participant: 7, Kind: Kind(media.Audio), SSRCs: []uint32{5}},
		&MeetingEnded{Reason: ReasonEnded, By: 7},
		&MediaKey{KeyID: 4, Key: hexCred},
		&E2EEKey{To: 7, Wrap: strings.Repeat("ab", WrapSize)},
	}
}

func TestEveryTypeRoundTrips(t *testing.T) {
	msgs := validMessages()
	types := Types()
	require.Len(t, msgs, len(types), "one sample per type")
	for i, m := range msgs {
		t.Run(m.Type(), func(t *testing.T) {
			require.Equal(t, types[i], m.Type())
			frame, err := Encode(42, m)
			require.NoError(t, err)
			payload, err := NewFrameReader(bytes.NewReader(frame), 0).Next()
			require.NoError(t, err)
			id, got, err := Decode(payload)
			require.NoError(t, err)
			require.Equal(t, uint32(42), id)
			require.Equal(t, m, got)
		})
	}
}

func TestDecodeSpecExamples(t *testing.T) {
	// Examples as a foreign client would write them (docs/control-protocol.md).
	tests := []struct {
		in   string
		want Message
		id   uint32
	}{
		{`{"type":"hello","id":1,"body":{"versions":[1,2],"software":"x"}}`, &Hello{Versions: []int{1, 2}, Software: "x"}, 1},
		{`{"type":"ping","id":5}`, &Ping{}, 5},
		{`{"type":"leave","body":null}`, &Leave{}, 0},
		{`{"type":"publish","id":3,"body":{"kind":"video","ssrcs":[1111,2222],"future":true}}`, &Publish{Kind: Kind(media.Video), SSRCs: []uint32{1111, 2222}}, 3},
		{`{"type":"subscribe","id":4,"body":{"kind":"audio"}}`, &Subscribe{Kind: Kind(media.Audio)}, 4},
		{` {"type":"unpublish","id":6,"body":{"kind":"content"}} `, &Unpublish{Kind: Kind(media.Content)}, 6},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			id, m, err := Decode([]byte(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.id, id)
			require.Equal(t, tc.want, m)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("a", MaxMeetingID+1)
	tests := []struct {
		name, in, code string
	}{
		{"not json", `hello`, CodeBadFrame},
		{"array", `[1,2]`, CodeBadFrame},
		{"no type", `{"id":1}`, CodeBadFrame},
		{"type not string", `{"type":5}`, CodeBadFrame},
		{"negative id", `{"type":"ping","id":-1}`, CodeBadFrame},
		{"id too big", `{"type":"ping","id":4294967296}`, CodeBadFrame},
		{"unknown type", `{"type":"teleport"}`, CodeUnknownMessage},
		{"body not object", `{"type":"join","body":"x"}`, CodeBadMessage},
		{"body array", `{"type":"ping","body":[]}`, CodeBadMessage},
		{"hello no versions", `{"type":"hello","body":{}}`, CodeBadMessage},
		{"hello version 0", `{"type":"hello","body":{"versions":[0]}}`, CodeBadMessage},
		{"join no meeting", `{"type":"join","body":{"token":"t"}}`, CodeBadMessage},
		{"join no token", `{"type":"join","body":{"meeting":"m"}}`, CodeBadMessage},
		{"join long meeting", `{"type":"join","body":{"meeting":"` + long + `","token":"t"}}`, CodeBadMessage},
		{"publish bad kind", `{"type":"publish","body":{"kind":"smell","ssrcs":[1]}}`, CodeBadMessage},
		{"publish no kind", `{"type":"publish","body":{"ssrcs":[1]}}`, CodeBadMessage},
		{"publish no ssrcs", `{"type":"publish","body":{"kind":"audio"}}`, CodeBadMessage},
		{"publish ssrc 0", `{"type":"publish","body":{"kind":"audio","ssrcs":[0]}}`, CodeBadMessage},
		{"publish dup ssrc", `{"type":"publish","body":{"kind":"audio","ssrcs":[9,9]}}`, CodeBadMessage},
		{"publish ssrc overflow", `{"type":"publish","body":{"kind":"audio","ssrcs":[4294967296]}}`, CodeBadMessage},
		{"publish too many", `{"type":"publish","body":{"kind":"audio","ssrcs":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}`, CodeBadMessage},
		{"subscribe publisher 0", `{"type":"subscribe","body":{"kind":"audio","publishers":[0]}}`, CodeBadMessage},
		{"resume short cred", `{"type":"resume","body":{"participant":1,"credential":"00"}}`, CodeBadMessage},
		{"resume no participant", `{"type":"resume","body":{"credential":"` + hexCred + `"}}`, CodeBadMessage},
		{"resume non-hex cred", `{"type":"resume","body":{"participant":1,"credential":"` + strings.Repeat("zz", 32) + `"}}`, CodeBadMessage},
		{"pong negative", `{"type":"pong","body":{"rtt_us":-1}}`, CodeBadMessage},
		{"error no code", `{"type":"error","body":{"message":"x"}}`, CodeBadMessage},
		{"joined bad role", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"king","media_token":"` + hexToken + `","resume":"` + hexCred + `"}}`, CodeBadMessage},
		{"joined bad endpoint", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","endpoints":[{"kind":"audio","transport":"udp","addr":"1.2.3.4:0"}]}}`, CodeBadMessage},
		{"joined no media_protection", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","rtcp_secret":"` + hexCred + `"}}`, CodeBadMessage},
		{"joined no rtcp_secret", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","media_protection":"e2ee"}}`, CodeBadMessage},
		{"joined standard without key", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","media_protection":"standard","rtcp_secret":"` + hexCred + `"}}`, CodeBadMessage},
		{"joined e2ee with key", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","media_protection":"e2ee","rtcp_secret":"` + hexCred + `","media_key":{"key_id":1,"key":"` + hexCred + `"}}}`, CodeBadMessage},
		{"joined unknown protection", `{"type":"joined","body":{"meeting":"m","participant":1,"role":"host","media_token":"` + hexToken + `","resume":"` + hexCred + `","media_protection":"none","rtcp_secret":"` + hexCred + `"}}`, CodeBadMessage},
		{"e2ee-key both from and to", `{"type":"e2ee-key","body":{"from":1,"to":2,"wrap":"` + strings.Repeat("ab", WrapSize) + `"}}`, CodeBadMessage},
		{"e2ee-key short wrap", `{"type":"e2ee-key","body":{"to":2,"wrap":"abab"}}`, CodeBadMessage},
		{"media-key id 0", `{"type":"media-key","body":{"key_id":0,"key":"` + hexCred + `"}}`, CodeBadMessage},
		{"left no participant", `{"type":"participant-left","body":{}}`, CodeBadMessage},
		{"stream-added no ssrcs", `{"type":"stream-added","body":{"participant":1,"kind":"audio"}}`, CodeBadMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, m, err := Decode([]byte(tc.in))
			require.Nil(t, m)
			var de *DecodeError
			require.True(t, errors.As(err, &de), "got %v", err)
			require.Equal(t, tc.code, de.Code, "err %v", err)
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	_, err := Encode(1, &Publish{Kind: Kind(media.Audio)})
	require.Error(t, err)
	_, err = Encode(1, &Publish{Kind: 9, SSRCs: []uint32{1}})
	require.Error(t, err)
	_, err = Encode(1, &Join{Meeting: "m", Token: "t", Name: "\xff"})
	require.Error(t, err, "invalid UTF-8 (JSON decoding replaces it, so only senders can get it wrong)")
}

func TestErrorIs(t *testing.T) {
	var err error = &Error{Code: CodeForbidden, Message: "no"}
	require.ErrorIs(t, err, &Error{Code: CodeForbidden})
	require.NotErrorIs(t, err, &Error{Code: CodeTokenExpired})
	require.Equal(t, "control: forbidden: no", err.Error())
}

// FuzzDecode feeds arbitrary payloads to the envelope decoder, which
// dispatches to every message decoder.
func FuzzDecode(f *testing.F) {
	for _, m := range validMessages() {
		frame, err := Encode(1, m)
		require.NoError(f, err)
		f.Add(frame[HeaderSize:])
	}
	f.Add([]byte(`{"type":"join","body":{"meeting":"\u0000","token":"` + "\xff" + `"}}`))
	f.Add([]byte(`{"type":"publish","body":{"kind":"audio","ssrcs":[1e40]}}`))
	f.Add([]byte(`{"type":"hello","body":{"versions":[1],"versions":[]}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		id, m, err := Decode(in)
		if err != nil {
			var de *DecodeError
			require.True(t, errors.As(err, &de))
			require.Nil(t, m)
			return
		}
		require.NoError(t, m.Validate())
		// A decoded message re-encodes, and that encoding is a fixed point
		// (nil and empty lists both encode alike, so compare encodings).
		frame, err := Encode(id, m)
		require.NoError(t, err)
		id2, m2, err := Decode(frame[HeaderSize:])
		require.NoError(t, err)
		require.Equal(t, id, id2)
		frame2, err := Encode(id2, m2)
		require.NoError(t, err)
		require.Equal(t, string(frame), string(frame2))
	})
}

// FuzzDecodeBody fuzzes each message decoder directly with its own body
// (typ selects the type from Types()).
func FuzzDecodeBody(f *testing.F) {
	for i, m := range validMessages() {
		frame, err := Encode(0, m)
		require.NoError(f, err)
		_, body, _ := bytes.Cut(frame[HeaderSize:], []byte(`"body":`))
		f.Add(uint8(i), body[:len(body)-1])
	}
	f.Add(uint8(2), []byte(`{"meeting":"m","token":"t","name":"\ud800"}`))
	f.Add(uint8(3), []byte(`{"roster":[{"id":1,"streams":[{},{},{},{}]}]}`))
	types := Types()
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		name := types[int(typ)%len(types)]
		m, err := DecodeBody(name, body)
		if err != nil {
			var de *DecodeError
			require.True(t, errors.As(err, &de))
			require.Equal(t, CodeBadMessage, de.Code)
			return
		}
		require.Equal(t, name, m.Type())
		require.NoError(t, m.Validate())
		_, err = Encode(0, m)
		require.NoError(t, err)
	})
}
