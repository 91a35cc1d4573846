package proto

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"
)

// Version is the protocol version carried in Hello and Welcome. A ZC refuses
// a Hello of any other version with ErrCodeVersion.
const Version = 1

// Field limits enforced by Validate.
const (
	// MaxIDLen bounds MMR, ZC and meeting IDs in bytes. 128 matches the
	// control protocol's meeting IDs (control/proto MaxMeetingID) so any
	// meeting a client can join can be looked up.
	MaxIDLen = 128
	// MaxEndpoints bounds each endpoint list (UDP, TCP, TLS) of an MMR: a
	// dual-stack host with a few public addresses needs far fewer.
	MaxEndpoints = 8
	// MaxHosted bounds the meetings one Report lists. An MMR's capacity is
	// in the hundreds to low thousands of meetings; 10,000 leaves an order of
	// magnitude of headroom while keeping a Report under MaxFrame.
	MaxHosted = 10000
	// MaxIntervalMS bounds the report interval a ZC may announce (1 minute).
	MaxIntervalMS = 60000
	// ProofSize is the size of an HMAC-SHA-256 proof.
	ProofSize = 32
	// maxCode, maxText and maxSoftware bound free-text fields.
	maxCode     = 64
	maxText     = 1024
	maxSoftware = 128
)

// Error codes carried in Error.Code. Stable wire strings.
const (
	ErrCodeBadRequest    = "bad_request"    // malformed or unexpected message; the ZC closes the connection
	ErrCodeVersion       = "version"        // unsupported protocol version
	ErrCodeAuth          = "auth_failed"    // the zone-secret proof did not verify
	ErrCodeRateLimited   = "rate_limited"   // too many messages or registrations; the ZC closes the connection
	ErrCodeRegistryFull  = "registry_full"  // the ZC already tracks its maximum number of MMRs
	ErrCodeNoCapacity    = "no_capacity"    // no MMR can take a new meeting now (connection stays open)
	ErrCodeSessionClosed = "session_closed" // a newer registration of the same MMR ID replaced this one
)

// Hello opens an MMR registration (MMR → ZC, first frame).
type Hello struct {
	Version int    `json:"v"`
	MMR     string `json:"mmr"`   // the MMR's ID, unique in the zone
	Proof   []byte `json:"proof"` // MMRProof(secret, exporter, MMR); base64 in JSON
}

// Welcome accepts a Hello (ZC → MMR).
type Welcome struct {
	Version    int    `json:"v"`
	ZC         string `json:"zc"`          // the ZC's ID, for logs
	Proof      []byte `json:"proof"`       // ZCProof(secret, exporter, MMR)
	IntervalMS int    `json:"interval_ms"` // the report interval this ZC expects
}

// Endpoints are an MMR's public addresses, as clients must reach them.
type Endpoints struct {
	UDP []netip.AddrPort `json:"udp,omitempty"` // UDP media, default port 8801
	TCP []netip.AddrPort `json:"tcp,omitempty"` // TCP media fallback, default port 8801
	TLS []netip.AddrPort `json:"tls,omitempty"` // TLS control channel and last-resort media, port 443
}

// Capacity is what an MMR can carry. A zero field means "no limit on this
// dimension"; the ZC's load score only uses the non-zero ones.
type Capacity struct {
	Participants int     `json:"participants,omitempty"`
	Meetings     int     `json:"meetings,omitempty"`
	BitsIn       uint64  `json:"bits_in,omitempty"`  // bits per second received
	BitsOut      uint64  `json:"bits_out,omitempty"` // bits per second sent
	CPU          float64 `json:"cpu,omitempty"`      // CPU fraction (0..1] at which the MMR is full
}

// Register announces the MMR after Welcome (MMR → ZC, once per connection).
type Register struct {
	Endpoints   Endpoints `json:"endpoints"`
	Capacity    Capacity  `json:"capacity"`
	Fingerprint string    `json:"fingerprint,omitempty"` // SHA-256 hex of the MMR's TLS certificate, for clients to pin
	Software    string    `json:"software,omitempty"`    // free text, for operators
}

// Hosted is one meeting an MMR hosts and how many participants it has there.
type Hosted struct {
	ID           string `json:"id"`
	Participants int    `json:"p,omitempty"`
}

