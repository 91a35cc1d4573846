package proto

import (
	"errors"
	"fmt"
)

// Message types, the "type" of the envelope. Arrows give the direction.
const (
	TypeHello             = "hello"              // client → server: versions, capabilities
	TypeWelcome           = "welcome"            // server → client: chosen version, limits
	TypeJoin              = "join"               // client → server
	TypeJoined            = "joined"             // server → client, answers join
	TypeResume            = "resume"             // client → server
	TypeResumed           = "resumed"            // server → client, answers resume
	TypePublish           = "publish"            // client → server, answered by ok
	TypeUnpublish         = "unpublish"          // client → server, answered by ok
	TypeSubscribe         = "subscribe"          // client → server, answered by ok
	TypeUnsubscribe       = "unsubscribe"        // client → server, answered by ok
	TypePing              = "ping"               // either way, answered by pong
	TypePong              = "pong"               // either way
	TypeLeave             = "leave"              // client → server, answered by ok, then close
	TypeEndMeeting        = "end-meeting"        // client (host) → server, answered by ok
	TypeOK                = "ok"                 // server → client
	TypeError             = "error"              // server → client
	TypeParticipantJoined = "participant-joined" // server → client event
	TypeParticipantLeft   = "participant-left"   // server → client event
	TypeStreamAdded       = "stream-added"       // server → client event
	TypeStreamRemoved     = "stream-removed"     // server → client event
	TypeMeetingEnded      = "meeting-ended"      // server → client event, then close
	TypeMediaKey          = "media-key"          // server → client event, Standard mode
	TypeE2EEKey           = "e2ee-key"           // client → server request (ok), and server → client event, E2EE mode
)

// Media protection modes, the media_protection field of joined/resumed
// (docs/PROTOCOL.md, "Media protection").
const (
	ProtectionStandard = "standard" // the control server makes the meeting keys (media_key, media-key)
	ProtectionE2EE     = "e2ee"     // the leader's client makes them; the server relays key wraps
)

// Sizes of the media-protection fields, in bytes (twice as many hex digits).
const (
	SecretSize    = 32  // rtcp_secret, media key secrets
	PublicKeySize = 32  // e2ee_public_key (X25519, RFC 7748)
	WrapSize      = 114 // an e2ee-key wrap (docs/PROTOCOL.md, "Key wrap")
)

// Capabilities a server announces in Welcome.
const (
	CapResume = "resume" // resume after a dropped connection
	CapRTT    = "rtt"    // pong carries the server-measured RTT
)

// Reasons of ParticipantLeft and MeetingEnded.
const (
	ReasonLeft    = "left"    // the participant sent leave
	ReasonTimeout = "timeout" // its connection dropped and the grace period ran out
	ReasonEnded   = "ended"   // the host ended the meeting
)

// Hello opens the exchange (client → server, first message).
type Hello struct {
	Versions     []int    `json:"versions"`               // protocol versions the client speaks
	Software     string   `json:"software,omitempty"`     // e.g. "openmmr-go/1"
	Capabilities []string `json:"capabilities,omitempty"` // informative, unknown ones ignored
}

// Type returns "hello".
func (*Hello) Type() string { return TypeHello }

// Validate checks 1..MaxVersions positive versions and bounded strings.
func (m *Hello) Validate() error {
	if len(m.Versions) == 0 || len(m.Versions) > MaxVersions {
		return fmt.Errorf(`"versions" must list 1 to %d versions`, MaxVersions)
	}
	for _, v := range m.Versions {
		if v < 1 || v > 255 {
			return errors.New(`versions are 1..255`)
		}
	}
	if err := checkString("software", m.Software, 0, maxSoftware); err != nil {
		return err
	}
	return checkCaps(m.Capabilities)
}

func checkCaps(caps []string) error {
	if len(caps) > MaxCapability {
		return fmt.Errorf(`"capabilities" has more than %d entries`, MaxCapability)
	}
	for _, c := range caps {
		if err := checkString("capabilities", c, 1, MaxCapability); err != nil {
			return err
		}
	}
	return nil
}

// Welcome answers Hello (server → client) with the chosen version and the
// server's limits.
type Welcome struct {
	Version        int      `json:"version"`
	Software       string   `json:"software,omitempty"`
	Capabilities   []string `json:"capabilities,omitempty"`
	MaxFrame       int      `json:"max_frame"`        // largest payload the server accepts
	IdleTimeoutMS  int64    `json:"idle_timeout_ms"`  // silence after which the server closes
	PingIntervalMS int64    `json:"ping_interval_ms"` // how often the server pings
	GraceMS        int64    `json:"grace_ms"`         // how long a dropped participant may resume
}

