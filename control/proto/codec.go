package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Version is the protocol version this package speaks. Versions are
// negotiated in the hello/welcome exchange.
const Version = 1

// ALPN is the TLS application protocol (RFC 7301) of the control channel.
// Clients offer it so that a port 443 shared with media streams and the zone
// controller routes them here; the server also accepts clients offering
// none.
const ALPN = "openmmr-control/1"

// Message is the body of one control message. Every message type of this
// package implements it with a pointer receiver.
type Message interface {
	// Type returns the message's "type" string.
	Type() string
	// Validate checks the field constraints of docs/control-protocol.md.
	Validate() error
}

// envelope is the JSON object carried by every frame.
type envelope struct {
	Type string          `json:"type"`
	ID   uint32          `json:"id,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// outEnvelope is envelope for encoding: Body is marshalled in place.
type outEnvelope struct {
	Type string  `json:"type"`
	ID   uint32  `json:"id,omitempty"`
	Body Message `json:"body"`
}

// newMessage returns a zero message of the given type, or nil when the type
// is not defined by Version.
func newMessage(typ string) Message {
	switch typ {
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeJoin:
		return new(Join)
	case TypeJoined:
		return new(Joined)
	case TypeResume:
		return new(Resume)
	case TypeResumed:
		return new(Resumed)
	case TypePublish:
		return new(Publish)
	case TypeUnpublish:
		return new(Unpublish)
	case TypeSubscribe:
		return new(Subscribe)
	case TypeUnsubscribe:
		return new(Unsubscribe)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeLeave:
		return new(Leave)
	case TypeEndMeeting:
		return new(EndMeeting)
	case TypeOK:
		return new(OK)
	case TypeError:
		return new(Error)
	case TypeParticipantJoined:
		return new(ParticipantJoined)
	case TypeParticipantLeft:
		return new(ParticipantLeft)
	case TypeStreamAdded:
		return new(StreamAdded)
	case TypeStreamRemoved:
		return new(StreamRemoved)
	case TypeMeetingEnded:
		return new(MeetingEnded)
	case TypeMediaKey:
		return new(MediaKey)
	case TypeE2EEKey:
		return new(E2EEKey)
	case TypeActiveSpeaker:
		return new(ActiveSpeaker)
	}
	return nil
}

// Types returns every message type defined by Version, in the order of
// docs/control-protocol.md, in a new slice.
func Types() []string {
	return []string{
		TypeHello, TypeWelcome, TypeJoin, TypeJoined, TypeResume, TypeResumed,
		TypePublish, TypeUnpublish, TypeSubscribe, TypeUnsubscribe, TypePing,
		TypePong, TypeLeave, TypeEndMeeting, TypeOK, TypeError,
		TypeParticipantJoined, TypeParticipantLeft, TypeStreamAdded,
		TypeStreamRemoved, TypeMeetingEnded, TypeMediaKey, TypeE2EEKey,
		TypeActiveSpeaker,
	}
}

// Decode parses one frame payload into its message ID and validated message.
// Unknown fields are ignored (forward compatibility); an unknown type yields
// a *DecodeError with CodeUnknownMessage, anything else malformed one with
// CodeBadFrame (not a JSON envelope) or CodeBadMessage (a body that does not
// fit its type). The returned message does not reference payload.
//
// A payload that is not valid UTF-8 (RFC 8259 §8.1) is refused with
// CodeBadMessage: encoding/json would silently turn invalid bytes into
// U+FFFD, so a name or ID with them would otherwise be accepted altered.
func Decode(payload []byte) (id uint32, m Message, err error) {
	var env envelope
	if err := json.Unmarshal(payload, &env); err != nil {
		return 0, nil, &DecodeError{Code: CodeBadFrame, Err: err}
	}
	if env.Type == "" {
		return 0, nil, &DecodeError{Code: CodeBadFrame, Err: errors.New(`missing "type"`)}
	}
	if !utf8.Valid(payload) {
		return env.ID, nil, &DecodeError{Code: CodeBadMessage, Err: fmt.Errorf("%.64q: not valid UTF-8", env.Type)}
	}
	m, err = DecodeBody(env.Type, env.Body)
	return env.ID, m, err
}

// ServerToClient reports whether typ is a message only a server sends
// (welcome, joined, resumed, ok, events): a server receiving one answers
// CodeUnexpected, not CodeBadMessage, whatever its body.
func ServerToClient(typ string) bool {
	switch typ {
	case TypeWelcome, TypeJoined, TypeResumed, TypeOK,
		TypeParticipantJoined, TypeParticipantLeft, TypeStreamAdded,
		TypeStreamRemoved, TypeMeetingEnded, TypeMediaKey, TypeActiveSpeaker:
		return true
	}
	return false
}

// TypeOf returns the "type" of a frame payload, "" if it has none. For
// error paths: it decodes the envelope again.
func TypeOf(payload []byte) string {
	var env envelope
	if json.Unmarshal(payload, &env) != nil {
		return ""
	}
	return env.Type
}

// DecodeBody decodes and validates the body of a message of type typ (an
// absent or null body is an empty object). Errors are *DecodeError as for
// Decode. It does not retain body.
func DecodeBody(typ string, body []byte) (Message, error) {
	m := newMessage(typ)
	if m == nil {
		return nil, &DecodeError{Code: CodeUnknownMessage, Err: fmt.Errorf("type %.64q", typ)}
	}
	if len(body) > 0 {
		if b := bytes.TrimSpace(body); len(b) == 0 || b[0] != '{' && !bytes.Equal(b, []byte("null")) {
			return nil, &DecodeError{Code: CodeBadMessage, Err: fmt.Errorf("%s: body is not an object", typ)}
		}
		if err := json.Unmarshal(body, m); err != nil {
			return nil, &DecodeError{Code: CodeBadMessage, Err: fmt.Errorf("%s: %w", typ, err)}
		}
	}
	if err := m.Validate(); err != nil {
		return nil, &DecodeError{Code: CodeBadMessage, Err: fmt.Errorf("%s: %w", typ, err)}
	}
	return m, nil
}

// Encode validates m and returns it as a complete frame (length prefix and
// JSON payload) with message ID id (0 for none). The returned slice is new
// and owned by the caller; it may be shared read-only between connections.
func Encode(id uint32, m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("proto: encode %s: %w", m.Type(), err)
	}
	payload, err := json.Marshal(outEnvelope{Type: m.Type(), ID: id, Body: m})
	if err != nil {
		return nil, fmt.Errorf("proto: encode %s: %w", m.Type(), err)
	}
	return AppendFrame(make([]byte, 0, HeaderSize+len(payload)), payload)
}
