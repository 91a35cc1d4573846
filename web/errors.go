package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Error codes: the "code" of every error body. Stable: clients switch on
// them (docs/PROTOCOL.md, "Web tier").
const (
	CodeBadRequest       = "bad-request"            // 400: malformed JSON, unknown field, invalid field
	CodeInvalidMeetingID = "invalid-meeting-id"     // 400: not 10 or 11 digits
	CodeUnauthorized     = "unauthorized"           // 401: admin API without a valid API key
	CodePasscodeRequired = "passcode-required"      // 401: the meeting has a passcode and none was sent
	CodeWrongPasscode    = "wrong-passcode"         // 401
	CodeWrongHostKey     = "wrong-host-key"         // 401: a host key or panelist key was sent and is wrong
	CodeNotFound         = "not-found"              // 404: no such route
	CodeMeetingNotFound  = "meeting-not-found"      // 404
	CodeMethod           = "method-not-allowed"     // 405 (with Allow)
	CodeMeetingExists    = "meeting-exists"         // 409: create with a taken ID
	CodeConflict         = "conflict"               // 409: concurrent updates kept colliding
	CodeMeetingEnded     = "meeting-ended"          // 410
	CodeTooLarge         = "body-too-large"         // 413: over the route's body limit
	CodeMediaType        = "unsupported-media-type" // 415: not application/json
	CodeLockedOut        = "locked-out"             // 429 (with Retry-After): too many failures for this meeting or source
	CodeRateLimited      = "rate-limited"           // 429 (with Retry-After): too many lookups from this source
	CodeInternal         = "internal"               // 500
)

// codes is every code, for the counters (fixed at init, read-only after).
var codes = []string{CodeBadRequest, CodeInvalidMeetingID, CodeUnauthorized, CodePasscodeRequired, CodeWrongPasscode,
	CodeWrongHostKey, CodeNotFound, CodeMeetingNotFound, CodeMethod, CodeMeetingExists, CodeConflict, CodeMeetingEnded,
	CodeTooLarge, CodeMediaType, CodeLockedOut, CodeRateLimited, CodeInternal}

// apiError is an error answer.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration // > 0: a Retry-After header
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errorf(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// errorBody is the JSON of every non-2xx answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// refusals counts error answers by code. Immutable map of atomics.
type refusals map[string]*atomic.Uint64

func newRefusals() refusals {
	r := refusals{}
	for _, c := range codes {
		r[c] = new(atomic.Uint64)
	}
	return r
}

// writeError answers e as JSON and counts it.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	if c := s.refused[e.code]; c != nil {
		c.Add(1)
	}
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.msg
	h := w.Header()
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	if e.status == http.StatusUnauthorized && e.code == CodeUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="openmmr"`)
	}
	writeJSON(w, e.status, &b)
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