// Report is an MMR's load (MMR → ZC, every interval and on changes).
type Report struct {
	Seq          uint64  `json:"seq"` // increases by one per report on a connection
	Participants int     `json:"participants"`
	Meetings     int     `json:"meetings"`
	PacketsIn    uint64  `json:"pps_in"`  // packets per second received
	PacketsOut   uint64  `json:"pps_out"` // packets per second sent
	BitsIn       uint64  `json:"bps_in"`  // bits per second received
	BitsOut      uint64  `json:"bps_out"` // bits per second sent
	CPU          float64 `json:"cpu"`     // process CPU as a fraction of the machine, 0..1
	Draining     bool    `json:"draining,omitempty"`
	// NotAccepting: one of the MMR's listeners (the TLS port, TCP media)
	// is not taking connections (out of descriptors, or stopped). The ZC
	// places no new meeting there, as for Draining.
	NotAccepting bool `json:"not_accepting,omitempty"`
	// Hosted, when present, replaces the set of meetings the ZC believes
	// this MMR hosts; when absent (nil) the set is unchanged. An MMR sends
	// it in the first Report of a connection and whenever it changes.
	Hosted *[]Hosted `json:"hosted,omitempty"`
}

// ReportAck acknowledges a Report (ZC → MMR). An MMR that gets no ack within
// a few intervals treats the ZC as unreachable and reconnects.
type ReportAck struct {
	Seq uint64 `json:"seq"`
}

// Bye ends a registration on purpose (MMR → ZC): the ZC removes the MMR from
// selection at once instead of waiting for missed reports.
type Bye struct {
	Reason string `json:"reason,omitempty"`
}

// Lookup asks which MMR hosts, or will host, a meeting (client → ZC).
type Lookup struct {
	Meeting string `json:"meeting"`
}

