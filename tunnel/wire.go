package tunnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Wire constants (docs/PROTOCOL.md, "HTTP tunnel (HTTPS 443)").
const (
	// PathTunnel is the path of the WebSocket upgrade that opens a stream.
	PathTunnel = "/v1/tunnel"
	// PathPing is the path of the authenticated ping.
	PathPing = "/v1/ping"
	// Subprotocol is the Sec-WebSocket-Protocol value a client must offer;
	// a later incompatible version gets a new name.
	Subprotocol = "openmmr-tunnel.v1"
	// HeaderTarget names the destination "host:port" of a stream.
	HeaderTarget = "Openmmr-Target"
	// MaxMessage is the largest WebSocket message payload either side
	// sends (the client splits longer writes). A TLS record is at most
	// 16 KiB plus overhead, so one record fits one message.
	MaxMessage = 32 << 10
	// MaxToken is the longest Authorization value accepted, the control
	// channel's join-token limit plus "Bearer ".
	MaxToken = 1024
	// MaxTarget is the longest Openmmr-Target accepted: a DNS name (253)
	// plus brackets, colon and port.
	MaxTarget = 262
	// maxErrorBody bounds what a client reads of an error or ping answer.
	maxErrorBody = 4 << 10
)

// Close codes a tunnel server ends a stream with (RFC 6455 §7.4; 4000-4999
// are private-use codes, documented in docs/PROTOCOL.md).
const (
	// CloseNormal (1000): the destination closed its side.
	CloseNormal = websocket.StatusNormalClosure
	// CloseUpstream (1011): the connection to the destination failed.
	CloseUpstream = websocket.StatusInternalError
	// CloseLeaving (1012, "service restart"): the server is stopping; the
	// client should move to another tunnel at once. 1001 (going away) is
	// treated the same by clients, but a server sends 1012 because many
	// libraries (coder/websocket's NetConn among them) turn 1001 into a
	// plain EOF, indistinguishable from a normal end.
	CloseLeaving = websocket.StatusServiceRestart
	// CloseIdle (4000): no byte in either direction for the idle timeout.
	CloseIdle websocket.StatusCode = 4000
	// CloseSlow (4001): the client did not read for the write timeout.
	// Usually not seen by the client, since its connection is blocked.
	CloseSlow websocket.StatusCode = 4001
)

// Error codes of the JSON error body. Stable wire strings.
const (
	CodeBadRequest       = "bad-request"        // 400: not GET, not a WebSocket upgrade, no subprotocol
	CodeBadTarget        = "bad-target"         // 400: Openmmr-Target missing or not host:port
	CodeTokenMissing     = "token-missing"      // 401: no "Authorization: Bearer" header
	CodeTokenInvalid     = "token-invalid"      // 401: malformed or forged token
	CodeTokenExpired     = "token-expired"      // 401: a genuine token past its expiry
	CodeTargetNotAllowed = "target-not-allowed" // 403: not an address of the served zones
	CodeNotFound         = "not-found"          // 404: unknown path
	CodeTooManyStreams   = "too-many-streams"   // 429: per-client or per-address limit
	CodeDialFailed       = "dial-failed"        // 502: the destination did not answer
	CodeServerFull       = "server-full"        // 503: total stream limit
	CodeLeaving          = "leaving"            // 503: the server is stopping
)

// ErrorBody is the JSON body of every non-2xx answer:
// {"error":{"code":"...","message":"..."}}, the web tier's shape.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Pong is the JSON body of a 200 answer to the ping.
type Pong struct {
	// Time is the server's clock when it answered (RFC 3339, nanoseconds).
	Time time.Time `json:"time"`
	// Server is the server's configured name, for logs.
	Server string `json:"server,omitempty"`
}

// Error is a refusal by a tunnel server: its HTTP status and the JSON
// error body's code and message. errors.Is(err, &Error{Code: c}) matches on
// the code alone.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error returns "tunnel: STATUS CODE: MESSAGE".
func (e *Error) Error() string {
	return fmt.Sprintf("tunnel: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is matches another *Error by code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code
}

// ErrServerLeaving is what a tunnelled connection's Read or Write returns
// (wrapped) when the tunnel server closed it because it is stopping (close
// code 1012 or 1001), and what Dial and Ping return for a 503 "leaving":
// move to another tunnel and resume.
var ErrServerLeaving = errors.New("tunnel: server is leaving")

// ErrIdle is returned (wrapped) by a tunnelled connection the server cut
// for being idle (close code 4000).
var ErrIdle = errors.New("tunnel: stream closed for inactivity")

// ParseTarget checks an Openmmr-Target value: "host:port" with a DNS name,
// IPv4 address or bracketed IPv6 address and a port 1..65535. It returns
// the host (without brackets) and port.
func ParseTarget(s string) (host string, port uint16, err error) {
	if s == "" || len(s) > MaxTarget {
		return "", 0, fmt.Errorf("target must be host:port, 1..%d bytes", MaxTarget)
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("target: %w", err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 || p[0] == '0' {
		return "", 0, fmt.Errorf("target: bad port %q", p)
	}
	if h == "" || !validHost(h) {
		return "", 0, fmt.Errorf("target: bad host %q", h)
	}
	return h, uint16(n), nil
}

// validHost accepts an IP literal or a DNS name of letters, digits, '-',
// '_' and '.' (no empty label), which is all a zone address can be.
func validHost(h string) bool {
	if strings.ContainsRune(h, ':') { // IPv6: SplitHostPort removed the brackets
		return net.ParseIP(h) != nil && !strings.Contains(h, "%")
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ParseBearer returns the token of an "Authorization: Bearer TOKEN" value
// (the scheme is case-insensitive, RFC 6750 §2.1), or "" and false.
func ParseBearer(v string) (string, bool) {
	if len(v) > MaxToken {
		return "", false
	}
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimLeft(v[len(scheme):], " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// writeError answers with status and the JSON error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	body, _ := json.Marshal(&b) // two strings: cannot fail
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="openmmr-tunnel"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// DecodeError turns a non-2xx answer into an *Error, reading at most 4 KiB
// of body. A body that is not the JSON error shape gives code
// "http-STATUS" and the start of the body as the message. A 503 "leaving"
// also matches ErrServerLeaving.
func DecodeError(status int, body io.Reader) error {
	raw, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	e := &Error{Status: status}
	var b ErrorBody
	if json.Unmarshal(raw, &b) == nil && b.Error.Code != "" {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	} else {
		e.Code = "http-" + strconv.Itoa(status)
		e.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	if e.Code == CodeLeaving {
		return fmt.Errorf("%w: %w", ErrServerLeaving, e)
	}
	return e
}

// DecodePong parses a ping answer's body (at most 4 KiB).
func DecodePong(body io.Reader) (Pong, error) {
	var p Pong
	raw, err := io.ReadAll(io.LimitReader(body, maxErrorBody+1))
	if err != nil {
		return p, fmt.Errorf("tunnel: ping answer: %w", err)
	}
	if len(raw) > maxErrorBody {
		return p, errors.New("tunnel: ping answer longer than 4 KiB")
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("tunnel: ping answer: %w", err)
	}
	if p.Time.IsZero() {
		return p, errors.New("tunnel: ping answer without time")
	}
	return p, nil
}
