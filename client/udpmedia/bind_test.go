package udpmedia

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

// tap relays datagrams between one client and a router and records every
// datagram the client sent, as an observer of the path sees them.
type tap struct {
	front, back *net.UDPConn
	server      netip.AddrPort
	mu          sync.Mutex
	client      netip.AddrPort
	seen        [][]byte
	wg          sync.WaitGroup
}

func newTap(t *testing.T, server netip.AddrPort) *tap {
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	back, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	tp := &tap{front: front, back: back, server: server}
	tp.wg.Add(2)
	go func() { // client → router
		defer tp.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.client = from
			tp.seen = append(tp.seen, bytes.Clone(buf[:n]))
			tp.mu.Unlock()
			_, _ = back.WriteToUDPAddrPort(buf[:n], server)
		}
	}()
	go func() { // router → client
		defer tp.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := back.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			tp.mu.Lock()
			c := tp.client
			tp.mu.Unlock()
			_, _ = front.WriteToUDPAddrPort(buf[:n], c)
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		tp.wg.Wait()
	})
	return tp
}

func (tp *tap) addr() netip.AddrPort { return tp.front.LocalAddr().(*net.UDPAddr).AddrPort() }

func (tp *tap) sent() [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.seen)
}

// TestNoTokenOnTheWire: everything the client sends to bind (Binds, the
// challenge's echo, a rebind from a new socket) and to keep consent
// (Keepalives) works against a real router and never contains the media
// token, or either half of it.
func TestNoTokenOnTheWire(t *testing.T) {
	r, err := router.New(router.Config{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, DisableTCP: true})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.CreateMeeting("m"))
	p, err := r.AddParticipant("m", router.ParticipantOptions{})
	require.NoError(t, err)
	tp := newTap(t, r.UDPAddrs()[0])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := Dial(ctx, tp.addr(), media.Audio, p.Token)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Rebind(ctx))
	// A keepalive's answer carries a new consent nonce.
	buf := make([]byte, 2048)
	require.NoError(t, f.Keepalive())
	n, err := f.Recv(buf, time.Now().Add(10*time.Second))
	require.NoError(t, err)
	require.Equal(t, wire.ClassKeepaliveAck, wire.Classify(buf[:n]))
	require.NoError(t, f.Keepalive())

	require.Eventually(t, func() bool { return len(tp.sent()) >= 5 }, 10*time.Second, time.Millisecond)
	binds, keepalives := 0, 0
	for _, d := range tp.sent() {
		require.False(t, bytes.Contains(d, p.Token[:8]), "token bytes on the wire: %x", d)
		require.False(t, bytes.Contains(d, p.Token[8:]), "token bytes on the wire: %x", d)
		switch wire.Classify(d) {
		case wire.ClassBind:
			binds++
			var b wire.Bind
			require.NoError(t, b.Unmarshal(d))
			require.True(t, b.Verify(p.Token), "signed with the token")
			require.Equal(t, p.Token.Handle(), b.Handle)
		case wire.ClassKeepalive:
			keepalives++
		}
	}
	// The Bind, its challenge's echo, and the rebind's Bind (the router
	// sees the tap's address again: a refresh, answered at once).
	require.GreaterOrEqual(t, binds, 3)
	require.Equal(t, 2, keepalives)
	bound, ok := r.Bound(p.ID, media.Audio)
	require.True(t, ok)
	require.Equal(t, tp.back.LocalAddr().(*net.UDPAddr).AddrPort(), bound)
}
