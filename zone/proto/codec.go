package proto

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Message is one decoded message of a JSON type. Every JSON message type of
// this package implements it with a pointer receiver.
type Message interface {
	// Validate checks the field constraints of docs/zone-protocol.md.
	Validate() error
}

// typeOf returns the wire type of a JSON message, or 0 when m is not one.
func typeOf(m Message) Type {
	switch m.(type) {
	case *Hello:
		return TypeHello
	case *Welcome:
		return TypeWelcome
	case *Register:
		return TypeRegister
	case *Report:
		return TypeReport
	case *ReportAck:
		return TypeReportAck
	case *Bye:
		return TypeBye
	case *Lookup:
		return TypeLookup
	case *Placement:
		return TypePlacement
	case *Error:
		return TypeError
	}
	return 0
}

// newMessage returns a zero message of JSON type t, or nil when t is not a
// JSON type (the probe types are binary, see Probe).
func newMessage(t Type) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeRegister:
		return new(Register)
	case TypeReport:
		return new(Report)
	case TypeReportAck:
		return new(ReportAck)
	case TypeBye:
		return new(Bye)
	case TypeLookup:
		return new(Lookup)
	case TypePlacement:
		return new(Placement)
	case TypeError:
		return new(Error)
	}
	return nil
}

// AppendMessage validates m and appends its frame to dst. HTML escaping is
// off (IDs travel as they are), so a body is at most about twice the size of
// its strings.
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	t := typeOf(m)
	if t == 0 {
		return dst, fmt.Errorf("zone/proto: %T is not a JSON message", m)
	}
	if err := m.Validate(); err != nil {
		return dst, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return dst, fmt.Errorf("zone/proto: encode %s: %w", t, err)
	}
	body := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if 1+len(body) > MaxFrame {
		return dst, ErrFrameTooLarge
	}
	return AppendFrame(dst, t, body), nil
}

// Decode decodes and validates the body of a frame of JSON type t. It never
// panics; unknown JSON fields are ignored (forward compatibility), a body
// that is not one JSON object is an error, and so is any type that is not a
// JSON message type. The result does not alias body.
func Decode(t Type, body []byte) (Message, error) {
	m := newMessage(t)
	if m == nil {
		return nil, fmt.Errorf("zone/proto: %s is not a JSON message type", t)
	}
	if err := decodeInto(body, m); err != nil {
		return nil, fmt.Errorf("zone/proto: decode %s: %w", t, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeInto unmarshals exactly one JSON value into m.
func decodeInto(body []byte, m Message) error {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(m); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// DecodeAs decodes body as type t into a message of type *M, reporting an
// error when t does not match M's type.
func DecodeAs[M any, PM interface {
	*M
	Message
}](t Type, body []byte) (*M, error) {
	want := typeOf(PM(new(M)))
	if t != want {
		if t == TypeError {
			var e Error
			if decodeInto(body, &e) == nil && e.Validate() == nil {
				return nil, &e
			}
		}
		return nil, fmt.Errorf("zone/proto: got %s, want %s", t, want)
	}
	m, err := Decode(t, body)
	if err != nil {
		return nil, err
	}
	return m.(PM), nil
}
