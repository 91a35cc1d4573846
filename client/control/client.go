// Package control is the Go client of the openmmr control channel
// (docs/control-protocol.md): it connects to an MMR over TLS, joins a meeting
// with a join token, publishes and subscribes, receives the meeting's events,
// pings, and resumes its participant on a new connection after a dropped one
// (by itself with Config.AutoResume, or by calling Resume).
//
// Every join announces a fresh X25519 public key, and the joined reply
// builds the participant's media protection (client/secure.State, see
// Media): the reader goroutine feeds it the key and roster events before
// OnEvent sees them, a goroutine of the Client runs its timers and sends
// its e2ee-key requests, and a joined whose media protection is missing or
// (with Config.E2EE) not end-to-end is refused: Join leaves and fails.
//
// A Client is safe for concurrent use. It runs one reader goroutine per
// connection (and, while resuming, one more); Close ends them all. Callbacks
// run on the reader goroutine: they must return quickly and must not call
// the Client's request methods (Publish, Ping, ...), whose replies that very
// goroutine delivers.
package control

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmmr/mmr/client/secure"
	"github.com/openmmr/mmr/control/proto"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/protect/keys"
	"github.com/openmmr/mmr/wire"
)

// Software is what the client announces in hello.
const Software = "openmmr-go/1"

// Resume backoff: the first retry after a drop comes quickly (the network
// often is back at once), later ones no faster than once a second.
const (
	resumeFirstRetry = 50 * time.Millisecond
	resumeMaxRetry   = time.Second
)

// ErrNotJoined is returned by requests that need a joined participant.
var ErrNotJoined = errors.New("control client: not joined")

// Config configures a Client. TLS is required; the other fields have
// defaults. It is a plain value; Dial keeps its own copy (and clones TLS).
type Config struct {
	// TLS verifies the server: tlsutil.PinnedClientConfig(fingerprint) to pin
	// a self-signed certificate, or a config with RootCAs (and ServerName, by
	// default the host of the address dialled). It is cloned.
	TLS *tls.Config
	// Dial opens the TCP connection. Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxFrame is the largest frame accepted from the server. Default
	// proto.ClientMaxFrame.
	MaxFrame int
	// OnEvent receives the meeting's events: *proto.ParticipantJoined,
	// *proto.ParticipantLeft, *proto.StreamAdded, *proto.StreamRemoved,
	// *proto.ActiveSpeaker, *proto.MeetingEnded, and errors not answering a request (a fatal
	// *proto.Error such as "replaced" or "timeout"). Called on the reader
	// goroutine, in order. Default: events are dropped.
	OnEvent func(proto.Message)
	// OnConnection is told when the connection drops (Up false, Err why)
	// and when it is back (Up true) after a resume. Called on a client
	// goroutine.
	OnConnection func(ConnEvent)
	// AutoResume makes the client resume by itself after a dropped
	// connection, retrying until the server's grace period is over.
	AutoResume bool
	// Logger receives connection logs. Default slog.Default().
	Logger *slog.Logger
	// E2EE says the meeting is end-to-end encrypted (the lookup's e2ee):
	// a joined or resumed that says another media protection is refused
	// (Join fails with secure.ErrDowngrade and leaves the meeting).
	E2EE bool
	// Media tunes the participant's media protection (secure.Config:
	// OnChange to show the security code, KeyLog for tests, the key
	// schedule's delays). Private and RequireE2EE are set by the Client.
	Media secure.Config
}

// ConnEvent reports a change of the connection.
type ConnEvent struct {
	Up  bool  // true: resumed; false: dropped (Err says why) or given up
	Err error // cause of a drop, or the final error when resuming failed
}

// Client is a control-channel client; see the package documentation.
type Client struct {
	cfg    Config
	tls    *tls.Config
	addr   string
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ids    atomic.Uint32
	ended  atomic.Bool // meeting-ended received

	mu      sync.Mutex
	cur     *session
	welcome proto.Welcome
	joined  *proto.Joined    // latest joined or resumed body; nil before Join
	priv    *ecdh.PrivateKey // the X25519 key pair of the pending or current join
	sec     *secure.State    // media protection, built from the joined reply
	secErr  error            // why the joined reply was refused
	left    bool             // Leave, EndMeeting or Close called
	closed  bool
}

