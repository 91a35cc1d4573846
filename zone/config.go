package zone

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/openmmr/mmr/zone/proto"
)

// DefaultPort is the ZC's TLS port: clients reach ZCs on 443 like any HTTPS
// server, which passes the firewalls media ports may not.
const DefaultPort = 443

// Defaults of Config, each explained beside it.
const (
	// DefaultReportInterval is how often MMRs report (the design card's 1 s).
	DefaultReportInterval = time.Second
	// DefaultMissedReports: an MMR that misses this many reports leaves
	// selection (3 × 1 s = out within 3 s of its last report).
	DefaultMissedReports = 3
	// DefaultPlacementTTL is how long a ZC remembers a placement it made for
	// a meeting no MMR reports yet: long enough for the first participant to
	// connect and the MMR's next report to list the meeting, short enough
	// that abandoned lookups do not pin load estimates.
	DefaultPlacementTTL = 30 * time.Second
	// DefaultMaxMMRs bounds the registry (a zone is tens to hundreds of MMRs).
	DefaultMaxMMRs = 1024
	// DefaultMaxPending bounds remembered placements, so a flood of lookups
	// for made-up meetings costs bounded memory (about 100 bytes each).
	DefaultMaxPending = 1 << 16
	// DefaultMaxConns bounds concurrent connections (MMRs and clients).
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerIP bounds concurrent connections from one address;
	// clients behind one NAT share an address, so it is not tiny.
	DefaultMaxConnsPerIP = 64
	// DefaultHandshakeTimeout bounds TLS handshake plus the first frames
	// (and for an MMR the whole registration exchange).
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultIdleTimeout closes a client connection silent this long.
	DefaultIdleTimeout = time.Minute
	// DefaultRegisterRate is registration attempts per second accepted
	// zone-wide (burst: twice that). After a ZC restart every MMR comes back
	// within the agents' 2 s backoff cap; 500/s re-admits a 1000-MMR zone
	// within that window while bounding HMAC and registry work for floods.
	DefaultRegisterRate = 500
	// DefaultLookupRate is lookups per second per client connection (burst:
	// twice that). A client looks up one meeting per join.
	DefaultLookupRate = 10
	// DefaultProbeRate is probes per second per client connection (burst:
	// twice that). The reference test sends 20 probes 50 ms apart (20/s).
	DefaultProbeRate = 50
	// DefaultReportRate is reports per second per MMR connection (burst:
	// twice that). An agent reports once per interval plus on changes, at
	// most every 50 ms (20/s).
	DefaultReportRate = 25
	// writeTimeout bounds every write to a peer.
	writeTimeout = 5 * time.Second
)

// Config configures a Server. Zero fields take the defaults above; New
// validates the result. Config is a plain value; the Server keeps a copy.
type Config struct {
	// ID names this ZC in logs and in Welcome. Default: the host name.
	ID string
	// Listen is the TCP address of the TLS listener. Default [::]:443
	// (dual stack). Use 127.0.0.1:0 in tests and read Server.Addr.
	Listen netip.AddrPort
	// DisableListen starts no listener: connections come only through
	// HandleConn (a TLS port shared with other services by ALPN).
	DisableListen bool
	// Certificate is the ZC's TLS certificate (tlsutil.LoadOrCreate makes
	// one). Required.
	Certificate tls.Certificate
	// Secrets are the accepted zone secrets, each at least
	// proto.MinSecretLen bytes. Several allow rotation: add the new one on
	// every ZC, move the MMRs over, then remove the old. Required.
	Secrets [][]byte
	// ReportInterval is the MMRs' report interval; both ZCs of an HA pair
	// and every agent must use the same. Default DefaultReportInterval.
	ReportInterval time.Duration
	// MissedReports: an MMR is out of selection MissedReports intervals
	// after its last report. Default DefaultMissedReports.
	MissedReports int
	// PlacementTTL: see DefaultPlacementTTL.
	PlacementTTL time.Duration
	// MaxMMRs, MaxPending, MaxConns, MaxConnsPerIP: see the defaults.
	MaxMMRs, MaxPending, MaxConns, MaxConnsPerIP int
	// HandshakeTimeout and IdleTimeout: see the defaults.
	HandshakeTimeout, IdleTimeout time.Duration
	// RegisterRate, LookupRate, ProbeRate, ReportRate: per second, see the
	// defaults.
	RegisterRate, LookupRate, ProbeRate, ReportRate float64
	// Logger receives lifecycle logs (registrations, expiries, refused
	// peers at debug). Default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.ID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "zc"
		}
		c.ID = h
	}
	if err := proto.CheckID("ID", c.ID); err != nil {
		return c, err
	}
	if !c.Listen.IsValid() && !c.DisableListen {
		c.Listen = netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultPort)
	}
	if len(c.Certificate.Certificate) == 0 {
		return c, errors.New("zone: Config.Certificate is required")
	}
	if len(c.Secrets) == 0 {
		return c, errors.New("zone: Config.Secrets needs at least one zone secret")
	}
	for _, s := range c.Secrets {
		if err := proto.CheckSecret(s); err != nil {
			return c, err
		}
	}
	c.ReportInterval = orDur(c.ReportInterval, DefaultReportInterval)
	if c.ReportInterval > proto.MaxIntervalMS*time.Millisecond || c.ReportInterval < time.Millisecond {
		return c, fmt.Errorf("zone: ReportInterval %v outside 1ms..%v", c.ReportInterval, proto.MaxIntervalMS*time.Millisecond)
	}
	c.MissedReports = orInt(c.MissedReports, DefaultMissedReports)
	c.PlacementTTL = orDur(c.PlacementTTL, DefaultPlacementTTL)
	c.MaxMMRs = orInt(c.MaxMMRs, DefaultMaxMMRs)
	c.MaxPending = orInt(c.MaxPending, DefaultMaxPending)
	c.MaxConns = orInt(c.MaxConns, DefaultMaxConns)
	c.MaxConnsPerIP = orInt(c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	c.HandshakeTimeout = orDur(c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.IdleTimeout = orDur(c.IdleTimeout, DefaultIdleTimeout)
	c.RegisterRate = orFloat(c.RegisterRate, DefaultRegisterRate)
	c.LookupRate = orFloat(c.LookupRate, DefaultLookupRate)
	c.ProbeRate = orFloat(c.ProbeRate, DefaultProbeRate)
	c.ReportRate = orFloat(c.ReportRate, DefaultReportRate)
	for name, v := range map[string]float64{
		"MissedReports": float64(c.MissedReports), "PlacementTTL": float64(c.PlacementTTL),
		"MaxMMRs": float64(c.MaxMMRs), "MaxPending": float64(c.MaxPending), "MaxConns": float64(c.MaxConns),
		"MaxConnsPerIP": float64(c.MaxConnsPerIP), "HandshakeTimeout": float64(c.HandshakeTimeout),
		"IdleTimeout": float64(c.IdleTimeout), "RegisterRate": c.RegisterRate, "LookupRate": c.LookupRate,
		"ProbeRate": c.ProbeRate, "ReportRate": c.ReportRate,
	} {
		if v < 0 {
			return c, fmt.Errorf("zone: Config.%s is negative", name)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

func orDur(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func orInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orFloat(v, d float64) float64 {
	if v == 0 {
		return d
	}
	return v
}
