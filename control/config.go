package control

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/control/token"
)

// DefaultAddr is the address the control listener binds by default: TLS on
// port 443, the one port every client network lets out.
const DefaultAddr = ":443"

// Defaults of Config, each explained beside it.
const (
	// DefaultGrace keeps a participant whose connection dropped for 10 s: long
	// enough for a Wi-Fi to LTE handover or a NAT rebinding plus a new TLS
	// handshake, short enough that the others do not watch a frozen tile
	// for long.
	DefaultGrace = 10 * time.Second
	// DefaultHandshakeTimeout bounds the TLS handshake plus hello and
	// join (or resume): 10 s covers a handshake over a 1 s RTT path with
	// retransmissions; a client that has not joined by then is dropped.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a joined connection that sent nothing
	// (not even a pong) for 30 s: three missed server pings.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds one write to a client; a client that does
	// not read for that long is disconnected (and may resume).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxConnsPerIP bounds connections per source address: 256 lets a
	// whole office behind one NAT join while stopping one host from
	// exhausting file descriptors.
	DefaultMaxConnsPerIP = 256
	// DefaultMaxConns bounds all connections, joined or not: 10,000 TLS
	// connections use about 300 MB at the measured ~30 KiB each.
	DefaultMaxConns = 10_000
	// DefaultMaxParticipants per meeting, hosts and participants (viewers
	// have MaxViewers); the roster of a
	// full meeting (~700 bytes per entry) still fits well within
	// proto.ClientMaxFrame.
	DefaultMaxParticipants = 1_000
	// DefaultMaxViewers per meeting (webinar attendees, token.Viewer),
	// counted apart from MaxParticipants: a viewer is listed to the hosts
	// and participants only, so a webinar of 10,000 costs O(n) to fill.
	DefaultMaxViewers = 10_000
	// DefaultMaxMeetings per server.
	DefaultMaxMeetings = 1_000
	// DefaultSendQueue frames may wait for one slow client before it is
	// disconnected: a whole meeting joining at once sends each member one
	// event per joiner, so this is above DefaultMaxParticipants/4 with room.
	DefaultSendQueue = 512
	// DefaultRequestRate and DefaultRequestBurst bound the messages one
	// connection may send: a join (hello, join, three publishes and a few
	// subscribes) or a client resynchronising many subscriptions fits in
	// the burst of 200; 50 per second sustained is far above what a client
	// following a meeting sends (a pong every ping interval, an occasional
	// subscription change) and far below what a flood costs the router in
	// route rebuilds.
	DefaultRequestRate  = 50
	DefaultRequestBurst = 200
)

// Config configures a Server. Zero fields take the default documented beside
// them; New validates the result and keeps its own copy. TLS (or
// CertFile/KeyFile) and Secret are required.
type Config struct {
	// Addr is where Start and ListenAndServe listen. Default DefaultAddr.
	Addr string
	// TLS is the server TLS configuration (Certificates or GetCertificate
	// set). It is cloned; MinVersion is raised to TLS 1.2 if lower. Leave
	// nil to load CertFile and KeyFile instead.
	TLS *tls.Config
	// CertFile and KeyFile are PEM files of the certificate chain and key,
	// used when TLS is nil.
	CertFile, KeyFile string
	// Secret verifies join tokens; PreviousSecrets are still accepted while
	// secrets rotate. Each at least token.MinSecret bytes.
	Secret          []byte
	PreviousSecrets [][]byte
	// Grace is how long a participant whose connection dropped stays in its
	// meeting waiting for a resume. Default DefaultGrace; negative disables
	// the grace period (a drop is a leave).
	Grace time.Duration
	// HandshakeTimeout bounds TLS handshake + hello + join. Default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a joined connection silent for that long. Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// PingInterval is how often the server pings each joined client to
	// measure the RTT and keep the connection busy. Default IdleTimeout/3.
	PingInterval time.Duration
	// WriteTimeout bounds each write to a client. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxFrame is the largest frame payload accepted from a client. Default
	// proto.DefaultMaxFrame.
	MaxFrame int
	// MaxConnsPerIP, MaxConns, MaxParticipants (per meeting) and
	// MaxMeetings: defaults DefaultMaxConnsPerIP, DefaultMaxConns,
	// DefaultMaxParticipants, DefaultMaxMeetings.
	MaxConnsPerIP   int
	MaxConns        int
	MaxParticipants int
	MaxMeetings     int
	// MaxViewers per meeting (webinar attendees). Default DefaultMaxViewers.
	MaxViewers int
	// SendQueue is the most frames queued for one client. Default
	// DefaultSendQueue.
	SendQueue int
	// RequestRate (messages per second) and RequestBurst bound what one
	// connection may send, as a token bucket: a message over the limit is
	// refused with a non-fatal rate-limited error, and a client that sends
	// RequestBurst more while refused is disconnected. Defaults
	// DefaultRequestRate and DefaultRequestBurst.
	RequestRate  int
	RequestBurst int
	// Endpoints are the media endpoints advertised in joined, in order of
	// preference (see UDPEndpoints). An unspecified address (0.0.0.0, ::) is
	// replaced per connection by the local address the client reached the
	// control listener on, or left out when the families differ.
	Endpoints []proto.Endpoint
	// Logger receives connection and meeting lifecycle logs. Default
	// slog.Default().
	Logger *slog.Logger
	// Observe, when set, is told each join's latency on the server (from
	// the server taking the connection, after the edge's TLS handshake or
	// before its own, to the joined answer) and each control
	// channel RTT measured by the server's pings. It is called on
	// connection goroutines, never on the media path: it must be fast and
	// safe for concurrent use (a Prometheus histogram is).
	Observe Observer

	// rekeyTimer, when set (tests only), replaces time.NewTimer for the
	// Standard-mode re-key delay: it returns the channel that fires and a
	// stop function.
	rekeyTimer func(d time.Duration) (<-chan time.Time, func() bool)
}