// Dial connects to the control server at addr ("host:port"), completes the
// TLS handshake and the hello/welcome exchange, and returns the Client.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	if cfg.TLS == nil {
		return nil, errors.New("control client: Config.TLS is required")
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = proto.ClientMaxFrame
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tc := cfg.TLS.Clone()
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	if len(tc.NextProtos) == 0 {
		tc.NextProtos = []string{proto.ALPN} // routes a shared port 443 to the control channel
	}
	if tc.ServerName == "" && !tc.InsecureSkipVerify {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = host
		}
	}
	c := &Client{cfg: cfg, tls: tc, addr: addr, log: cfg.Logger}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s, err := c.open(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
	c.checkDead(s)
	return c, nil
}

// open dials a session and runs hello/welcome on it.
func (c *Client) open(ctx context.Context) (*session, error) {
	s, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.call(ctx, &proto.Hello{Versions: []int{proto.Version}, Software: Software, Capabilities: []string{proto.CapResume}})
	if err != nil {
		s.close(err)
		return nil, fmt.Errorf("control client: hello: %w", err)
	}
	w, ok := r.(*proto.Welcome)
	if !ok {
		s.close(errClosed)
		return nil, fmt.Errorf("control client: hello answered by %s", r.Type())
	}
	c.mu.Lock()
	c.welcome = *w
	c.mu.Unlock()
	return s, nil
}

func (c *Client) nextID() uint32 {
	for {
		if id := c.ids.Add(1); id != 0 {
			return id
		}
	}
}

func (c *Client) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Welcome returns the server's welcome (limits, grace period).
func (c *Client) Welcome() proto.Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Join joins meeting with a join token and display name (empty: the token's
// identity). A refusal is a *proto.Error (errors.Is with &proto.Error{Code:
// proto.CodeTokenExpired} and so on); the server then closes the connection.
func (c *Client) Join(ctx context.Context, meeting, joinToken, name string) (*proto.Joined, error) {
	s := c.session()
	if s == nil {
		return nil, errClosed
	}
	// A fresh X25519 key pair for every join (docs/PROTOCOL.md, "E2EE
	// mode"), announced in every join: a Standard meeting ignores it, and
	// a client that did not look the meeting up can still join an E2EE
	// one.
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.priv, c.sec, c.secErr = priv, nil, nil
	c.mu.Unlock()
	r, err := s.call(ctx, &proto.Join{Meeting: meeting, Token: joinToken, Name: name, E2EEPublicKey: keys.PublicKeyHex(priv.PublicKey().Bytes())})
	if err != nil {
		return nil, err
	}
	j, ok := r.(*proto.Joined)
	if !ok {
		return nil, fmt.Errorf("control client: join answered by %s", r.Type())
	}
	c.mu.Lock()
	c.joined = j
	secErr := c.secErr
	c.mu.Unlock()
	if secErr != nil {
		// Joined, but the media protection is not what it must be: leave
		// at once rather than send a single packet.
		c.log.Warn("control client: joined refused", "err", secErr)
		_ = c.Leave(ctx)
		return nil, fmt.Errorf("control client: %w", secErr)
	}
	return cloneJoined(j), nil
}

// protection builds the media protection from a joined reply, or applies a
// resumed one. It runs on the reader goroutine before the reply is
// delivered, so that every event after the reply finds the State.
func (c *Client) protection(j *proto.Joined, resumed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if resumed && c.sec != nil {
		if err := c.sec.Resume(j); err != nil {
			c.secErr = err
		}
		return
	}
	cfg := c.cfg.Media
	cfg.Private, cfg.RequireE2EE = c.priv, c.cfg.E2EE
	if cfg.Logger == nil {
		cfg.Logger = c.log
	}
	st, err := secure.New(j, cfg)
	if err != nil {
		c.secErr = err
		return
	}
	c.sec = st
	c.wg.Add(1) // the reader goroutine is tracked: Close waits for both
	go func() {
		defer c.wg.Done()
		_ = st.Run(c.ctx, c)
	}()
}

// Media returns the participant's media protection (nil before Join
// succeeded): client/udpmedia and client/streammedia take its Flow(kind).
func (c *Client) Media() *secure.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sec
}

// SendE2EEKey sends one e2ee-key request (a key wrap made by this client
// as the E2EE leader) and waits for its ok. The Client's media protection
// calls it; it implements secure.Sender.
func (c *Client) SendE2EEKey(ctx context.Context, m *proto.E2EEKey) error {
	return c.request(ctx, m)
}

