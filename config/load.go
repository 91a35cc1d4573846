package config

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// MaxFileSize is the largest configuration file Load reads (1 MiB: far
// beyond any real site, small enough that a wrong path to a big file fails
// fast).
const MaxFileSize = 1 << 20

// Load reads, decodes and validates the file at path over Default().
func Load(path string) (File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	if st.Size() > MaxFileSize {
		return File{}, fmt.Errorf("config: %s: larger than %d bytes", path, MaxFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes TOML text over Default() and validates the result. Unknown
// keys are an error naming the key and its line.
func Parse(text []byte) (File, error) {
	if len(text) > MaxFileSize {
		return File{}, fmt.Errorf("config: larger than %d bytes", MaxFileSize)
	}
	f := Default()
	md, err := toml.Decode(string(text), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return File{}, fmt.Errorf("config: line %d: %s", pe.Position.Line, pe.Message)
		}
		return File{}, fmt.Errorf("config: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return File{}, fmt.Errorf("config: line %d: unknown key %q", keyLine(string(text), k), k.String())
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

// keyLine finds the line of key k in text (the TOML decoder does not
// export key positions): the first line that defines k's last part inside
// the table named by its other parts, or that opens table k itself. 0 when
// not found (dotted or inline keys).
func keyLine(text string, k toml.Key) int {
	table, last := strings.Join(k[:len(k)-1], "."), k[len(k)-1]
	cur := ""
	for i, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") {
			name := strings.Trim(strings.SplitN(l, "#", 2)[0], "[] \t")
			if name == k.String() {
				return i + 1
			}
			cur = name
			continue
		}
		if cur != table {
			continue
		}
		if eq := strings.IndexByte(l, '='); eq > 0 && strings.Trim(strings.TrimSpace(l[:eq]), `"'`) == last {
			return i + 1
		}
	}
	return 0
}

// Validate checks every field; the error lists every problem found. It
// also reads CA files into CAPEM (a running service never rereads them)
// and lower-cases fingerprints.
func (f *File) Validate() error {

	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("config: "+format, a...)) }
	w := &f.Web
	if w.DB != "" && !strings.HasPrefix(w.DB, "sqlite:") && !strings.HasPrefix(w.DB, "postgres://") && !strings.HasPrefix(w.DB, "postgresql://") {
		bad("web.db %q: want sqlite:PATH or postgres://...", w.DB)
	}
	if (w.CertFile == "") != (w.KeyFile == "") {
		bad("web.cert_file and web.key_file go together")
	}
	if w.WebClientURL != "" {
		if u, err := url.Parse(w.WebClientURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("web.web_client_url %q: want an http(s) URL", w.WebClientURL)
		}
	}
	for name, d := range map[string]Duration{"token_ttl": w.TokenTTL, "geoip_poll": w.GeoIPPoll,
		"zone_check_interval": w.ZoneCheckInterval, "zone_check_timeout": w.ZoneCheckTimeout,
		"limits.meeting_window": w.Limits.MeetingWindow, "limits.meeting_lockout": w.Limits.MeetingLockout,
		"limits.meeting_lockout_max": w.Limits.MeetingLockoutMax, "limits.source_window": w.Limits.SourceWindow,
		"limits.source_lockout": w.Limits.SourceLockout, "limits.source_lockout_max": w.Limits.SourceLockoutMax} {
		if d <= 0 {
			bad("web.%s must be positive", name)
		}
	}
	l := &w.Limits
	if l.MeetingFailures < 1 || l.SourceFailures < 1 || l.LookupBurst < 1 || l.LookupRate <= 0 {
		bad("web.limits: failures, lookup_rate and lookup_burst must be positive")
	}
	if l.MeetingLockoutMax < l.MeetingLockout || l.SourceLockoutMax < l.SourceLockout {
		bad("web.limits: a lockout maximum is below its first lockout")
	}
	for _, p := range w.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad("web.trusted_proxies: %v", err)
		}
	}
	names := map[string]bool{}
	for i, z := range f.Zones {
		switch {
		case z.Name == "":
			bad("zones[%d]: name required", i)
		case names[z.Name]:
			bad("zones[%d]: duplicate name %q", i, z.Name)
		}
		names[z.Name] = true
		if z.Latitude < -90 || z.Latitude > 90 || z.Longitude < -180 || z.Longitude > 180 {
			bad("zone %q: latitude/longitude out of range", z.Name)
		}
		if len(z.ZCs) == 0 {
			bad("zone %q: at least one [[zones.zcs]] required", z.Name)
		}
		for j := range z.ZCs {
			if err := z.ZCs[j].validate(); err != nil {
				bad("zone %q: %v", z.Name, err)
			}
		}
	}
	for _, n := range w.DefaultOrder {
		if !names[n] {
			bad("web.default_order: no zone %q", n)
		}
	}
	for cc, list := range w.CountryOverrides {
		if len(cc) != 2 || strings.ToUpper(cc) != cc {
			bad("web.country_overrides: %q is not an upper-case ISO 3166-1 alpha-2 code", cc)
		}
		for _, n := range list {
			if !names[n] {
				bad("web.country_overrides.%s: no zone %q", cc, n)
			}
		}
	}
	for i, t := range f.Tunnels {
		if u, err := url.Parse(t.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			bad("tunnels[%d]: url %q: want https://", i, t.URL)
		}
	}
	return errors.Join(errs...)
}

func (c *ZC) validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("zc addr %q: %w", c.Addr, err)
	}
	n := 0
	for _, v := range []string{c.Fingerprint, c.CAFile, c.CAPEM} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("zc %s: give exactly one of fingerprint, ca_file, ca_pem", c.Addr)
	}
	if c.Fingerprint != "" {
		c.Fingerprint = strings.ToLower(c.Fingerprint)
		if b, err := hex.DecodeString(c.Fingerprint); err != nil || len(b) != 32 {
			return fmt.Errorf("zc %s: fingerprint must be 64 hex digits (SHA-256)", c.Addr)
		}
	}
	if c.CAFile != "" {
		st, err := os.Stat(c.CAFile)
		if err != nil {
			return fmt.Errorf("zc %s: %w", c.Addr, err)
		}
		if !st.Mode().IsRegular() || st.Size() > MaxFileSize {
			return fmt.Errorf("zc %s: ca_file %s: not a regular file of at most %d bytes", c.Addr, c.CAFile, MaxFileSize)
		}
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("zc %s: %w", c.Addr, err)
		}
		c.CAPEM, c.CAFile = string(b), ""
	}
	if c.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(c.CAPEM)) {
		return fmt.Errorf("zc %s: no certificate in the CA PEM", c.Addr)
	}
	return nil
}

// ParsePrefix parses a CIDR prefix or a single address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
