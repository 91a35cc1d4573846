package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// badFor is how long a tunnel that failed or left is skipped by a Session;
// after it, the tunnel may be picked again (it may have restarted).
const badFor = 30 * time.Second

// Session keeps the tunnel a client uses across its streams and moves to
// another when it fails: DialContext dials through the current tunnel,
// picking one first (Dialer.Pick over the endpoints not marked bad), and
// when a dial fails for a reason other than a refusal, or a stream it
// returned ends with ErrServerLeaving, that tunnel is marked bad for 30 s
// and the next dial picks again among the others. Its DialContext has the
// shape of net.Dialer's, so it plugs into client/control.Config.Dial: the
// control channel's auto-resume then resumes through the next tunnel.
// Safe for concurrent use.
type Session struct {
	d   *Dialer
	eps []Endpoint

	mu  sync.Mutex
	cur *Tunnel
	bad map[string]time.Time // URL → when it failed
}

// NewSession returns a Session over endpoints (the lookup's tunnels).
func (d *Dialer) NewSession(endpoints []Endpoint) *Session {
	return &Session{d: d, eps: append([]Endpoint(nil), endpoints...), bad: make(map[string]time.Time)}
}

// Current returns the tunnel in use, or nil before the first dial or after
// it failed.
func (s *Session) Current() *Tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// markBad skips t until badFor has passed and forgets it as current.
func (s *Session) markBad(t *Tunnel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bad[t.Endpoint.URL] = time.Now()
	if s.cur == t {
		s.cur = nil
	}
}

// Use returns the tunnel in use, picking one (Dialer.Pick over the
// endpoints not marked bad) when there is none: a client calls it once up
// front to learn which tunnel answered first; DialContext calls it too.
func (s *Session) Use(ctx context.Context) (*Tunnel, error) { return s.tunnel(ctx) }

// tunnel returns the current tunnel, picking one when there is none.
func (s *Session) tunnel(ctx context.Context) (*Tunnel, error) {
	s.mu.Lock()
	if t := s.cur; t != nil {
		s.mu.Unlock()
		return t, nil
	}
	now := time.Now()
	var candidates []Endpoint
	for _, e := range s.eps {
		if at, ok := s.bad[e.URL]; !ok || now.Sub(at) > badFor {
			candidates = append(candidates, e)
		}
	}
	s.mu.Unlock()
	if len(candidates) == 0 {
		return nil, errors.New("tunnel: every tunnel server failed in the last 30 s")
	}
	t, err := s.d.Pick(ctx, candidates)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		s.cur = t
	}
	return s.cur, nil
}

// DialContext opens a stream to addr through the current tunnel; network
// must be "tcp" (or "tcp4"/"tcp6", treated alike). It tries at most one
// other tunnel when the current one does not answer.
func (s *Session) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: network %q cannot be tunnelled", network)
	}
	var first error
	for range 2 {
		t, err := s.tunnel(ctx)
		if err != nil {
			return nil, errors.Join(first, err)
		}
		c, err := t.Dial(ctx, addr)
		if err == nil {
			return &sessionConn{Conn: c, s: s, t: t}, nil
		}
		var refused *Error
		if errors.As(err, &refused) && !errors.Is(err, ErrServerLeaving) || ctx.Err() != nil {
			return nil, err // the server answered: another tunnel would say the same
		}
		s.markBad(t)
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// sessionConn tells its Session when the tunnel leaves under it.
type sessionConn struct {
	net.Conn
	s *Session
	t *Tunnel
}

// Read reads the stream; ErrServerLeaving marks the tunnel bad.
func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, ErrServerLeaving) {
		c.s.markBad(c.t)
	}
	return n, err
}

// Write writes the stream; ErrServerLeaving marks the tunnel bad.
func (c *sessionConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if errors.Is(err, ErrServerLeaving) {
		c.s.markBad(c.t)
	}
	return n, err
}
