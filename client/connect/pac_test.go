package connect

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
)

func TestPACHelpers(t *testing.T) {
	leaktest.Check(t)
	// Tuesday 2026-12-01 10:30 UTC.
	now := func() time.Time { return time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC) }
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`isPlainHostName("www")`, true},
		{`isPlainHostName("www.example.org")`, false},
		{`dnsDomainIs("www.example.org", ".example.org")`, true},
		{`dnsDomainIs("www.example.com", ".example.org")`, false},
		{`localHostOrDomainIs("www", "www.example.org")`, true},
		{`localHostOrDomainIs("www.example.org", "www.example.org")`, true},
		{`localHostOrDomainIs("www.other.org", "www.example.org")`, false},
		{`isResolvable("10.1.2.3")`, true},
		{`isInNet("10.1.2.3", "10.1.0.0", "255.255.0.0")`, true},
		{`isInNet("10.2.2.3", "10.1.0.0", "255.255.0.0")`, false},
		{`dnsResolve("192.0.2.7") == "192.0.2.7"`, true},
		{`myIpAddress().length > 0`, true},
		{`dnsDomainLevels("a.b.c") == 2`, true},
		{`shExpMatch("https://zc1.ams.example/", "https://*.example/*")`, true},
		{`shExpMatch("http://x", "https://*")`, false},
		{`shExpMatch("a.b", "a?b")`, true},
		{`weekdayRange("MON", "FRI", "GMT")`, true},
		{`weekdayRange("SAT", "SUN", "GMT")`, false},
		{`weekdayRange("TUE", "GMT")`, true},
		{`dateRange("DEC", "GMT")`, true},
		{`dateRange(1, 15, "GMT")`, true},
		{`dateRange(2026, "GMT")`, true},
		{`dateRange(1, "NOV", 30, "NOV", "GMT")`, false},
		{`timeRange(9, 17, "GMT")`, true},
		{`timeRange(10, "GMT")`, true},
		{`timeRange(11, 12, "GMT")`, false},
		{`timeRange(10, 0, 10, 45, "GMT")`, true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := newPAC(`function FindProxyForURL(url, host) { return (`+tc.expr+`) ? "PROXY yes:1" : "DIRECT"; }`, now)
			require.NoError(t, err)
			ans, err := p.find(&url.URL{Scheme: "https", Host: "h:443", Path: "/"})
			require.NoError(t, err)
			require.Equal(t, tc.want, ans == "PROXY yes:1", ans)
		})
	}
}

func TestPACBadScripts(t *testing.T) {
	leaktest.Check(t)
	_, err := newPAC(`syntax error (`, time.Now)
	require.Error(t, err)
	_, err = newPAC(`var x = 1;`, time.Now)
	require.ErrorContains(t, err, "FindProxyForURL")
	_, err = newPAC(`while (true) {}`, time.Now)
	require.ErrorContains(t, err, "timed out")
	p, err := newPAC(`function FindProxyForURL(u, h) { while (true) {} }`, time.Now)
	require.NoError(t, err)
	_, err = p.find(&url.URL{Scheme: "https", Host: "h:443"})
	require.ErrorContains(t, err, "timed out")
	p, err = newPAC(`function FindProxyForURL(u, h) { throw "boom"; }`, time.Now)
	require.NoError(t, err)
	_, err = p.find(&url.URL{Scheme: "https", Host: "h:443"})
	require.ErrorContains(t, err, "boom")
	_, err = newPAC(strings.Repeat(" ", maxPAC+1), time.Now)
	require.Error(t, err)
}

func TestParsePACResult(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"DIRECT", "", false},
		{"PROXY p:3128", "http://p:3128", false},
		{"PROXY p:3128; DIRECT", "http://p:3128", false},
		{"SOCKS s:1080; PROXY p:8080", "http://p:8080", false},
		{"HTTPS h:443; DIRECT", "", false},
		{"  proxy   p:1  ", "http://p:1", false},
		{"PROXY nohostport", "", true},
		{"SOCKS s:1", "", true},
		{"", "", true},
	} {
		u, err := parsePACResult(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		if tc.want == "" {
			require.Nil(t, u, tc.in)
		} else {
			require.Equal(t, tc.want, u.String(), tc.in)
		}
	}
}

func FuzzParsePACResult(f *testing.F) {
	for _, s := range []string{"DIRECT", "PROXY a:1; DIRECT", "SOCKS x:1", ";;", "PROXY [::1]:3128"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parsePACResult(s)
		if err == nil && u != nil && u.Scheme != "http" {
			t.Fatalf("scheme %q", u.Scheme)
		}
	})
}

