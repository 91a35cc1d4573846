// Package proto is the wire format of the openmmr control channel, the TLS
// connection (port 443) on which a client joins its meeting on an MMR: the
// length-prefixed framing (FrameReader, AppendFrame), the message types with
// their validation (Decode, Encode), and the stable error codes. The
// normative description, precise enough to write a client from, is
// docs/control-protocol.md.
//
// Each frame is a 4-byte big-endian payload length followed by one JSON
// object (RFC 8259) of the form {"type": ..., "id": ..., "body": {...}}.
// JSON rather than a compact binary encoding because control messages are
// rare (a handful per participant per minute), so their size and parse cost
// do not matter, while every client platform has a JSON parser, messages can
// be read in a packet capture or a log, and fields can be added without a new
// version (receivers ignore unknown fields).
//
// Conventions for the whole package: constants, sentinel errors and functions
// are safe for concurrent use; message values are plain data (do not write
// one while another goroutine reads it). Decode and FrameReader never panic
// on any input and keep no reference to the bytes they were given, except
// that a FrameReader owns the payload it returns until its next call.
package proto
