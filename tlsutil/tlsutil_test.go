package tlsutil

import (
	"crypto/tls"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func handshake(t *testing.T, srv tls.Certificate, cli *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(srv))
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err == nil {
		c.Close()
	}
	ln.Close()
	<-done
	return err
}

func TestPinnedHandshake(t *testing.T) {
	a, err := SelfSigned("mmr.example")
	require.NoError(t, err)
	b, err := SelfSigned()
	require.NoError(t, err)
	require.Len(t, Fingerprint(a), 64)
	require.NotEqual(t, Fingerprint(a), Fingerprint(b))

	for _, tc := range []struct {
		name string
		pin  string
		ok   bool
	}{
		{"matching pin", Fingerprint(a), true},
		{"other pin", Fingerprint(b), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := PinnedClientConfig(tc.pin)
			require.NoError(t, err)
			err = handshake(t, a, cfg)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrFingerprint)
			}
		})
	}
	_, err = PinnedClientConfig("zz")
	require.Error(t, err)
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	c1, created, err := LoadOrCreate(dir)
	require.NoError(t, err)
	require.True(t, created)
	c2, created, err := LoadOrCreate(dir)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, Fingerprint(c1), Fingerprint(c2))
}