// Type returns "welcome".
func (*Welcome) Type() string { return TypeWelcome }

// Validate checks the version and non-negative limits.
func (m *Welcome) Validate() error {
	if m.Version < 1 || m.Version > 255 {
		return errors.New(`"version" must be 1..255`)
	}
	if m.MaxFrame < 0 || m.IdleTimeoutMS < 0 || m.PingIntervalMS < 0 || m.GraceMS < 0 {
		return errors.New("limits must not be negative")
	}
	if err := checkString("software", m.Software, 0, maxSoftware); err != nil {
		return err
	}
	return checkCaps(m.Capabilities)
}

// Join asks to join a meeting (client → server, after welcome).
type Join struct {
	Meeting string `json:"meeting"`        // meeting ID, must equal the token's
	Token   string `json:"token"`          // join token (docs/control-protocol.md, "Join tokens")
	Name    string `json:"name,omitempty"` // display name; default the token's identity
	// E2EEPublicKey is the client's X25519 public key for this join, 64 hex
	// digits; required in an E2EE meeting, ignored otherwise.
	E2EEPublicKey string `json:"e2ee_public_key,omitempty"`
}

// Type returns "join".
func (*Join) Type() string { return TypeJoin }

// Validate checks the lengths of the three fields.
func (m *Join) Validate() error {
	if err := checkString("meeting", m.Meeting, 1, MaxMeetingID); err != nil {
		return err
	}
	if err := checkString("token", m.Token, 1, MaxToken); err != nil {
		return err
	}
	if err := checkString("name", m.Name, 0, MaxName); err != nil {
		return err
	}
	return checkOptHex("e2ee_public_key", m.E2EEPublicKey, PublicKeySize)
}

// MediaKey is a Standard-mode meeting key: the media_key field of
// joined/resumed and the body of the media-key event. Key is 64 hex
// digits; secret, never log it.
type MediaKey struct {
	KeyID uint32 `json:"key_id"` // not 0
	Key   string `json:"key"`
}

// Type returns "media-key".
func (*MediaKey) Type() string { return TypeMediaKey }

// Validate checks a non-zero key ID and a 64-hex-digit key.
func (m *MediaKey) Validate() error {
	if m.KeyID == 0 {
		return errors.New(`"key_id" must not be 0`)
	}
	return checkHex("key", m.Key, SecretSize)
}