// Placement answers a Lookup (ZC → client).
type Placement struct {
	Meeting     string    `json:"meeting"`
	MMR         string    `json:"mmr"`
	Endpoints   Endpoints `json:"endpoints"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	// Existing is true when the meeting was already placed: an MMR reports
	// hosting it, or this ZC placed it within the placement TTL.
	Existing bool `json:"existing"`
}

// Error reports a refused request (either direction). Codes are the ErrCode
// constants. *Error implements error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// Error returns "zone: CODE: MESSAGE".
func (e *Error) Error() string {
	if e.Message == "" {
		return "zone: " + e.Code
	}
	return "zone: " + e.Code + ": " + e.Message
}

// Is makes errors.Is(err, &Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

var errNilHosted = errors.New(`"hosted" must not be null`)

// CheckID reports whether s is a valid MMR, ZC or meeting ID: 1..MaxIDLen
// bytes of UTF-8.
func CheckID(field, s string) error { return checkString(field, s, 1, MaxIDLen) }

func checkString(field, s string, minLen, maxLen int) error {
	switch {
	case len(s) < minLen:
		return fmt.Errorf("zone/proto: %q is required", field)
	case len(s) > maxLen:
		return fmt.Errorf("zone/proto: %q longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("zone/proto: %q is not valid UTF-8", field)
	}
	return nil
}

func checkNonNeg(field string, v int) error {
	if v < 0 {
		return fmt.Errorf("zone/proto: %q is negative", field)
	}
	return nil
}

func checkFraction(field string, v float64) error {
	if !(v >= 0 && v <= 1) { // also rejects NaN
		return fmt.Errorf("zone/proto: %q must be within 0..1", field)
	}
	return nil
}

func checkProof(p []byte) error {
	if len(p) != ProofSize {
		return fmt.Errorf("zone/proto: \"proof\" must be %d bytes", ProofSize)
	}
	return nil
}

// CheckFingerprint accepts "" or 64 hex digits (a SHA-256).
func CheckFingerprint(s string) error {
	if s == "" {
		return nil
	}
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return errors.New(`zone/proto: "fingerprint" must be 64 hex digits`)
	}
	return nil
}

// Validate checks the field constraints of docs/zone-protocol.md.
func (m *Hello) Validate() error {
	if m.Version != Version {
		return &Error{Code: ErrCodeVersion, Message: fmt.Sprintf("version %d, want %d", m.Version, Version)}
	}
	if err := CheckID("mmr", m.MMR); err != nil {
		return err
	}
	return checkProof(m.Proof)
}

// Validate checks the field constraints of docs/zone-protocol.md.
func (m *Welcome) Validate() error {
	if m.Version != Version {
		return &Error{Code: ErrCodeVersion, Message: fmt.Sprintf("version %d, want %d", m.Version, Version)}
	}
	if err := CheckID("zc", m.ZC); err != nil {
		return err
	}
	if m.IntervalMS < 1 || m.IntervalMS > MaxIntervalMS {
		return fmt.Errorf("zone/proto: \"interval_ms\" must be within 1..%d", MaxIntervalMS)
	}
	return checkProof(m.Proof)
}

// Validate checks that every list is within MaxEndpoints, every address is
// a valid IP with a non-zero port, and at least one endpoint is given.
func (e *Endpoints) Validate() error {
	total := 0
	for _, l := range []struct {
		name string
		list []netip.AddrPort
	}{{"udp", e.UDP}, {"tcp", e.TCP}, {"tls", e.TLS}} {
		if len(l.list) > MaxEndpoints {
			return fmt.Errorf("zone/proto: more than %d %s endpoints", MaxEndpoints, l.name)
		}
		for _, a := range l.list {
			if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
				return fmt.Errorf("zone/proto: invalid %s endpoint %q", l.name, a)
			}
		}
		total += len(l.list)
	}
	if total == 0 {
		return errors.New("zone/proto: no endpoints")
	}
	return nil
}

// Validate checks that counts are non-negative and CPU within 0..1.
func (c *Capacity) Validate() error {
	if err := checkNonNeg("capacity.participants", c.Participants); err != nil {
		return err
	}
	if err := checkNonNeg("capacity.meetings", c.Meetings); err != nil {
		return err
	}
	return checkFraction("capacity.cpu", c.CPU)
}

// Validate checks the field constraints of docs/zone-protocol.md.
func (m *Register) Validate() error {
	if err := m.Endpoints.Validate(); err != nil {
		return err
	}
	if err := m.Capacity.Validate(); err != nil {
		return err
	}
	if err := CheckFingerprint(m.Fingerprint); err != nil {
		return err
	}
	return checkString("software", m.Software, 0, maxSoftware)
}

// Validate checks the field constraints of docs/zone-protocol.md, including
// that Hosted has at most MaxHosted meetings, each a valid, distinct ID.
func (m *Report) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"participants", m.Participants}, {"meetings", m.Meetings}} {
		if err := checkNonNeg(f.name, f.v); err != nil {
			return err
		}
	}
	if err := checkFraction("cpu", m.CPU); err != nil {
		return err
	}
	if m.Hosted == nil {
		return nil
	}
	h := *m.Hosted
	if h == nil {
		return errNilHosted
	}
	if len(h) > MaxHosted {
		return fmt.Errorf("zone/proto: more than %d hosted meetings", MaxHosted)
	}
	seen := make(map[string]struct{}, len(h))
	for i := range h {
		if err := CheckID("hosted.id", h[i].ID); err != nil {
			return err
		}
		if err := checkNonNeg("hosted.p", h[i].Participants); err != nil {
			return err
		}
		if _, dup := seen[h[i].ID]; dup {
			return fmt.Errorf("zone/proto: meeting %q listed twice", h[i].ID)
		}
		seen[h[i].ID] = struct{}{}
	}
	return nil
}

// Validate accepts every ReportAck.
func (*ReportAck) Validate() error { return nil }

// Validate bounds the reason's length.
func (m *Bye) Validate() error { return checkString("reason", m.Reason, 0, maxText) }

// Validate checks the meeting ID.
func (m *Lookup) Validate() error { return CheckID("meeting", m.Meeting) }

// Validate checks the field constraints of docs/zone-protocol.md.
func (m *Placement) Validate() error {
	if err := CheckID("meeting", m.Meeting); err != nil {
		return err
	}
	if err := CheckID("mmr", m.MMR); err != nil {
		return err
	}
	if err := m.Endpoints.Validate(); err != nil {
		return err
	}
	return CheckFingerprint(m.Fingerprint)
}

// Validate checks that Code is present and both fields are bounded.
func (e *Error) Validate() error {
	if err := checkString("code", e.Code, 1, maxCode); err != nil {
		return err
	}
	return checkString("message", e.Message, 0, maxText)
}
