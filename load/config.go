package load

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/media"
)

// Shapes of a meeting.
const (
	// Conference: everyone may publish; the first Publishers[k] of each
	// meeting publish kind k, the others subscribe only.
	Conference = "conference"
	// Webinar: the first Publishers[k] are panelists; the others join as
	// viewers (direct mode: viewer-role join tokens; through the web tier
	// the role is the lookup's) and never publish.
	Webinar = "webinar"
)

// Defaults of Config.
const (
	// DefaultJoinRate: 50 joins a second keeps the TLS handshakes of the
	// control channel (and, through the connection process, of the lookup
	// and the ZC) within what one core answers.
	DefaultJoinRate = 50
	// DefaultJoinConcurrency bounds the joins in progress at once.
	DefaultJoinConcurrency = 64
	// DefaultWarmup separates the last join from the measurement window:
	// subscriptions settle and the first keyframes pass.
	DefaultWarmup = time.Second
	// DefaultDrain is the longest wait for packets in flight after the
	// senders stop (it ends earlier once nothing arrived for drainQuiet).
	DefaultDrain = 3 * time.Second
	// DefaultKeepalive: every media flow keeps its binding (docs/PROTOCOL.md:
	// at least every 15 s).
	DefaultKeepalive = 5 * time.Second
	// DefaultJoinTimeout bounds one participant's join, all phases.
	DefaultJoinTimeout = 60 * time.Second
)

// DirectConfig joins straight to one MMR's control channel, with join
// tokens the load tool signs itself (it needs the MMR's join-token
// secret), skipping the lookup, the zone and the MMR selection.
type DirectConfig struct {
	// Control is the MMR's control channel address (TLS), host:port.
	Control string
	// TLS verifies the MMR (tlsutil.PinnedClientConfig(fingerprint)).
	TLS *tls.Config
	// JoinSecret signs the join tokens (cmd/mmr: STATE/join.secret).
	JoinSecret []byte
}

// Config configures Run. Zero fields take defaults; Meetings,
// Participants and one of Connect or Direct are required.
type Config struct {
	// Meetings × Participants simulated participants.
	Meetings, Participants int
	// MeetingIDs names the meetings (len Meetings). Default: "load-0001"…
	// (direct mode creates them by joining; through the web tier they must
	// exist there).
	MeetingIDs []string
	// Shape is Conference (default) or Webinar.
	Shape string
	// Publishers per kind and meeting: the first Publishers[k.Index()]
	// participants of each meeting publish kind k.
	Publishers [media.NumKinds]int
	// Kinds every participant connects (and subscribes to). Default audio
	// and video, plus content when a meeting publishes content.
	Kinds []media.Kind

	// Connect is the template of each participant's connection process
	// (Web, WebTLS, Passcode, Proxy, Transport, Zone...): MeetingID, Name,
	// Kinds, SSRCs, OnMedia, Keepalive and Logger are set per participant.
	Connect *connect.Config
	// Direct joins straight to an MMR instead (UDP media only).
	Direct *DirectConfig
	// Transport forces the media transport in the connection process
	// (connect.UDP, TCP, TLS; "" the client's own fallback order). A kind
	// that ends on UDP moves to the load tool's batched sockets; TCP and
	// TLS kinds stay on the connection process's stream.
	Transport string
	// SourceIPs spread the participants' UDP sockets (and, in direct mode,
	// control connections) over these local addresses, e.g. 127.0.0.2…:
	// the MMR limits control connections per source address.
	SourceIPs []netip.Addr

	// JoinRate (joins per second) and JoinConcurrency pace the joins.
	JoinRate        float64
	JoinConcurrency int
	JoinTimeout     time.Duration
	// Warmup, Duration (the measurement window, required) and Drain.
	Warmup, Duration, Drain time.Duration
	// HoldMedia makes publishers wait until every join is done (default:
	// each publishes as soon as it joined, so the router carries media
	// while the others join, as in a real meeting).
	HoldMedia bool
	// DrainQuiet ends the drain once nothing arrived for this long
	// (default 300 ms; on a starved host a router thread may sleep longer).
	DrainQuiet time.Duration
	// Keepalive interval of every UDP flow.
	Keepalive time.Duration
	// Readers and Senders: goroutines of the UDP engine. Default
	// GOMAXPROCS each.
	Readers, Senders int

	// MetricsURL, when set, is the router's /metrics: scraped when the
	// window opens and after the drain, for its counters and CPU.
	MetricsURL string
	// Progress receives a snapshot every ProgressInterval (default 1 s).
	Progress         func(Progress)
	ProgressInterval time.Duration
	// Drained is called after the drain, before anyone leaves, with the
	// finished report (tests compare it with the router's counters then).
	Drained func(*Report)
	// Logger: one line per join, leave, transport fallback and drop burst.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Meetings <= 0 || c.Participants <= 0 {
		return c, errors.New("load: Meetings and Participants must be positive")
	}
	if (c.Connect == nil) == (c.Direct == nil) {
		return c, errors.New("load: set exactly one of Connect (the connection process) and Direct")
	}
	if c.Direct != nil && (c.Direct.Control == "" || c.Direct.TLS == nil || len(c.Direct.JoinSecret) == 0) {
		return c, errors.New("load: Direct needs Control, TLS and JoinSecret")
	}
	if c.Direct != nil && c.Transport != "" && c.Transport != connect.UDP {
		return c, errors.New("load: direct mode carries media over UDP only; use the connection process for tcp/tls")
	}
	if c.Duration <= 0 {
		return c, errors.New("load: Duration must be positive")
	}
	switch c.Shape {
	case "":
		c.Shape = Conference
	case Conference, Webinar:
	default:
		return c, fmt.Errorf("load: shape %q: want conference or webinar", c.Shape)
	}
	if c.MeetingIDs == nil {
		for i := range c.Meetings {
			c.MeetingIDs = append(c.MeetingIDs, fmt.Sprintf("load-%04d", i+1))
		}
	}
	if len(c.MeetingIDs) != c.Meetings {
		return c, fmt.Errorf("load: %d meeting IDs for %d meetings", len(c.MeetingIDs), c.Meetings)
	}
	for k, n := range c.Publishers {
		if n < 0 || n > c.Participants {
			return c, fmt.Errorf("load: %d %s publishers of %d participants", n, media.Kinds[k], c.Participants)
		}
	}
	if len(c.Kinds) == 0 {
		c.Kinds = []media.Kind{media.Audio, media.Video}
		if c.Publishers[media.Content.Index()] > 0 {
			c.Kinds = append(c.Kinds, media.Content)
		}
	}
	for k, n := range c.Publishers {
		if n > 0 && !hasKind(c.Kinds, media.Kinds[k]) {
			return c, fmt.Errorf("load: %s publishers but %s not in Kinds", media.Kinds[k], media.Kinds[k])
		}
	}
	if c.JoinRate <= 0 {
		c.JoinRate = DefaultJoinRate
	}
	if c.JoinConcurrency <= 0 {
		c.JoinConcurrency = DefaultJoinConcurrency
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.JoinTimeout, DefaultJoinTimeout)
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	def(&c.Drain, DefaultDrain)
	def(&c.DrainQuiet, drainQuiet)
	def(&c.Keepalive, DefaultKeepalive)
	def(&c.ProgressInterval, time.Second)
	if c.Readers <= 0 {
		c.Readers = runtime.GOMAXPROCS(0)
	}
	if c.Senders <= 0 {
		c.Senders = runtime.GOMAXPROCS(0)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func hasKind(ks []media.Kind, k media.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