// Joined returns the latest joined (or resumed) body, or nil before Join.
// The roster in it is as of that moment; follow OnEvent for changes.
func (c *Client) Joined() *proto.Joined {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneJoined(c.joined)
}

// MediaToken returns the participant's media token for the UDP Bind.
func (c *Client) MediaToken() (wire.Token, error) {
	j := c.Joined()
	if j == nil {
		return wire.Token{}, ErrNotJoined
	}
	return wire.ParseToken(j.MediaToken)
}

// Resume opens a new connection and takes the participant over with the
// resume credential of the last joined/resumed. The old connection, if any,
// is closed. Within the server's grace period the others see nothing.
func (c *Client) Resume(ctx context.Context) (*proto.Resumed, error) {
	c.mu.Lock()
	j, old, closed := c.joined, c.cur, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if j == nil {
		return nil, ErrNotJoined
	}
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.call(ctx, &proto.Resume{Participant: j.Participant, Credential: j.Resume})
	if err != nil {
		s.close(err)
		return nil, err
	}
	rs, ok := r.(*proto.Resumed)
	if !ok {
		s.close(errClosed)
		return nil, fmt.Errorf("control client: resume answered by %s", r.Type())
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.close(errClosed)
		return nil, errClosed
	}
	c.cur, c.joined = s, &rs.Joined
	secErr := c.secErr
	c.mu.Unlock()
	if secErr != nil {
		c.log.Warn("control client: resumed refused", "err", secErr)
		_ = c.Leave(ctx)
		return nil, fmt.Errorf("control client: %w", secErr)
	}
	if old != nil && old != s {
		old.close(errors.New("control client: replaced by a resumed connection"))
	}
	c.checkDead(s)
	out := *rs
	out.Joined = *cloneJoined(&rs.Joined)
	return &out, nil
}

// request sends m on the current connection and waits for ok.
func (c *Client) request(ctx context.Context, m proto.Message) error {
	s := c.session()
	if s == nil {
		return errClosed
	}
	r, err := s.call(ctx, m)
	if err != nil {
		return err
	}
	if _, ok := r.(*proto.OK); !ok {
		return fmt.Errorf("control client: %s answered by %s", m.Type(), r.Type())
	}
	return nil
}

// Publish announces SSRCs the client sends for kind k.
func (c *Client) Publish(ctx context.Context, k media.Kind, ssrcs ...uint32) error {
	return c.request(ctx, &proto.Publish{Kind: proto.Kind(k), SSRCs: ssrcs})
}

// Unpublish withdraws SSRCs of kind k (none listed: all of them).
func (c *Client) Unpublish(ctx context.Context, k media.Kind, ssrcs ...uint32) error {
	return c.request(ctx, &proto.Unpublish{Kind: proto.Kind(k), SSRCs: ssrcs})
}

// Subscribe receives kind k from the listed participants only, or from
// everyone when none are listed.
func (c *Client) Subscribe(ctx context.Context, k media.Kind, publishers ...uint64) error {
	return c.request(ctx, &proto.Subscribe{Kind: proto.Kind(k), Publishers: publishers})
}

// Unsubscribe stops receiving kind k from anyone.
func (c *Client) Unsubscribe(ctx context.Context, k media.Kind) error {
	return c.request(ctx, &proto.Unsubscribe{Kind: proto.Kind(k)})
}

// Ping measures the round trip to the server (rtt) and returns the RTT the
// server measured with its own pings (server, 0 until it has measured).
func (c *Client) Ping(ctx context.Context) (rtt, server time.Duration, err error) {
	s := c.session()
	if s == nil {
		return 0, 0, errClosed
	}
	start := time.Now()
	r, err := s.call(ctx, &proto.Ping{})
	if err != nil {
		return 0, 0, err
	}
	rtt = time.Since(start)
	p, ok := r.(*proto.Pong)
	if !ok {
		return 0, 0, fmt.Errorf("control client: ping answered by %s", r.Type())
	}
	return rtt, time.Duration(p.RTTMicros) * time.Microsecond, nil
}

// Leave leaves the meeting at once (no grace period) and closes the client.
func (c *Client) Leave(ctx context.Context) error {
	c.mu.Lock()
	c.left = true
	c.mu.Unlock()
	err := c.request(ctx, &proto.Leave{})
	c.Close()
	return err
}

