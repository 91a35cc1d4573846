package zclient_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/tlsutil"
	"github.com/openmmr/mmr/zone"
	"github.com/openmmr/mmr/zone/proto"
	"github.com/openmmr/mmr/zone/zclient"
)

func startZC(t *testing.T) (*zone.Server, string) {
	cert, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	s, err := zone.New(zone.Config{
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Certificate: cert,
		Secrets: [][]byte{[]byte("zclient-test-secret-0123456789")}, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, tlsutil.Fingerprint(cert)
}

func TestSummary(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		rtts []time.Duration
		want zclient.ProbeResult
	}{
		{"steady", []time.Duration{10 * ms, 10 * ms, 10 * ms}, zclient.ProbeResult{Min: 10 * ms, Median: 10 * ms, Mean: 10 * ms, Max: 10 * ms}},
		{"jittery", []time.Duration{10 * ms, 30 * ms, 10 * ms, 30 * ms},
			zclient.ProbeResult{Min: 10 * ms, Median: 30 * ms, Mean: 20 * ms, Max: 30 * ms, Jitter: 20 * ms}},
		{"one", []time.Duration{5 * ms}, zclient.ProbeResult{Min: 5 * ms, Median: 5 * ms, Mean: 5 * ms, Max: 5 * ms}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := zclient.Summarise(tc.rtts)
			tc.want.RTTs = tc.rtts
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want.Median+2*tc.want.Jitter, got.Score())
		})
	}
}

func TestDialNeedsTLSConfig(t *testing.T) {
	_, err := zclient.Dial(context.Background(), "127.0.0.1:1", nil)
	require.Error(t, err)
}

func TestPinnedWrongCertificate(t *testing.T) {
	s, _ := startZC(t)
	other, err := tlsutil.SelfSigned()
	require.NoError(t, err)
	pin, err := tlsutil.PinnedClientConfig(tlsutil.Fingerprint(other))
	require.NoError(t, err)
	_, err = zclient.Dial(context.Background(), s.Addr().String(), pin)
	require.ErrorIs(t, err, tlsutil.ErrFingerprint)
}

func TestLookupAndProbe(t *testing.T) {
	s, fp := startZC(t)
	pin, err := tlsutil.PinnedClientConfig(fp)
	require.NoError(t, err)
	c, err := zclient.Dial(context.Background(), s.Addr().String(), pin)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Lookup(context.Background(), "m")
	require.ErrorIs(t, err, &proto.Error{Code: proto.ErrCodeNoCapacity})
	_, err = c.Lookup(context.Background(), "")
	require.Error(t, err, "invalid IDs are refused before sending")
	res, err := c.Probe(context.Background(), zclient.ProbeOptions{Count: 3, Interval: time.Millisecond, Pad: 100})
	require.NoError(t, err)
	require.Len(t, res.RTTs, 3)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Probe(ctx, zclient.ProbeOptions{Count: 3})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
}

func TestSelectZone(t *testing.T) {
	s, fp := startZC(t)
	pin, err := tlsutil.PinnedClientConfig(fp)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a "zone" whose ZC is gone
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	best, res := zclient.SelectZone(context.Background(), []zclient.Zone{
		{Name: "down", Addr: dead, TLS: pin},
		{Name: "up", Addr: s.Addr().String(), TLS: pin},
	}, zclient.ProbeOptions{Count: 3, Interval: time.Millisecond})
	require.Equal(t, 1, best)
	require.Error(t, res[0].Err)
	require.NoError(t, res[1].Err)
	require.Len(t, res[1].Result.RTTs, 3)

	best, _ = zclient.SelectZone(context.Background(), []zclient.Zone{{Name: "down", Addr: dead, TLS: pin}}, zclient.ProbeOptions{Count: 1})
	require.Equal(t, -1, best)
}
