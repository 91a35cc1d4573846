package proto

import "fmt"

// Error codes carried in Error.Code. They are stable: clients switch on them.
// Whether the server closes the connection after sending one is given by
// Error.Fatal; the table in docs/control-protocol.md lists the usual value.
const (
	CodeBadFrame          = "bad-frame"          // empty or undecodable frame, not JSON; fatal
	CodeFrameTooLarge     = "frame-too-large"    // length prefix above welcome.max_frame; fatal
	CodeBadMessage        = "bad-message"        // known type, but a body that fails validation; fatal
	CodeUnknownMessage    = "unknown-message"    // type not defined by the negotiated version; fatal
	CodeUnexpected        = "unexpected-message" // valid message in the wrong state; fatal
	CodeVersion           = "version-unsupported"
	CodeTokenInvalid      = "token-invalid"       // malformed or forged join token; fatal
	CodeTokenExpired      = "token-expired"       // join token past its expiry; fatal
	CodeWrongMeeting      = "wrong-meeting"       // token minted for another meeting; fatal
	CodeForbidden         = "forbidden"           // the role may not do this (viewer publish, end-meeting by non-host)
	CodeMeetingFull       = "meeting-full"        // max participants per meeting reached; fatal
	CodeServerFull        = "server-full"         // max meetings reached; fatal
	CodeResumeFailed      = "resume-failed"       // unknown participant, wrong credential or grace over; fatal
	CodeSSRCInUse         = "ssrc-in-use"         // another participant of the meeting publishes that SSRC
	CodeTooManySSRCs      = "too-many-ssrcs"      // the router's per-kind SSRC limit
	CodeUnknownPublisher  = "unknown-publisher"   // subscribe names an ID not in the roster
	CodeTimeout           = "timeout"             // handshake or idle timeout; fatal
	CodeReplaced          = "replaced"            // a resume on another connection took the participant over; fatal
	CodeInternal          = "internal"            // server-side failure; fatal
	CodeShuttingDown      = "shutting-down"       // the server is closing; fatal
	CodeRateLimited       = "rate-limited"        // over the request rate: not executed; fatal once the client ignores it
	CodeWrongMode         = "wrong-mode"          // join: the token's media protection mode (E2EE or Standard) is not the meeting's, fatal; e2ee-key in a Standard meeting, not fatal
	CodePublicKeyRequired = "public-key-required" // join of an E2EE meeting without a valid e2ee_public_key; fatal
	CodeNoViewers         = "e2ee-no-viewers"     // a viewer token for an E2EE meeting (E2EE meetings have no viewers); fatal
	CodeBadKeyWrap        = "bad-key-wrap"        // e2ee-key whose wrap does not decode, or is not from the sender, or is to itself; not fatal
	CodeUnknownRecipient  = "unknown-participant" // e2ee-key to an ID not in the meeting; not fatal
	maxCodeLen            = 64
	maxErrorMessageLength = 1024
)

// Error is the body of an "error" message (server to client). It also
// implements the error interface so that clients can return it as is. Fatal
// true means the server closes the connection right after sending it.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	Fatal   bool   `json:"fatal,omitempty"`
}

// Type returns "error".
func (*Error) Type() string { return TypeError }

// Validate checks the code is present and both strings are bounded.
func (m *Error) Validate() error {
	if err := checkString("code", m.Code, 1, maxCodeLen); err != nil {
		return err
	}
	return checkString("message", m.Message, 0, maxErrorMessageLength)
}

// Error returns "control: CODE: MESSAGE".
func (m *Error) Error() string {
	if m.Message == "" {
		return "control: " + m.Code
	}
	return fmt.Sprintf("control: %s: %s", m.Code, m.Message)
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &proto.Error{Code: proto.CodeForbidden}) works.
func (m *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == m.Code
}

// DecodeError is what Decode returns for input it rejects: Code is the error
// code the receiver should answer with (CodeBadFrame, CodeBadMessage or
// CodeUnknownMessage), Err the detail.
type DecodeError struct {
	Code string
	Err  error
}

// Error returns the code and detail.
func (e *DecodeError) Error() string { return "proto: " + e.Code + ": " + e.Err.Error() }

// Unwrap returns the detail.
func (e *DecodeError) Unwrap() error { return e.Err }