// EndMeeting ends the meeting for everyone (host only: others get a
// *proto.Error with CodeForbidden and stay joined). On success the server
// sends meeting-ended to all and closes their connections.
func (c *Client) EndMeeting(ctx context.Context) error {
	err := c.request(ctx, &proto.EndMeeting{})
	if err == nil {
		c.mu.Lock()
		c.left = true
		c.mu.Unlock()
	}
	return err
}

// Done returns a channel closed when the current connection ends.
func (c *Client) Done() <-chan struct{} {
	s := c.session()
	if s == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return s.dead
}

// Err returns why the current connection ended (a *proto.Error when the
// server sent a fatal one), or nil while it is up.
func (c *Client) Err() error {
	s := c.session()
	if s == nil {
		return errClosed
	}
	select {
	case <-s.dead:
		return s.failure()
	default:
		return nil
	}
}

// Close closes the connection without leaving: the server keeps the
// participant for its grace period. Idempotent; waits for the client's
// goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	s := c.cur
	c.mu.Unlock()
	c.cancel()
	if s != nil {
		s.close(errClosed)
	}
	c.wg.Wait()
	return nil
}

// event passes a server event to the media protection, then to OnEvent.
func (c *Client) event(m proto.Message) {
	switch m.(type) {
	case *proto.MediaKey, *proto.E2EEKey, *proto.ParticipantJoined, *proto.ParticipantLeft, *proto.StreamAdded, *proto.StreamRemoved:
		if st := c.Media(); st != nil {
			if err := st.Handle(m); err != nil {
				c.log.Info("control client: key message refused", "type", m.Type(), "err", err)
			}
		}
	}
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(m)
	}
}

// sessionEnded runs on the reader goroutine of a session that ended.
func (c *Client) sessionEnded(s *session) { c.dropped(s) }

// checkDead reports s's end if it happened before s became current.
func (c *Client) checkDead(s *session) {
	select {
	case <-s.dead:
		c.dropped(s)
	default:
	}
}

// dropped reports the end of s once, if s is the current session, and with
// AutoResume starts resuming a joined participant. Runs on a goroutine the
// Client tracks (a reader) or on the caller of Dial or Resume.
func (c *Client) dropped(s *session) {
	c.mu.Lock()
	if c.cur != s || s.reported {
		c.mu.Unlock()
		return
	}
	s.reported = true
	resume := c.cfg.AutoResume && c.joined != nil && !c.left && !c.closed && !c.ended.Load()
	closed := c.closed
	grace := time.Duration(c.welcome.GraceMS) * time.Millisecond
	err := s.failure()
	var pe *proto.Error
	if errors.As(err, &pe) && pe.Code != proto.CodeTimeout {
		resume = false // replaced, shutting down, refused...: resuming cannot help
	}
	if resume {
		c.wg.Add(1) // under mu, before Close can start waiting
	}
	c.mu.Unlock()
	if resume {
		c.log.Info("control client: connection lost, resuming", "err", err)
		go c.autoResume(time.Now().Add(grace), err)
	}
	if c.cfg.OnConnection != nil && !closed {
		c.cfg.OnConnection(ConnEvent{Up: false, Err: err})
	}
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// autoResume retries Resume until it works, the grace period is over, or the
// client is closed.
func (c *Client) autoResume(deadline time.Time, cause error) {
	defer c.wg.Done()
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	wait := resumeFirstRetry
	for {
		_, err := c.Resume(ctx)
		if err == nil {
			c.log.Info("control client: resumed")
			if c.cfg.OnConnection != nil {
				c.cfg.OnConnection(ConnEvent{Up: true})
			}
			return
		}
		var pe *proto.Error
		if errors.As(err, &pe) || ctx.Err() != nil {
			c.log.Warn("control client: resume failed", "err", err, "cause", cause)
			if c.cfg.OnConnection != nil && !c.isClosed() {
				c.cfg.OnConnection(ConnEvent{Up: false, Err: err})
			}
			return
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, resumeMaxRetry)
	}
}

func cloneJoined(j *proto.Joined) *proto.Joined {
	if j == nil {
		return nil
	}
	out := *j
	out.Endpoints = slices.Clone(j.Endpoints)
	out.Roster = slices.Clone(j.Roster)
	return &out
}