// withDefaults fills zero fields and validates.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = c.IdleTimeout / 3
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = proto.DefaultMaxFrame
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxViewers == 0 {
		c.MaxViewers = DefaultMaxViewers
	}
	if c.MaxParticipants == 0 {
		c.MaxParticipants = DefaultMaxParticipants
	}
	if c.MaxMeetings == 0 {
		c.MaxMeetings = DefaultMaxMeetings
	}
	if c.SendQueue == 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.RequestRate == 0 {
		c.RequestRate = DefaultRequestRate
	}
	if c.RequestBurst == 0 {
		c.RequestBurst = DefaultRequestBurst
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.rekeyTimer == nil {
		c.rekeyTimer = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if c.TLS == nil && (c.CertFile == "" || c.KeyFile == "") {
		errs = append(errs, errors.New("control: no certificate: set TLS or CertFile and KeyFile"))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		errs = append(errs, errors.New("control: TLS config has no certificate"))
	}
	for _, s := range append([][]byte{c.Secret}, c.PreviousSecrets...) {
		if len(s) < token.MinSecret {
			errs = append(errs, fmt.Errorf("control: join token secrets must be at least %d bytes", token.MinSecret))
			break
		}
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"HandshakeTimeout", c.HandshakeTimeout}, {"IdleTimeout", c.IdleTimeout},
		{"PingInterval", c.PingInterval}, {"WriteTimeout", c.WriteTimeout},
	}
	for _, p := range positive {
		if p.d < 0 {
			errs = append(errs, fmt.Errorf("control: %s must be positive", p.name))
		}
	}
	if c.PingInterval >= c.IdleTimeout {
		errs = append(errs, fmt.Errorf("control: PingInterval %v must be below IdleTimeout %v", c.PingInterval, c.IdleTimeout))
	}
	if c.MaxFrame < 1024 || c.MaxFrame > proto.ClientMaxFrame {
		errs = append(errs, fmt.Errorf("control: MaxFrame %d out of range 1024..%d", c.MaxFrame, proto.ClientMaxFrame))
	}
	limits := []struct {
		name string
		v    int
	}{
		{"MaxConnsPerIP", c.MaxConnsPerIP}, {"MaxConns", c.MaxConns},
		{"MaxParticipants", c.MaxParticipants}, {"MaxMeetings", c.MaxMeetings}, {"SendQueue", c.SendQueue},
		{"RequestRate", c.RequestRate}, {"RequestBurst", c.RequestBurst},
	}
	for _, l := range limits {
		if l.v < 1 {
			errs = append(errs, fmt.Errorf("control: %s must be at least 1", l.name))
		}
	}
	if c.MaxParticipants+c.MaxViewers > proto.MaxRoster || c.MaxViewers < 0 {
		errs = append(errs, fmt.Errorf("control: MaxParticipants+MaxViewers above %d, or MaxViewers negative", proto.MaxRoster))
	}
	if len(c.Endpoints) > proto.MaxEndpoints {
		errs = append(errs, fmt.Errorf("control: more than %d endpoints", proto.MaxEndpoints))
	}
	for _, e := range c.Endpoints {
		j := proto.Joined{Meeting: "m", Participant: 1, Role: proto.RoleHost, MediaToken: zeroHex16, Resume: zeroHex32, Endpoints: []proto.Endpoint{e},
			MediaProtection: proto.ProtectionE2EE, RTCPSecret: zeroHex32}
		if err := j.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("control: endpoint %+v: %w", e, err))
		}
	}
	return errors.Join(errs...)
}

const (
	zeroHex16 = "00000000000000000000000000000000"
	zeroHex32 = zeroHex16 + zeroHex16
)

// Observer receives the control channel's latency samples (Config.Observe).
type Observer interface {
	JoinLatency(time.Duration)
	ControlRTT(time.Duration)
}