func FuzzNormalizeMeetingID(f *testing.F) {
	for _, s := range []string{"123 456 7890", "https://web.example/j/1234567890", "https://x/?id=1", "%%", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := NormalizeMeetingID(s)
		if strings.ContainsAny(out, " -") {
			t.Fatalf("%q kept a space or dash: %q", s, out)
		}
	})
}

func TestNormalizeMeetingID(t *testing.T) {
	for in, want := range map[string]string{
		"123 456 7890":                      "1234567890",
		"123-456-7890":                      "1234567890",
		"https://web.example/j/1234567890":  "1234567890",
		"https://web.example/j/1234567890/": "1234567890",
		" 12345678901 ":                     "12345678901",
	} {
		require.Equal(t, want, NormalizeMeetingID(in), in)
	}
}

func TestProxyResolverEnv(t *testing.T) {
	leaktest.Check(t)
	env := map[string]string{"HTTPS_PROXY": "http://proxy.test:3128", "NO_PROXY": "nope.example, 10.9.0.0/16, 127.0.0.2, [::1]:8443"}
	cfg := &Config{Getenv: func(k string) string { return env[k] }}
	p, err := newProxyResolver(t.Context(), cfg)
	require.NoError(t, err)
	for addr, proxied := range map[string]bool{
		"zc.example:443":   true,
		"nope.example:443": false,
		"10.9.1.1:443":     false,
		"10.8.1.1:443":     true,
		"127.0.0.1:443":    true, // loopback is proxied (httpproxy alone never would)
		"127.0.0.2:443":    false,
		"localhost:443":    true,
		"[::1]:8443":       false,
		"[::1]:443":        true,
	} {
		u, src, err := p.forAddr(addr)
		require.NoError(t, err)
		require.Equal(t, ProxyEnv, src)
		require.Equal(t, proxied, u != nil, addr)
	}
	// The environment is read at every resolver (every Connect).
	env["HTTPS_PROXY"] = ""
	p, err = newProxyResolver(t.Context(), cfg)
	require.NoError(t, err)
	u, src, err := p.forAddr("zc.example:443")
	require.NoError(t, err)
	require.Nil(t, u)
	require.Equal(t, ProxyNone, src)
}

func TestPACOverHTTP(t *testing.T) {
	leaktest.Check(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/proxy.pac" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
		_, _ = w.Write([]byte(`function FindProxyForURL(url, host) {
			if (localHostOrDomainIs(host, "direct.example")) return "DIRECT";
			return "PROXY 127.0.0.1:3128";
		}`))
	}))
	defer srv.Close()
	p, err := newProxyResolver(t.Context(), &Config{PAC: srv.URL + "/proxy.pac", NoEnvProxy: true, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	u, src, err := p.forAddr("zc.example:443")
	require.NoError(t, err)
	require.Equal(t, ProxyPAC, src)
	require.Equal(t, "http://127.0.0.1:3128", u.String())
	u, _, err = p.forAddr("direct.example:443")
	require.NoError(t, err)
	require.Nil(t, u)
	srv.CloseClientConnections()

	_, err = newProxyResolver(t.Context(), &Config{PAC: srv.URL + "/missing", Getenv: func(string) string { return "" }})
	require.ErrorContains(t, err, "404", "a missing PAC file is an error")
	_, err = newProxyResolver(t.Context(), &Config{PAC: "http://127.0.0.1:1/none.pac", Getenv: func(string) string { return "" }})
	require.Error(t, err, "an unreachable PAC file is an error, not a silent DIRECT")
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Web: "https://w", WebTLS: &tls.Config{}, MeetingID: "123 456 7890"}
	c, err := ok.withDefaults()
	require.NoError(t, err)
	require.Equal(t, "1234567890", c.MeetingID)
	require.Equal(t, DefaultZoneTimeout, c.ZoneTimeout)
	require.Len(t, c.Kinds, 3)
	for name, mod := range map[string]func(*Config){
		"no web":        func(c *Config) { c.Web = "" },
		"no web TLS":    func(c *Config) { c.WebTLS = nil },
		"no meeting":    func(c *Config) { c.MeetingID = " - " },
		"bad transport": func(c *Config) { c.Transport = "quic" },
		"bad kind":      func(c *Config) { c.Kinds = []media.Kind{9} },
		"negative":      func(c *Config) { c.UDPGiveUp = -1 },
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			mod(&c)
			_, err := c.withDefaults()
			require.Error(t, err)
		})
	}
}
