package connect

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/media"
)

// Transports a media kind can use, in fallback order.
const (
	UDP = "udp" // UDP 8801
	TCP = "tcp" // TCP 8801, RFC 4571 framing
	TLS = "tls" // TLS 443, ALPN openmmr-media/1
)

// Defaults (docs/PROTOCOL.md, "Client connection process").
const (
	// DefaultLookupTimeout bounds the web tier lookup (TCP, TLS, HTTP).
	DefaultLookupTimeout = 10 * time.Second
	// DefaultZoneTimeout: no ZC completing its TLS handshake within this
	// long sends the client to the tunnel step (5.5 s: a TCP connect that
	// lost its SYN retries after 1 s and 3 s, so two retransmissions fit).
	DefaultZoneTimeout = 5500 * time.Millisecond
	// DefaultProbes and DefaultProbeInterval: 10 probes 50 ms apart sample
	// half a second of the path per zone, all zones at once.
	DefaultProbes        = 10
	DefaultProbeInterval = 50 * time.Millisecond
	// DefaultProbeTimeout bounds one zone's probe series after its
	// handshake.
	DefaultProbeTimeout = 3 * time.Second
	// DefaultScoreTie: zones whose scores differ by less than this are
	// tied, and the web tier's order decides (its ranking knows about
	// geography and operators' overrides; a few ms of RTT do not).
	DefaultScoreTie = 5 * time.Millisecond
	// DefaultTunnelTimeout bounds the ping of the tunnel servers (TCP,
	// proxy CONNECT, TLS, one authenticated request).
	DefaultTunnelTimeout = 5 * time.Second
	// DefaultMMRTimeout bounds the ZC lookup of the meeting's MMR.
	DefaultMMRTimeout = 5 * time.Second
	// DefaultControlTimeout bounds control channel dial, hello and join.
	DefaultControlTimeout = 10 * time.Second
	// DefaultUDPGiveUp: UDP binds (sent at 0, 100, 300 and 700 ms) without
	// answer for this long mean UDP does not get through.
	DefaultUDPGiveUp = time.Second
	// DefaultTCPTimeout bounds TCP 8801 connect + bind: a firewall that
	// drops SYNs is given up after it.
	DefaultTCPTimeout = 2 * time.Second
	// DefaultTLSTimeout bounds TLS 443 connect, handshake and bind
	// (through a proxy too).
	DefaultTLSTimeout = 5 * time.Second
	// DefaultUDPRetry is how often a kind that gave up UDP tries it again
	// in the background.
	DefaultUDPRetry = 5 * time.Second
	// DefaultKeepalive is the keepalive interval of every media flow
	// (docs/PROTOCOL.md: at least every 15 s); 3 unanswered in a row and
	// the kind reconnects (UDP first).
	DefaultKeepalive = 5 * time.Second
)

// Config configures Connect. Zero fields take the defaults above; only
// Web, WebTLS and MeetingID are required. It is a plain value;
// Connect keeps its own copy.
type Config struct {
	// Web is the web tier's base URL, e.g. "https://web.example" or
	// "https://127.0.0.1:8443".
	Web string
	// WebTLS verifies the web tier: tlsutil.PinnedClientConfig(fp), or a
	// config with RootCAs. Required.
	WebTLS *tls.Config
	// MeetingID is the meeting's ID; spaces and dashes are stripped, a URL
	// is reduced to its last path segment (NormalizeMeetingID).
	MeetingID string
	// Passcode, Name (default "openmmr"), HostKey and PanelistKey go into
	// the lookup.
	Passcode, Name, HostKey, PanelistKey string

	// Proxy, when set, is an http:// proxy URL every TCP connection goes
	// through (HTTP CONNECT).
	Proxy string
	// NoEnvProxy ignores HTTPS_PROXY/NO_PROXY.
	NoEnvProxy bool
	// Getenv reads the environment (default os.Getenv), at every Connect.
	Getenv func(string) string
	// PAC is the URL (http, https or file) of a proxy auto-config file,
	// consulted when neither Proxy nor HTTPS_PROXY is set.
	PAC string

	// LocalAddr, when valid, is the source address of every connection
	// the client opens itself (web tier, ZCs, control, media, proxies and
	// tunnel servers): a multi-homed host picking its interface. The zero
	// Addr lets the kernel choose.
	LocalAddr netip.Addr

	// Transport forces one media transport for every kind (UDP, TCP or
	// TLS); "" walks the fallback order.
	Transport string
	// Zone forces a zone by name (skipping the performance test's choice,
	// not its checks).
	Zone string
	// Kinds are the media kinds to connect. Default media.Kinds.
	Kinds []media.Kind
	// SSRCs are published per kind after the media flows are up (none for
	// a kind: nothing published; viewers never publish).
	SSRCs map[media.Kind][]uint32
	// OnMedia receives every RTP/RTCP packet that arrives (opened: SRTP
	// and SRTCP checked and decrypted; those that fail are dropped), on the reader
	// goroutine of the kind's current flow; pkt is valid only during the
	// call. Default: dropped.
	OnMedia func(k media.Kind, pkt []byte)
	// OnEvent receives the control channel's events (roster changes).
	OnEvent func(any)
	// Media tunes the media protection (client/secure.Config): OnChange
	// is told the send key and, in E2EE meetings, the security code.
	Media secure.Config

	// Timeouts; see the defaults.
	LookupTimeout, ZoneTimeout, ProbeTimeout, MMRTimeout, ControlTimeout, TunnelTimeout time.Duration
	Probes                                                                              int
	ProbeInterval, ScoreTie                                                             time.Duration
	UDPGiveUp, TCPTimeout, TLSTimeout, UDPRetry, Keepalive                              time.Duration

	// Logger receives the phases at info. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Web == "" {
		return c, errors.New("connect: Config.Web (the web tier URL) is required")
	}
	if c.WebTLS == nil {
		return c, errors.New("connect: Config.WebTLS (pin or CA of the web tier) is required")
	}
	c.MeetingID = NormalizeMeetingID(c.MeetingID)
	if c.MeetingID == "" {
		return c, errors.New("connect: Config.MeetingID is required")
	}
	if c.Name == "" {
		c.Name = "openmmr"
	}
	switch c.Transport {
	case "", UDP, TCP, TLS:
	default:
		return c, fmt.Errorf("connect: Config.Transport %q: want udp, tcp or tls", c.Transport)
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if len(c.Kinds) == 0 {
		c.Kinds = media.Kinds[:]
	}
	for _, k := range c.Kinds {
		if !k.Valid() {
			return c, fmt.Errorf("connect: invalid media kind %d", k)
		}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.LookupTimeout, DefaultLookupTimeout}, {&c.ZoneTimeout, DefaultZoneTimeout}, {&c.ProbeTimeout, DefaultProbeTimeout},
		{&c.MMRTimeout, DefaultMMRTimeout}, {&c.TunnelTimeout, DefaultTunnelTimeout}, {&c.ControlTimeout, DefaultControlTimeout}, {&c.ProbeInterval, DefaultProbeInterval},
		{&c.ScoreTie, DefaultScoreTie}, {&c.UDPGiveUp, DefaultUDPGiveUp}, {&c.TCPTimeout, DefaultTCPTimeout},
		{&c.TLSTimeout, DefaultTLSTimeout}, {&c.UDPRetry, DefaultUDPRetry}, {&c.Keepalive, DefaultKeepalive},
	} {
		if *d.v < 0 {
			return c, errors.New("connect: negative duration in Config")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Probes <= 0 {
		c.Probes = DefaultProbes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
