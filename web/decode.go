package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// decodeBody reads exactly one JSON object from r's body (at most limit
// bytes, Content-Type application/json) into v, refusing unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, CodeMediaType, "Content-Type must be application/json")
		}
	} else {
		return errorf(http.StatusUnsupportedMediaType, CodeMediaType, "Content-Type must be application/json")
	}
	return decodeJSON(http.MaxBytesReader(w, r.Body, limit), limit, v)
}

// decodeJSON is the decoder behind decodeBody, for the fuzz targets.
func decodeJSON(r io.Reader, limit int64, v any) *apiError {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body over %d bytes", limit))
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: "+jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("request body over %d bytes", limit))
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: data after the object")
	}
	return nil
}

// jsonError shortens a decoder error for the client (no Go type names).
func jsonError(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("field %q has the wrong type", ute.Field)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// validMeetingID reports whether id is 10 or 11 ASCII digits.
func validMeetingID(id string) bool {
	if len(id) < 10 || len(id) > 11 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// validText reports whether s is lo..hi bytes of UTF-8 without control
// characters.
func validText(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validSecret reports whether s is lo..hi printable ASCII characters
// (passcodes and keys are typed on phones and keypads).
func validSecret(s string, lo, hi int) bool {
	if len(s) < lo || len(s) > hi {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Field limits.
const (
	maxTopic        = 200
	maxName         = 64 // display name, as in the lookup contract
	maxCapabilities = 16
	maxCapability   = 32
	minPasscode     = 1
	maxPasscode     = 32
	minKey          = 6
	maxKey          = 32
	maxDuration     = 7 * 24 * 60 // a week, in minutes
	maxZones        = 16
	maxListLimit    = 500
	defListLimit    = 100
)

// parseTime parses an RFC 3339 time to UTC seconds ("" is zero).
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil || t.Unix() <= 0 || t.Year() > 9999 {
		return time.Time{}, false
	}
	return t.UTC().Truncate(time.Second), true
}