// E2EEKey carries one key wrap (E2EE mode). As a request (client → server,
// answered by ok) it names the recipient in To and leaves From 0; the
// server relays it as an event to To with From set to the sender's
// participant ID and To 0. Wrap is the 114-byte wrap as 228 hex digits.
type E2EEKey struct {
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`
	Wrap string `json:"wrap"`
}

// Type returns "e2ee-key".
func (*E2EEKey) Type() string { return TypeE2EEKey }

// Validate checks that exactly one of From and To is set and the wrap's
// size and hex encoding.
func (m *E2EEKey) Validate() error {
	if (m.From == 0) == (m.To == 0) {
		return errors.New(`exactly one of "from" and "to" must be set`)
	}
	return checkHex("wrap", m.Wrap, WrapSize)
}

// Joined answers Join (server → client): who the client is in the meeting,
// the secret media token and resume credential, where to send media, and
// the roster (the client itself excluded).
type Joined struct {
	Meeting     string        `json:"meeting"`
	Participant uint64        `json:"participant"` // this client's participant ID
	Role        string        `json:"role"`
	MediaToken  string        `json:"media_token"` // 32 hex digits, for the UDP Bind (docs/PROTOCOL.md)
	Resume      string        `json:"resume"`      // 64 hex digits, the resume credential
	GraceMS     int64         `json:"grace_ms"`    // how long a resume is possible after a drop
	Endpoints   []Endpoint    `json:"endpoints"`   // in order of preference
	Roster      []RosterEntry `json:"roster"`      // the other participants

	// MediaProtection is ProtectionStandard or ProtectionE2EE.
	MediaProtection string `json:"media_protection"`
	// RTCPSecret is 64 hex digits, the participant's RTCP secret (SRTCP
	// between client and router), fresh in every joined and resumed. Secret.
	RTCPSecret string `json:"rtcp_secret"`
	// MediaKey is the meeting's current key, Standard mode only. Secret.
	MediaKey *MediaKey `json:"media_key,omitempty"`
	// Identity is this participant's own identity from its join token
	// (E2EE: a client needs its own roster entry to compute the roster hash).
	Identity string `json:"identity,omitempty"`
}

// Type returns "joined".
func (*Joined) Type() string { return TypeJoined }

// Validate checks every field and entry.
func (m *Joined) Validate() error {
	if err := checkString("meeting", m.Meeting, 1, MaxMeetingID); err != nil {
		return err
	}
	if m.Participant == 0 {
		return errors.New(`"participant" must not be 0`)
	}
	if err := checkRole(m.Role); err != nil {
		return err
	}
	if err := checkHex("media_token", m.MediaToken, 16); err != nil {
		return err
	}
	if err := checkHex("resume", m.Resume, credentialSize); err != nil {
		return err
	}
	if m.GraceMS < 0 {
		return errors.New(`"grace_ms" must not be negative`)
	}
	if len(m.Endpoints) > MaxEndpoints {
		return fmt.Errorf(`"endpoints" has more than %d entries`, MaxEndpoints)
	}
	for i := range m.Endpoints {
		if err := m.Endpoints[i].validate(); err != nil {
			return err
		}
	}
	if len(m.Roster) > MaxRoster {
		return fmt.Errorf(`"roster" has more than %d entries`, MaxRoster)
	}
	for i := range m.Roster {
		if err := m.Roster[i].validate(); err != nil {
			return fmt.Errorf("roster: %w", err)
		}
	}
	switch m.MediaProtection {
	case ProtectionStandard:
		if m.MediaKey == nil {
			return errors.New(`"media_key" is required in a standard meeting`)
		}
		if err := m.MediaKey.Validate(); err != nil {
			return fmt.Errorf("media_key: %w", err)
		}
	case ProtectionE2EE:
		if m.MediaKey != nil {
			return errors.New(`"media_key" must not be sent in an e2ee meeting`)
		}
	default:
		return errors.New(`"media_protection" must be "standard" or "e2ee"`)
	}
	if err := checkHex("rtcp_secret", m.RTCPSecret, SecretSize); err != nil {
		return err
	}
	return checkString("identity", m.Identity, 0, MaxName)
}

// Resume asks to take over a participant whose connection dropped, within
// its grace period (client → server, after welcome).
type Resume struct {
	Participant uint64 `json:"participant"`
	Credential  string `json:"credential"` // Joined.Resume
}

// Type returns "resume".
func (*Resume) Type() string { return TypeResume }

// Validate checks a non-zero participant and a 64-hex-digit credential.
func (m *Resume) Validate() error {
	if m.Participant == 0 {
		return errors.New(`"participant" must not be 0`)
	}
	return checkHex("credential", m.Credential, credentialSize)
}

// Resumed answers Resume; its body is that of Joined, with the current
// roster, the same media token and a fresh resume credential.
type Resumed struct{ Joined }

// Type returns "resumed".
func (*Resumed) Type() string { return TypeResumed }

// Publish announces SSRCs the client sends for a kind (client → server).
type Publish struct {
	Kind  Kind     `json:"kind"`
	SSRCs []uint32 `json:"ssrcs"` // 1..MaxSSRCs, non-zero, distinct
}

// Type returns "publish".
func (*Publish) Type() string { return TypePublish }

// Validate checks the kind and SSRC list.
func (m *Publish) Validate() error {
	if err := checkKind(m.Kind); err != nil {
		return err
	}
	return checkSSRCs(m.SSRCs, 1)
}

// Unpublish withdraws SSRCs of a kind; an empty list withdraws all of that
// kind (client → server).
type Unpublish struct {
	Kind  Kind     `json:"kind"`
	SSRCs []uint32 `json:"ssrcs,omitempty"`
}

// Type returns "unpublish".
func (*Unpublish) Type() string { return TypeUnpublish }

// Validate checks the kind and SSRC list.
func (m *Unpublish) Validate() error {
	if err := checkKind(m.Kind); err != nil {
		return err
	}
	return checkSSRCs(m.SSRCs, 0)
}

// Subscribe sets which publishers' media of a kind the client receives:
// exactly those listed, or every other participant when the list is empty
// (the state after join). It replaces the previous choice (client → server).
type Subscribe struct {
	Kind       Kind     `json:"kind"`
	Publishers []uint64 `json:"publishers,omitempty"`
}

// Type returns "subscribe".
func (*Subscribe) Type() string { return TypeSubscribe }

// Validate checks the kind and publisher list.
func (m *Subscribe) Validate() error {
	if err := checkKind(m.Kind); err != nil {
		return err
	}
	if len(m.Publishers) > MaxPublishers {
		return fmt.Errorf(`"publishers" has more than %d entries`, MaxPublishers)
	}
	for _, p := range m.Publishers {
		if p == 0 {
			return errors.New(`publisher 0 is not allowed`)
		}
	}
	return nil
}

// Unsubscribe stops receiving a kind from anyone (client → server).
type Unsubscribe struct {
	Kind Kind `json:"kind"`
}

// Type returns "unsubscribe".
func (*Unsubscribe) Type() string { return TypeUnsubscribe }

// Validate checks the kind.
func (m *Unsubscribe) Validate() error { return checkKind(m.Kind) }

// Ping asks for a Pong with the same message ID (either direction). The
// server pings every welcome.ping_interval_ms to measure the RTT.
type Ping struct{}

// Type returns "ping".
func (*Ping) Type() string { return TypePing }

// Validate accepts any ping.
func (*Ping) Validate() error { return nil }

// Pong answers Ping with its message ID. From the server it carries the
// connection's round-trip time as the server last measured it (0 before the
// first measurement); clients send it empty.
type Pong struct {
	RTTMicros int64 `json:"rtt_us,omitempty"`
}

// Type returns "pong".
func (*Pong) Type() string { return TypePong }

// Validate checks the RTT is not negative.
func (m *Pong) Validate() error {
	if m.RTTMicros < 0 {
		return errors.New(`"rtt_us" must not be negative`)
	}
	return nil
}

// Leave removes the client from the meeting at once (no grace period); the
// server answers ok and closes the connection (client → server).
type Leave struct{}

// Type returns "leave".
func (*Leave) Type() string { return TypeLeave }

// Validate accepts any leave.
func (*Leave) Validate() error { return nil }

// EndMeeting ends the meeting for everyone (client with role host →
// server).
type EndMeeting struct{}

// Type returns "end-meeting".
func (*EndMeeting) Type() string { return TypeEndMeeting }

// Validate accepts any end-meeting.
func (*EndMeeting) Validate() error { return nil }

// OK answers a request that succeeded and has no other answer.
type OK struct{}

// Type returns "ok".
func (*OK) Type() string { return TypeOK }

// Validate accepts any ok.
func (*OK) Validate() error { return nil }

// ParticipantJoined tells the meeting about a new participant.
type ParticipantJoined struct {
	Participant RosterEntry `json:"participant"`
}

// Type returns "participant-joined".
func (*ParticipantJoined) Type() string { return TypeParticipantJoined }

// Validate checks the roster entry.
func (m *ParticipantJoined) Validate() error { return m.Participant.validate() }

// ParticipantLeft tells the meeting a participant is gone.
type ParticipantLeft struct {
	Participant uint64 `json:"participant"`
	Reason      string `json:"reason,omitempty"` // ReasonLeft, ReasonTimeout, ...
}

// Type returns "participant-left".
func (*ParticipantLeft) Type() string { return TypeParticipantLeft }

// Validate checks a non-zero participant.
func (m *ParticipantLeft) Validate() error {
	if m.Participant == 0 {
		return errors.New(`"participant" must not be 0`)
	}
	return checkString("reason", m.Reason, 0, maxCodeLen)
}

// StreamAdded tells the meeting a participant publishes new SSRCs.
type StreamAdded struct {
	Participant uint64   `json:"participant"`
	Kind        Kind     `json:"kind"`
	SSRCs       []uint32 `json:"ssrcs"`
}

// Type returns "stream-added".
func (*StreamAdded) Type() string { return TypeStreamAdded }

// Validate checks participant, kind and SSRCs.
func (m *StreamAdded) Validate() error { return checkStreamEvent(m.Participant, m.Kind, m.SSRCs) }

// StreamRemoved tells the meeting a participant no longer publishes SSRCs.
type StreamRemoved struct {
	Participant uint64   `json:"participant"`
	Kind        Kind     `json:"kind"`
	SSRCs       []uint32 `json:"ssrcs"`
}

// Type returns "stream-removed".
func (*StreamRemoved) Type() string { return TypeStreamRemoved }

// Validate checks participant, kind and SSRCs.
func (m *StreamRemoved) Validate() error { return checkStreamEvent(m.Participant, m.Kind, m.SSRCs) }

func checkStreamEvent(p uint64, k Kind, ssrcs []uint32) error {
	if p == 0 {
		return errors.New(`"participant" must not be 0`)
	}
	if err := checkKind(k); err != nil {
		return err
	}
	return checkSSRCs(ssrcs, 1)
}

// MeetingEnded tells every participant the meeting is over; the server
// closes the connection after it.
type MeetingEnded struct {
	Reason string `json:"reason"`       // ReasonEnded
	By     uint64 `json:"by,omitempty"` // the host who ended it
}

// Type returns "meeting-ended".
func (*MeetingEnded) Type() string { return TypeMeetingEnded }

// Validate checks the reason is bounded.
func (m *MeetingEnded) Validate() error { return checkString("reason", m.Reason, 0, maxCodeLen) }
