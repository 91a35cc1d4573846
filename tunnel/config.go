package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/openmmr/mmr/control/token"
)

// Resolver resolves a destination host name. *net.Resolver implements it;
// tests inject names that resolve to addresses of their choice.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Server. The zero value of every field but Secret and
// Zones means its default; Validate fills them in. A Config is copied by
// NewServer.
type Config struct {
	// Name is the server's name in ping answers and logs.
	Name string
	// Secret is the join-token secret (control/token), at least
	// token.MinSecret bytes; Previous are older secrets still accepted
	// while secrets rotate.
	Secret   []byte
	Previous [][]byte

	// Zones are the "host:port" destinations streams may reach: the zones'
	// ZCs, MMR control/TLS-media and TCP-media addresses. Names are
	// resolved at start and every Refresh; the allow-list holds the
	// resulting IP:port pairs and a destination is checked after it is
	// resolved, so a name that later resolves elsewhere (DNS rebinding)
	// does not widen it. Required (a tunnel server that serves no zone
	// relays nothing).
	Zones []string
	// Refresh is how often zone names are resolved again. Default 1 min.
	Refresh time.Duration
	// Placer, when set, widens the allow-list per stream: a destination
	// not in Zones is allowed when it is an endpoint of the placement of
	// the token's meeting (ZCPlacer asks the zone's ZCs; results cached
	// 10 s, failures 2 s). So the MMR addresses need not be configured,
	// and a client reaches only its own meeting's MMR. Default: none.
	Placer Placer
	// Resolver resolves zone names and destinations. Default
	// net.DefaultResolver.
	Resolver Resolver

	// MaxConns caps open TCP connections (idle, pinging or tunnelling);
	// beyond it a new connection is closed at once. Default 10,000, the
	// control channel's: each costs a descriptor, a goroutine and up to
	// ~70 KiB of TLS and relay buffers, so 10,000 stay under 1 GiB.
	MaxConns int
	// MaxStreams caps tunnelled streams in total. Default 8,000.
	MaxStreams int
	// StreamsPerClient caps streams per token identity (meeting +
	// identity). Default 16: a client uses 3-4 (ZC, control, TLS media)
	// and a few more while it resumes through a new tunnel.
	StreamsPerClient int
	// StreamsPerAddr caps streams per source IP. Default 1,024: an office
	// or a proxy puts hundreds of participants behind one address.
	StreamsPerAddr int
	// BytesPerClient is the relay rate per token identity in bytes per
	// second, both directions together, also the bucket size. Default
	// 4 MiB/s (32 Mbit/s): several HD video streams plus screen share.
	// At least 64 KiB.
	BytesPerClient int
	// BytesPerAddr is the same per source IP. Default 64 MiB/s.
	BytesPerAddr int

	// HandshakeTimeout bounds the TLS handshake and the request headers
	// of a new connection, and how long a kept-alive connection may sit
	// idle between requests. Default 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a stream (code 4000) that moved no byte in either
	// direction for this long. Default 60 s: the control channel pings
	// every 10 s and media flows continuously.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a client; a client that does not
	// read for this long is cut off. Default 10 s, the control channel's.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting to a destination. Default 5 s.
	DialTimeout time.Duration

	// Log receives refusals (rate-limited to LogRate per second, burst
	// 10) and lifecycle events. Default: discard.
	Log *slog.Logger
	// LogRate is how many refusals per second are logged. Default 5.
	LogRate float64
	// Now is the clock tokens are checked against and stream idleness is
	// measured with. Default time.Now.
	Now func() time.Time
}

// Validate fills in defaults and checks the fields.
func (c *Config) Validate() error {
	if len(c.Secret) < token.MinSecret {
		return fmt.Errorf("tunnel: join secret must be at least %d bytes", token.MinSecret)
	}
	if len(c.Zones) == 0 {
		return errors.New("tunnel: no zone addresses to serve")
	}
	for _, z := range c.Zones {
		if _, _, err := ParseTarget(z); err != nil {
			return fmt.Errorf("tunnel: zone address %q: %w", z, err)
		}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Name == "" {
		c.Name = "ht"
	}
	defDur(&c.Refresh, time.Minute)
	def(&c.MaxConns, 10000)
	def(&c.MaxStreams, 8000)
	def(&c.StreamsPerClient, 16)
	def(&c.StreamsPerAddr, 1024)
	def(&c.BytesPerClient, 4<<20)
	def(&c.BytesPerAddr, 64<<20)
	defDur(&c.HandshakeTimeout, 10*time.Second)
	defDur(&c.IdleTimeout, 60*time.Second)
	defDur(&c.WriteTimeout, 10*time.Second)
	defDur(&c.DialTimeout, 5*time.Second)
	if c.LogRate == 0 {
		c.LogRate = 5
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxConns", c.MaxConns}, {"MaxStreams", c.MaxStreams}, {"StreamsPerClient", c.StreamsPerClient}, {"StreamsPerAddr", c.StreamsPerAddr}} {
		if f.v < 1 {
			return fmt.Errorf("tunnel: %s must be positive", f.name)
		}
	}
	if c.BytesPerClient < 64<<10 || c.BytesPerAddr < 64<<10 {
		return errors.New("tunnel: byte rates must be at least 64 KiB/s")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Refresh", c.Refresh}, {"HandshakeTimeout", c.HandshakeTimeout}, {"IdleTimeout", c.IdleTimeout}, {"WriteTimeout", c.WriteTimeout}, {"DialTimeout", c.DialTimeout}} {
		if d.v < time.Millisecond {
			return fmt.Errorf("tunnel: %s must be at least 1ms", d.name)
		}
	}
	if c.LogRate < 0 {
		return errors.New("tunnel: LogRate must not be negative")
	}
	return nil
}
