package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
)

func TestConnectOpenNetworkAllUDP(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rxA, rxB := newReceiver(), newReceiver()
	a, resA, err := connect.Connect(ctx, clientConfig(t, e, 0, rxA))
	require.NoError(t, err)
	defer a.Close()
	b, _, err := connect.Connect(ctx, clientConfig(t, e, 1, rxB))
	require.NoError(t, err)
	defer b.Close()

	require.Equal(t, e.zones[0].Name, resA.Zone)
	require.False(t, resA.Proxy.Detected)
	require.Len(t, resA.Media, 3)
	for _, m := range resA.Media {
		require.Equal(t, connect.UDP, m.Transport, m.Kind)
		require.Empty(t, m.Err)
	}
	for _, k := range media.Kinds {
		require.Equal(t, connect.UDP, a.Flow(k).Transport())
	}
	exchange(t, a, 0, rxB)
	exchange(t, b, 1, rxA)
	require.NoError(t, a.Leave(ctx))
	require.NoError(t, b.Leave(ctx))
}

func TestConnectWrongPasscode(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	cfg := clientConfig(t, e, 0, newReceiver())
	cfg.Passcode = "0000"
	_, res, err := connect.Connect(context.Background(), cfg)
	var le *connect.LookupError
	require.ErrorAs(t, err, &le)
	require.Equal(t, "wrong-passcode", le.Code)
	require.Equal(t, 401, le.Status)
	require.Contains(t, res.Lookup.Err, "wrong-passcode")
}

func TestConnectForcedTransports(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	for _, tr := range []string{connect.TCP, connect.TLS} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rxA, rxB := newReceiver(), newReceiver()
			ca := clientConfig(t, e, 0, rxA)
			ca.Transport = tr
			a, _, err := connect.Connect(ctx, ca)
			require.NoError(t, err)
			defer a.Close()
			b, _, err := connect.Connect(ctx, clientConfig(t, e, 1, rxB))
			require.NoError(t, err)
			defer b.Close()
			for _, k := range media.Kinds {
				require.Equal(t, tr, a.Flow(k).Transport())
			}
			exchange(t, a, 0, rxB)
			exchange(t, b, 1, rxA)
			require.NoError(t, a.Leave(ctx))
			require.NoError(t, b.Leave(ctx))
		})
	}
}

func TestConnectCancelled(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := connect.Connect(ctx, clientConfig(t, e, 0, newReceiver()))
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled), "%v", err)
}
