package streammedia

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/router"
	"github.com/openmmr/mmr/wire"
)

// recorder is an io.Writer that keeps what passes through it.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// TestNoTokenOnTheWire: a plain TCP stream, bound through a relay that
// records every byte the client sends, binds against a real router, and
// the media token is nowhere in those bytes (nor either half of it).
func TestNoTokenOnTheWire(t *testing.T) {
	r, err := router.New(router.Config{
		UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		TCP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
	})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.CreateMeeting("m"))
	p, err := r.AddParticipant("m", router.ParticipantOptions{})
	require.NoError(t, err)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var rec recorder
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		up, err := net.Dial("tcp", r.TCPAddrs()[0].String())
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(c, up)
			c.Close()
		}()
		_, _ = io.Copy(io.MultiWriter(up, &rec), c)
		up.Close()
		<-done
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := Dial(ctx, ln.Addr().(*net.TCPAddr).AddrPort(), media.Video, p.Token, nil)
	require.NoError(t, err)
	_, ok := r.Bound(p.ID, media.Video)
	require.True(t, ok, "bound through the relay")
	require.NoError(t, f.Close())

	sent := rec.bytes()
	require.GreaterOrEqual(t, len(sent), 2+wire.BindSize)
	require.False(t, bytes.Contains(sent, p.Token[:8]), "token bytes on the wire: %x", sent)
	require.False(t, bytes.Contains(sent, p.Token[8:]), "token bytes on the wire: %x", sent)
	var b wire.Bind
	require.NoError(t, b.Unmarshal(sent[2:]))
	require.True(t, b.Verify(p.Token))
}
