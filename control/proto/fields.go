package proto

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"

	"github.com/openmmr/mmr/media"
)

// Field limits enforced by Validate (docs/control-protocol.md, "Limits").
const (
	MaxMeetingID   = 128  // bytes of a meeting ID
	MaxName        = 128  // bytes of a display name or identity
	MaxToken       = 1024 // characters of a join token (a real one is ~400)
	MaxSSRCs       = 16   // SSRCs in one publish/unpublish/stream event (simulcast layers + RTX fit)
	MaxPublishers  = 4096 // participant IDs in one subscribe
	MaxVersions    = 16   // entries of hello.versions
	MaxCapability  = 32   // entries of a capability list, and bytes of each
	MaxRoster      = 1 << 16
	MaxEndpoints   = 64
	maxSoftware    = 128
	credentialSize = 32 // bytes of a resume credential (64 hex digits)
)

// Roles, the values of the "role" fields and of the join token's role.
const (
	RoleHost        = "host"        // may end the meeting
	RoleParticipant = "participant" // may publish and subscribe
	RoleViewer      = "viewer"      // webinar attendee: receives, never publishes
)

// Transports of an Endpoint.
const (
	TransportUDP = "udp" // RTP over UDP, port 8801 by default
	TransportTCP = "tcp" // RTP over TCP, port 8801 by default (fallback)
	TransportTLS = "tls" // RTP over TLS, port 443 (last resort)
)

// Kind is a media.Kind that marshals to JSON as "audio", "video" or
// "content". The zero Kind is invalid and fails Validate.
type Kind media.Kind

// MarshalText returns the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if !media.Kind(k).Valid() {
		return nil, fmt.Errorf("invalid media kind %d", k)
	}
	return []byte(media.Kind(k).String()), nil
}

// UnmarshalText parses a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	mk, err := media.ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = Kind(mk)
	return nil
}

// Media returns k as a media.Kind.
func (k Kind) Media() media.Kind { return media.Kind(k) }

func checkKind(k Kind) error {
	if !media.Kind(k).Valid() {
		return errors.New(`"kind" must be "audio", "video" or "content"`)
	}
	return nil
}

func checkString(field, s string, minLen, maxLen int) error {
	switch {
	case len(s) < minLen && minLen == 1:
		return fmt.Errorf("%q is required", field)
	case len(s) < minLen:
		return fmt.Errorf("%q shorter than %d bytes", field, minLen)
	case len(s) > maxLen:
		return fmt.Errorf("%q longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%q is not valid UTF-8", field)
	}
	return nil
}

func checkRole(r string) error {
	switch r {
	case RoleHost, RoleParticipant, RoleViewer:
		return nil
	}
	return errors.New(`"role" must be "host", "participant" or "viewer"`)
}

func checkHex(field, s string, size int) error {
	if len(s) != 2*size {
		return fmt.Errorf("%q must be %d hex digits", field, 2*size)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("%q must be %d hex digits", field, 2*size)
	}
	return nil
}

// checkOptHex is checkHex for an optional field: "" passes.
func checkOptHex(field, s string, size int) error {
	if s == "" {
		return nil
	}
	return checkHex(field, s, size)
}

// checkSSRCs checks 0 < len <= MaxSSRCs (minLen 0 allows none), no SSRC 0
// and no duplicates.
func checkSSRCs(ssrcs []uint32, minLen int) error {
	if len(ssrcs) < minLen {
		return errors.New(`"ssrcs" is required`)
	}
	if len(ssrcs) > MaxSSRCs {
		return fmt.Errorf(`"ssrcs" has more than %d entries`, MaxSSRCs)
	}
	for i, s := range ssrcs {
		if s == 0 {
			return errors.New(`SSRC 0 is not allowed`)
		}
		for _, t := range ssrcs[:i] {
			if s == t {
				return fmt.Errorf("SSRC %d listed twice", s)
			}
		}
	}
	return nil
}

// Endpoint is one media endpoint a client may send a kind's media to.
type Endpoint struct {
	Kind      Kind           `json:"kind"`
	Transport string         `json:"transport"` // TransportUDP, TransportTCP or TransportTLS
	Addr      netip.AddrPort `json:"addr"`      // "192.0.2.1:8801" or "[2001:db8::1]:8801"
}

func (e *Endpoint) validate() error {
	if err := checkKind(e.Kind); err != nil {
		return err
	}
	switch e.Transport {
	case TransportUDP, TransportTCP, TransportTLS:
	default:
		return errors.New(`"transport" must be "udp", "tcp" or "tls"`)
	}
	if !e.Addr.IsValid() || e.Addr.Port() == 0 {
		return errors.New(`"addr" must be a valid address with a port`)
	}
	return nil
}

// Stream is the set of SSRCs a participant publishes for one kind.
type Stream struct {
	Kind  Kind     `json:"kind"`
	SSRCs []uint32 `json:"ssrcs"`
}

// RosterEntry describes one participant of a meeting.
type RosterEntry struct {
	ID       uint64   `json:"id"`
	Name     string   `json:"name,omitempty"`
	Identity string   `json:"identity"`
	Role     string   `json:"role"`
	Streams  []Stream `json:"streams,omitempty"`
	// E2EEPublicKey is the participant's announced X25519 public key (64
	// hex digits), E2EE meetings only, passed on unchanged by the server.
	E2EEPublicKey string `json:"e2ee_public_key,omitempty"`
}

func (r *RosterEntry) validate() error {
	if r.ID == 0 {
		return errors.New(`"id" must not be 0`)
	}
	if err := checkString("name", r.Name, 0, MaxName); err != nil {
		return err
	}
	if err := checkString("identity", r.Identity, 1, MaxName); err != nil {
		return err
	}
	if err := checkRole(r.Role); err != nil {
		return err
	}
	if err := checkOptHex("e2ee_public_key", r.E2EEPublicKey, PublicKeySize); err != nil {
		return err
	}
	if len(r.Streams) > media.NumKinds {
		return errors.New(`"streams" has more entries than media kinds`)
	}
	for i := range r.Streams {
		if err := checkKind(r.Streams[i].Kind); err != nil {
			return err
		}
		if err := checkSSRCs(r.Streams[i].SSRCs, 1); err != nil {
			return err
		}
	}
	return nil
}
