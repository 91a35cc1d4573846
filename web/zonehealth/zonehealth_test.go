package zonehealth_test

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/config"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/web/zonehealth"
	"github.com/openmmr/mmr/zone"
)

// startZC runs a real zone controller on loopback.
func startZC(t *testing.T) (*zone.Server, tls.Certificate) {
	t.Helper()
	cert, err := tlsutil.SelfSigned("127.0.0.1")
	require.NoError(t, err)
	zc, err := zone.New(zone.Config{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Certificate: cert, Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}})
	require.NoError(t, err)
	t.Cleanup(func() { zc.Close() })
	return zc, cert
}

func TestHealth(t *testing.T) {
	leaktest.Check(t)
	zc, cert := startZC(t)
	pin, err := zonehealth.TLSConfig(config.ZC{Addr: zc.Addr().String(), Fingerprint: tlsutil.Fingerprint(cert)})
	require.NoError(t, err)
	wrongPin, err := zonehealth.TLSConfig(config.ZC{Addr: zc.Addr().String(), Fingerprint: "00000000000000000000000000000000000000000000000000000000000000ff"})
	require.NoError(t, err)
	// A port nobody listens on: bind, note, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	l.Close()

	zones := []zonehealth.Zone{
		{Name: "up", ZCs: []zonehealth.ZC{{Addr: dead, TLS: pin}, {Addr: zc.Addr().String(), TLS: pin}}}, // one of two answers
		{Name: "down", ZCs: []zonehealth.ZC{{Addr: dead, TLS: pin}}},
		{Name: "impostor", ZCs: []zonehealth.ZC{{Addr: zc.Addr().String(), TLS: wrongPin}}}, // answers, but not with the pinned certificate
	}
	c := zonehealth.New(zones, 50*time.Millisecond, 15*time.Second, nil) // generous: a loaded machine must not fail the live ZC
	defer c.Close()
	st := c.Status()
	require.Len(t, st, 3)
	require.Eventually(t, func() bool { return c.Rounds() >= 1 }, 20*time.Second, 10*time.Millisecond)
	st = c.Status()
	require.True(t, st[0].Checked)
	require.True(t, st[0].Healthy)
	require.False(t, st[1].Healthy)
	require.False(t, st[2].Healthy)
	require.WithinDuration(t, time.Now(), st[0].CheckedAt, 20*time.Second)

	// The ZC goes away: the next rounds see the zone down.
	zc.Close()
	require.Eventually(t, func() bool { return !c.Status()[0].Healthy }, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
}

func TestTLSConfig(t *testing.T) {
	leaktest.Check(t)
	_, err := zonehealth.TLSConfig(config.ZC{Addr: "h:1"})
	require.Error(t, err)
	_, err = zonehealth.TLSConfig(config.ZC{Addr: "h:1", CAPEM: "junk"})
	require.Error(t, err)
}
