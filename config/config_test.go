package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

func TestExampleLoads(t *testing.T) {
	leaktest.Check(t)
	f, err := Load("example.toml")
	require.NoError(t, err)
	require.Len(t, f.Zones, 3)
	require.Equal(t, "ams", f.Zones[0].Name)
	require.Len(t, f.Zones[0].ZCs, 2)
	require.Equal(t, []string{"gru"}, f.Web.CountryOverrides["BR"])
	require.Equal(t, 15*time.Minute, f.Web.Limits.MeetingWindow.D())
	require.Equal(t, "zc1.gru.example", f.Zones[2].ZCs[0].ServerName)
}

func TestDefaults(t *testing.T) {
	leaktest.Check(t)
	f, err := Parse([]byte(""))
	require.NoError(t, err)
	require.Equal(t, Default(), f)
	require.Equal(t, ":443", f.Web.Listen)
	require.Equal(t, 10, f.Web.Limits.MeetingFailures)
}

func TestStrict(t *testing.T) {
	leaktest.Check(t)
	zone := "[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nfingerprint = \"" + string(make64('a')) + "\"\n"
	tests := []struct {
		name, text, want string
	}{
		{"unknown top-level key", "\n\nfoo = 1\n", `line 3: unknown key "foo"`},
		{"unknown web key", "[web]\nlisten = \":1\"\nlistne = \":2\"\n", `line 3: unknown key "web.listne"`},
		{"unknown limits key", "[web]\n[web.limits]\nmeeting_failure = 3\n", `line 3: unknown key "web.limits.meeting_failure"`},
		{"unknown section", "[mmmr]\nx = 1\n", `line 1: unknown key "mmmr"`},
		{"unknown zone key", zone + "lat = 3\n", `unknown key "zones.zcs.lat"`},
		{"syntax", "[web\n", "line 2: expected"},
		{"type", "[web]\nlisten = 3\n", "listen"},
		{"bad duration", "[web]\ntoken_ttl = \"10 minutes\"\n", "duration"},
		{"negative duration", "[web]\ntoken_ttl = \"-1s\"\n", "token_ttl must be positive"},
		{"bad db", "[web]\ndb = \"mysql://x\"\n", "web.db"},
		{"bad proxy", "[web]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "trusted_proxies"},
		{"zone without zc", "[[zones]]\nname = \"a\"\n", "at least one"},
		{"duplicate zone", zone + zone, "duplicate"},
		{"unknown default zone", "[web]\ndefault_order = [\"x\"]\n", `no zone "x"`},
		{"fingerprint and ca", "[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nfingerprint = \"" + string(make64('a')) + "\"\nca_pem = \"x\"\n", "exactly one"},
		{"short fingerprint", "[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nfingerprint = \"ab\"\n", "64 hex"},
		{"bad latitude", "[[zones]]\nname = \"a\"\nlatitude = 91.0\n[[zones.zcs]]\naddr = \"h:1\"\nfingerprint = \"" + string(make64('a')) + "\"\n", "latitude"},
		{"lower-case country", "[web.country_overrides]\nde = []\n", "alpha-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestCAFileRead(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(path, []byte("not a pem"), 0o600))
	_, err := Parse([]byte("[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nca_file = \"" + path + "\"\n"))
	require.ErrorContains(t, err, "no certificate")
	_, err = Parse([]byte("[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nca_file = \"" + filepath.Join(dir, "missing") + "\"\n"))
	require.ErrorContains(t, err, "no such file")
	_, err = Parse([]byte("[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nca_file = \"/dev/zero\"\n"))
	require.ErrorContains(t, err, "not a regular file")
}

func TestFingerprintLowerCased(t *testing.T) {
	leaktest.Check(t)
	f, err := Parse([]byte("[[zones]]\nname = \"a\"\n[[zones.zcs]]\naddr = \"h:1\"\nfingerprint = \"" + string(make64('A')) + "\"\n"))
	require.NoError(t, err)
	require.Equal(t, string(make64('a')), f.Zones[0].ZCs[0].Fingerprint)
}

func make64(c byte) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return b
}

func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("example.toml")
	require.NoError(f, err)
	f.Add(b)
	f.Add([]byte("[web]\nlisten = 3"))
	f.Fuzz(func(t *testing.T, text []byte) {
		_, _ = Parse(text)
	})
}
