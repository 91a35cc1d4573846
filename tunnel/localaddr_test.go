package tunnel

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/internal/leaktest"
)

// TestDialerLocalAddr: with LocalAddr set, the connections to a tunnel
// server come from that address; without it, the kernel picks 127.0.0.1.
func TestDialerLocalAddr(t *testing.T) {
	leaktest.Check(t)
	for _, tc := range []struct {
		name  string
		local netip.Addr
		want  string
	}{
		{"set", netip.MustParseAddr("127.0.0.2"), "127.0.0.2"},
		{"unset", netip.Addr{}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			got := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(got)
					return
				}
				got <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()
				c.Close() // not a tunnel server: the ping fails
			}()
			d := &Dialer{Token: "t", LocalAddr: tc.local, HandshakeTimeout: 10 * time.Second}
			tun, err := d.Open(Endpoint{URL: "https://" + ln.Addr().String() + PathTunnel})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err = tun.Ping(ctx)
			require.Error(t, err)
			require.Equal(t, tc.want, <-got)
		})
	}
}
