package control

import (
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/stretchr/testify/require"
)

func TestConfigValidation(t *testing.T) {
	good := func() Config {
		return Config{TLS: tlsutil.ServerConfig(testCert(t)), Secret: testSecret}
	}
	c, err := good().withDefaults()
	require.NoError(t, err)
	require.Equal(t, DefaultAddr, c.Addr)
	require.Equal(t, DefaultGrace, c.Grace)
	require.Equal(t, DefaultIdleTimeout/3, c.PingInterval)
	require.Equal(t, proto.DefaultMaxFrame, c.MaxFrame)

	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no certificate", func(c *Config) { c.TLS = nil }},
		{"empty TLS config", func(c *Config) { c.TLS = &tls.Config{} }},
		{"no secret", func(c *Config) { c.Secret = nil }},
		{"short previous secret", func(c *Config) { c.PreviousSecrets = [][]byte{[]byte("x")} }},
		{"ping not below idle", func(c *Config) { c.IdleTimeout = time.Second; c.PingInterval = time.Second }},
		{"negative timeout", func(c *Config) { c.WriteTimeout = -1 }},
		{"tiny frame", func(c *Config) { c.MaxFrame = 10 }},
		{"negative limit", func(c *Config) { c.MaxConnsPerIP = -1 }},
		{"bad endpoint", func(c *Config) {
			c.Endpoints = []proto.Endpoint{{Kind: proto.Kind(media.Audio), Transport: "carrier-pigeon", Addr: netip.MustParseAddrPort("1.2.3.4:1")}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			_, err := New(c, newFakeRouter())
			require.Error(t, err)
		})
	}
	_, err = New(good(), nil)
	require.Error(t, err, "nil router")
	_, err = New(Config{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem", Secret: testSecret}, newFakeRouter())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestBindErrorsNameTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	s, err := New(Config{Addr: ln.Addr().String(), TLS: tlsutil.ServerConfig(testCert(t)), Secret: testSecret, Logger: quietLogger()}, newFakeRouter())
	require.NoError(t, err)
	defer s.Close()
	err = s.Start()
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, "already in use")
	require.ErrorContains(t, err, "-control")

	// Permission denied cannot be provoked as root; check the wording on a
	// synthetic error of the shape net.Listen returns.
	perm := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	err = bindError(":443", perm)
	require.ErrorIs(t, err, syscall.EACCES)
	require.ErrorContains(t, err, "permission denied")
	require.ErrorContains(t, err, "-control")
}

func TestEndpointsFor(t *testing.T) {
	eps := UDPEndpoints([]netip.AddrPort{
		netip.MustParseAddrPort("0.0.0.0:8801"),
		netip.MustParseAddrPort("[::]:8801"),
		netip.MustParseAddrPort("192.0.2.7:9000"),
	})
	require.Len(t, eps, 9, "three kinds per address")
	got := endpointsFor(eps, netip.MustParseAddr("::ffff:10.0.0.5"))
	require.Len(t, got, 6, "the IPv6 wildcard is dropped for an IPv4 client")
	for _, e := range got {
		require.Contains(t, []string{"10.0.0.5:8801", "192.0.2.7:9000"}, e.Addr.String())
	}
	got = endpointsFor(eps, netip.MustParseAddr("2001:db8::1"))
	require.Equal(t, "[2001:db8::1]:8801", got[0].Addr.String())
	require.Len(t, got, 6)
}

func TestTLSVersions(t *testing.T) {
	noLeaks(t)
	e := startServer(t, newFakeRouter(), func(c *Config) { c.TLS.MinVersion = 0 }) // raised to 1.2 by New
	tests := []struct {
		name    string
		max     uint16
		want    uint16
		refused bool
	}{
		{"TLS 1.3 preferred", 0, tls.VersionTLS13, false},
		{"TLS 1.2 accepted", tls.VersionTLS12, tls.VersionTLS12, false},
		{"TLS 1.1 refused", tls.VersionTLS11, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.clientTLS(t)
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tc.max
			c, err := tlsDial(t, e.addr(), cfg)
			if tc.refused {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, c.ConnectionState().Version)
		})
	}
}
