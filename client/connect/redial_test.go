package connect_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openmmr/mmr/client/connect"
	"github.com/openmmr/mmr/client/connect/connecttest"
	"github.com/openmmr/mmr/internal/leaktest"
	"github.com/openmmr/mmr/media"
)

// cutProxy is a minimal HTTP CONNECT proxy (RFC 9110 §9.3.6) on loopback
// whose relayed connections the test can cut all at once, as a dying
// tunnel server or middlebox would.
type cutProxy struct {
	ln      net.Listener
	refuse  atomic.Bool  // answer 502 to every CONNECT
	refused atomic.Int64 // CONNECTs refused
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func startCutProxy(t *testing.T) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) serve(c net.Conn) {
	defer p.wg.Done()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		c.Close()
		return
	}
	if p.refuse.Load() {
		p.refused.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", req.Host, 5*time.Second)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, br)
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// cut closes every relayed connection.
func (p *cutProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	return n
}

// TestMediaRedialsWhenStreamEnds: a client whose every connection goes
// through a proxy loses them all at once; with keepalives far too slow to
// notice (1 min), and the proxy refuses the first re-dials; its control
// channel resumes and every kind re-dials because its stream ended (and
// again after a refused re-dial), and media flows both ways again.
func TestMediaRedialsWhenStreamEnds(t *testing.T) {
	leaktest.Check(t)
	e := startEnv(t, 1)
	px := startCutProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rxA, rxB := newReceiver(), newReceiver()
	ca := clientConfig(t, e, 0, rxA)
	ca.Proxy = "http://" + px.ln.Addr().String()
	ca.Keepalive = time.Minute // silence detection cannot be what brings it back
	a, ra, err := connect.Connect(ctx, ca)
	require.NoError(t, err)
	defer a.Close()
	b, _, err := connect.Connect(ctx, clientConfig(t, e, 1, rxB))
	require.NoError(t, err)
	defer b.Close()
	requireTransport(t, a, ra, connect.TLS)
	exchange(t, a, 0, rxB)
	exchange(t, b, 1, rxA)

	j0 := a.Joined()
	px.refuse.Store(true)
	require.GreaterOrEqual(t, px.cut(), 1+3, "control and three media streams (and the finished lookup and ZC connections) cut")
	// The first re-dials (control resume, media) are refused.
	require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool { return px.refused.Load() >= 1+3 }))
	px.refuse.Store(false)
	require.NoError(t, connecttest.Wait(ctx, 20*time.Second, func() bool {
		for _, k := range media.Kinds {
			if a.Flow(k).Stats().Moves < 1 {
				return false
			}
		}
		j := a.Joined()
		return j != nil && j.Resume != j0.Resume
	}), "not every kind re-dialled, or the control channel did not resume")
	require.Equal(t, j0.Participant, a.Joined().Participant)
	exchange(t, a, 0, rxB)
	exchange(t, b, 1, rxA)
	require.NoError(t, a.Leave(ctx))
	require.NoError(t, b.Leave(ctx))
}
