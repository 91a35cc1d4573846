package zcagent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// Defaults of Config, each explained beside it.
const (
	// DefaultInterval is the report interval of the design card (1 s); it
	// must match the ZCs' ReportInterval.
	DefaultInterval = time.Second
	// DefaultBackoffMin is the first wait before reconnecting to a ZC.
	DefaultBackoffMin = 250 * time.Millisecond
	// DefaultBackoffMax caps the reconnect backoff. Short, because a
	// restarted ZC must see every MMR again within 5 s; a refused connect
	// to a down ZC every 2 s costs next to nothing.
	DefaultBackoffMax = 2 * time.Second
	// DefaultHandshakeTimeout bounds connect, TLS handshake and the
	// Hello/Welcome/Register exchange.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultCPUCap is the CPU fraction at which the MMR declares itself
	// full: past about 85 % a media server's queueing delay grows fast and
	// packet loss follows.
	DefaultCPUCap = 0.85
	// MaxZCs bounds the ZC list (an HA pair is two; a few more allow
	// migrating a zone to new ZCs).
	MaxZCs = 8
	// missedAcks: a ZC that acknowledges no report within this many
	// intervals counts as unreachable (mirrors the ZC's 3 missed reports).
	missedAcks = 3
	// minInterval keeps periodic reports plus Updates (≤ 20/s) under the
	// ZC's default per-MMR report rate (25/s).
	minInterval = 50 * time.Millisecond
	// minUpdateGap spaces reports triggered by Update (at most 20/s, within
	// the ZC's per-MMR report rate).
	minUpdateGap = 50 * time.Millisecond
	// writeTimeout bounds each write to a ZC; byeTimeout the final Bye.
	writeTimeout = 5 * time.Second
	byeTimeout   = time.Second
)

// Config configures an Agent. Zero fields take the defaults above; New
// validates the result. Config is a plain value; the Agent keeps a copy.
type Config struct {
	// ID is the MMR's ID, unique in the zone. Default: the host name.
	ID string
	// ZCs are the zone controllers' addresses ("host:port"), typically an
	// HA pair. Required.
	ZCs []string
	// Secret is the zone secret, the same on every ZC and MMR of the zone
	// (at least proto.MinSecretLen bytes). Required.
	Secret []byte
	// TLS, when set, is used (cloned) to dial the ZCs, e.g.
	// tlsutil.PinnedClientConfig(zcFingerprint) or a CA pool. When nil the
	// ZC's certificate is not checked: the zone-secret proofs, bound to the
	// TLS session, still authenticate the ZC, and a man in the middle cannot
	// complete them; pinning adds defence in depth.
	TLS *tls.Config
	// LocalAddr, when valid, is the source address of connections to ZCs.
	LocalAddr netip.Addr
	// Endpoints are the MMR's public addresses for clients. Required.
	Endpoints proto.Endpoints
	// Capacity is what the MMR can carry; zero dimensions are unlimited
	// except CPU, which defaults to DefaultCPUCap.
	Capacity proto.Capacity
	// Fingerprint is the SHA-256 hex of the MMR's TLS certificate
	// (tlsutil.Fingerprint), passed to clients so they can pin it.
	Fingerprint string
	// Software is free text for operators (version).
	Software string
	// Interval is the report interval. Default DefaultInterval.
	Interval time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff.
	BackoffMin, BackoffMax time.Duration
	// HandshakeTimeout: see DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// CPU, when set, returns the MMR's CPU use as a fraction of the machine
	// (0..1); it is called once per interval from one goroutine. Default:
	// the process's own CPU time (getrusage) over wall time × NumCPU.
	CPU func() float64
	// Logger receives connection logs. Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return c, errors.New("zcagent: Config.ID is required (no host name)")
		}
		c.ID = h
	}
	if err := proto.CheckID("ID", c.ID); err != nil {
		return c, err
	}
	if len(c.ZCs) == 0 || len(c.ZCs) > MaxZCs {
		return c, fmt.Errorf("zcagent: Config.ZCs needs 1..%d addresses", MaxZCs)
	}
	seen := map[string]bool{}
	for _, z := range c.ZCs {
		if _, _, err := net.SplitHostPort(z); err != nil {
			return c, fmt.Errorf("zcagent: ZC address %q: %w", z, err)
		}
		if seen[z] {
			return c, fmt.Errorf("zcagent: ZC address %q listed twice", z)
		}
		seen[z] = true
	}
	if err := proto.CheckSecret(c.Secret); err != nil {
		return c, err
	}
	if c.Capacity.CPU == 0 {
		c.Capacity.CPU = DefaultCPUCap
	}
	reg := proto.Register{Endpoints: c.Endpoints, Capacity: c.Capacity, Fingerprint: c.Fingerprint, Software: c.Software}
	if err := reg.Validate(); err != nil {
		return c, fmt.Errorf("zcagent: %w", err)
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	switch {
	case c.Interval < minInterval || c.Interval > proto.MaxIntervalMS*time.Millisecond:
		return c, fmt.Errorf("zcagent: Interval %v outside %v..1m", c.Interval, minInterval)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return c, errors.New("zcagent: need 0 < BackoffMin <= BackoffMax")
	case c.HandshakeTimeout < 0:
		return c, errors.New("zcagent: HandshakeTimeout is negative")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
