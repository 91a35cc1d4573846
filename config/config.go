// Package config is openmmr's one configuration format: a TOML file (TOML
// v1.0.0, https://toml.io) with one section per component. The web tier
// reads [web], [[zones]] and [[tunnels]]; the MMR ([mmr]), the zone
// controller ([zc]) and the HTTP tunnel ([tunnel]) add their own sections
// to File as they move to it, so that one file configures a whole site.
//
// Loading is strict: a key the schema does not know is an error naming the
// key and its line, so that a typo never silently leaves a default in
// force. Load fills defaults first (Default), decodes the file over them,
// then runs Validate. The schema is documented field by field below and in
// config/example.toml, which the tests load.
//
// A File is a plain value; it is not safe to modify while another
// goroutine reads it.
package config

import (
	"fmt"
	"time"
)

// File is the whole configuration file.
type File struct {
	// Web is the web tier (cmd/web, and the one-box mmr).
	Web Web `toml:"web"`
	// Zones are the meeting zones clients are sent to, each with its zone
	// controllers. The web tier ranks them per client.
	Zones []Zone `toml:"zones"`
	// Tunnels are the HTTP tunnel servers handed to clients (none yet).
	Tunnels []Tunnel `toml:"tunnels"`
}

// Web configures the web tier.
type Web struct {
	// Listen is the HTTPS address of cmd/web. Default ":443".
	Listen string `toml:"listen"`
	// DB selects the store: "sqlite:PATH" or "postgres://..." (a libpq
	// URL). Default "sqlite:" + StateDir + "/web.db".
	DB string `toml:"db"`
	// StateDir holds the self-signed certificate and join secret when
	// CertFile/JoinSecretFile are unset. Default "" (the command's -state).
	StateDir string `toml:"state_dir"`
	// CertFile and KeyFile are the PEM certificate chain and key of the
	// HTTPS listener; both or neither (neither: a self-signed certificate
	// in StateDir, for development).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// JoinSecretFile holds the join-token secret shared with the MMRs
	// (docs/PROTOCOL.md, "Join tokens"). Default StateDir/join.secret.
	JoinSecretFile string `toml:"join_secret_file"`
	// WebClientURL is the prefix of the web client's meeting URL; the
	// meeting ID is appended. Default "" (the service's own /j/ page).
	WebClientURL string `toml:"web_client_url"`
	// TokenTTL is how long a join token from a lookup stays valid.
	// Default 10m: a client joins within seconds; resuming after a drop
	// uses the control channel's resume credential, not the token.
	TokenTTL Duration `toml:"token_ttl"`
	// GeoIPDB is a MaxMind-format database (GeoLite2-City or -Country).
	// Empty: every client gets DefaultOrder.
	GeoIPDB string `toml:"geoip_db"`
	// GeoIPPoll is how often the database file is checked for a
	// replacement (size, mtime, inode). Default 30s.
	GeoIPPoll Duration `toml:"geoip_poll"`
	// DefaultOrder ranks zones for clients without a location (private,
	// loopback or unknown addresses): zone names, best first; zones not
	// named follow in file order. Default: file order.
	DefaultOrder []string `toml:"default_order"`
	// CountryOverrides maps an ISO 3166-1 alpha-2 country code to zone
	// names ranked first, in that order, for clients located there.
	CountryOverrides map[string][]string `toml:"country_overrides"`
	// TrustedProxies are the address ranges (CIDR, or single addresses)
	// whose Forwarded / X-Forwarded-For / Via headers are believed.
	TrustedProxies []string `toml:"trusted_proxies"`
	// ZoneCheckInterval is the period of the background ZC health check.
	// Default 10s.
	ZoneCheckInterval Duration `toml:"zone_check_interval"`
	// ZoneCheckTimeout bounds one ZC check (TLS dial and probe). Default 3s.
	ZoneCheckTimeout Duration `toml:"zone_check_timeout"`
	// Limits are the brute-force and flood limits.
	Limits Limits `toml:"limits"`
}

// Limits are the lookup limits. The arithmetic behind the defaults is in
// the web package's documentation (web.Limits).
type Limits struct {
	MeetingFailures   int      `toml:"meeting_failures"`    // wrong passcodes per meeting per window before a lockout; default 10
	MeetingWindow     Duration `toml:"meeting_window"`      // default 15m
	MeetingLockout    Duration `toml:"meeting_lockout"`     // first lockout; doubles per further lockout; default 15m
	MeetingLockoutMax Duration `toml:"meeting_lockout_max"` // default 24h
	SourceFailures    int      `toml:"source_failures"`     // failed lookups per source address per window; default 20
	SourceWindow      Duration `toml:"source_window"`       // default 15m
	SourceLockout     Duration `toml:"source_lockout"`      // first lockout; doubles per further lockout; default 1m
	SourceLockoutMax  Duration `toml:"source_lockout_max"`  // default 24h
	LookupRate        float64  `toml:"lookup_rate"`         // lookups per second per source address per web node; default 2
	LookupBurst       int      `toml:"lookup_burst"`        // default 20
}

// Zone is one meeting zone.
type Zone struct {
	// Name identifies the zone (lookup answers, overrides). Required, unique.
	Name string `toml:"name"`
	// Latitude and Longitude locate the zone (degrees, WGS 84).
	Latitude  float64 `toml:"latitude"`
	Longitude float64 `toml:"longitude"`
	// Countries (ISO 3166-1 alpha-2) and Continents (MaxMind codes: AF,
	// AN, AS, EU, NA, OC, SA) the zone serves first: clients located there
	// rank it before zones that are merely closer.
	Countries  []string `toml:"countries"`
	Continents []string `toml:"continents"`
	// ZCs are the zone's zone controllers; at least one.
	ZCs []ZC `toml:"zcs"`
}

// ZC is one zone controller and how clients verify it: exactly one of
// Fingerprint, CAFile or CAPEM.
type ZC struct {
	// Addr is "host:port" (IPv6 in brackets).
	Addr string `toml:"addr"`
	// Fingerprint is the SHA-256 of the certificate's DER, hex.
	Fingerprint string `toml:"fingerprint"`
	// CAFile is a PEM file of roots; CAPEM the PEM itself.
	CAFile string `toml:"ca_file"`
	CAPEM  string `toml:"ca_pem"`
	// ServerName is the name to verify with a CA (default: Addr's host).
	ServerName string `toml:"server_name"`
}

// Tunnel is one HTTP tunnel server.
type Tunnel struct {
	URL         string `toml:"url"`
	Fingerprint string `toml:"fingerprint"`
}

// Duration is a time.Duration written as a Go duration string ("15m").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText prints the duration as time.Duration does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns a File with every default filled in.
func Default() File {
	return File{Web: Web{
		Listen:            ":443",
		TokenTTL:          Duration(10 * time.Minute),
		GeoIPPoll:         Duration(30 * time.Second),
		ZoneCheckInterval: Duration(10 * time.Second),
		ZoneCheckTimeout:  Duration(3 * time.Second),
		Limits:            DefaultLimits(),
	}}
}

// DefaultLimits are the default lookup limits.
func DefaultLimits() Limits {
	return Limits{
		MeetingFailures: 10, MeetingWindow: Duration(15 * time.Minute),
		MeetingLockout: Duration(15 * time.Minute), MeetingLockoutMax: Duration(24 * time.Hour),
		SourceFailures: 20, SourceWindow: Duration(15 * time.Minute),
		SourceLockout: Duration(time.Minute), SourceLockoutMax: Duration(24 * time.Hour),
		LookupRate: 2, LookupBurst: 20,
	}
}
