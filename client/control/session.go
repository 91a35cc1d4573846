package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/openmmr/mmr/control/proto"
)

// writeTimeout bounds one frame write when the caller's context has no
// earlier deadline: a server that does not read for 10 s is gone.
const writeTimeout = 10 * time.Second

// errClosed is the session error after the client closed it.
var errClosed = errors.New("control client: closed")

// session is one TLS connection of a Client. Its reader goroutine delivers
// replies to pending calls and events to the Client.
type session struct {
	c   *Client
	raw net.Conn
	tc  *tls.Conn

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	pending map[uint32]chan proto.Message
	err     error         // why the session ended; set once before dead closes
	fatal   *proto.Error  // the fatal error the server sent, if any
	dead    chan struct{} // closed when the reader exits

	reported bool // the Client reported this session's end; guarded by Client.mu
}

// dial opens a TLS connection and starts its reader.
func (c *Client) dial(ctx context.Context) (*session, error) {
	raw, err := c.cfg.Dial(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("control client: dial %s: %w", c.addr, err)
	}
	tc := tls.Client(raw, c.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("control client: TLS handshake with %s: %w", c.addr, err)
	}
	s := &session{c: c, raw: raw, tc: tc, dead: make(chan struct{})}
	c.wg.Add(1)
	go s.read()
	return s, nil
}

// read is the session's reader goroutine.
func (s *session) read() {
	defer s.c.wg.Done()
	fr := proto.NewFrameReader(s.tc, s.c.cfg.MaxFrame)
	var err error
	for err == nil {
		var payload []byte
		if payload, err = fr.Next(); err != nil {
			break
		}
		id, msg, derr := proto.Decode(payload)
		if derr != nil {
			err = fmt.Errorf("control client: from server: %w", derr)
			break
		}
		err = s.dispatch(id, msg)
	}
	s.end(err)
}

// dispatch routes one message from the server.
func (s *session) dispatch(id uint32, msg proto.Message) error {
	switch m := msg.(type) {
	case *proto.Ping:
		return s.write(context.Background(), id, &proto.Pong{})
	case *proto.Error:
		if m.Fatal {
			s.mu.Lock()
			s.fatal = m
			s.mu.Unlock()
		}
		if id == 0 || !s.deliver(id, m) {
			s.c.event(m)
		}
		if m.Fatal {
			return m
		}
		return nil
	case *proto.ParticipantJoined, *proto.ParticipantLeft, *proto.StreamAdded, *proto.StreamRemoved,
		*proto.ActiveSpeaker, *proto.MediaKey:
		s.c.event(m)
		return nil
	case *proto.E2EEKey:
		if id == 0 { // an event; a request's echo would carry its ID
			s.c.event(m)
			return nil
		}
	case *proto.Joined:
		s.c.protection(m, false)
	case *proto.Resumed:
		s.c.protection(&m.Joined, true)
	case *proto.MeetingEnded:
		s.c.ended.Store(true)
		s.c.event(m)
		return nil
	}
	if !s.deliver(id, msg) {
		return fmt.Errorf("control client: unsolicited %s (id %d) from server", msg.Type(), id)
	}
	return nil
}

// deliver hands a reply to the call waiting for id.
func (s *session) deliver(id uint32, msg proto.Message) bool {
	s.mu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if ok {
		ch <- msg // buffered 1, one reply per call
	}
	return ok
}

// end records why the session ended, fails pending calls, closes the
// socket and tells the client.
func (s *session) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	if s.fatal != nil {
		s.err = s.fatal
	}
	s.pending = nil
	close(s.dead)
	s.mu.Unlock()
	s.raw.Close()
	s.c.sessionEnded(s)
}

// close shuts the session down from the client side.
func (s *session) close(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.raw.Close()
}

// failure returns why the session ended (after dead is closed).
func (s *session) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return errClosed
	}
	return s.err
}

// write sends one message; ctx's deadline, if earlier, bounds the write.
func (s *session) write(ctx context.Context, id uint32, m proto.Message) error {
	frame, err := proto.Encode(id, m)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.raw.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err = s.tc.Write(frame)
	return err
}

// call sends m and waits for the reply with the same message ID. A
// *proto.Error reply is returned as the error.
func (s *session) call(ctx context.Context, m proto.Message) (proto.Message, error) {
	ch := make(chan proto.Message, 1)
	s.mu.Lock()
	if s.pending == nil {
		select {
		case <-s.dead:
			s.mu.Unlock()
			return nil, s.failure()
		default:
		}
		s.pending = map[uint32]chan proto.Message{}
	}
	id := s.c.nextID()
	s.pending[id] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}
	if err := s.write(ctx, id, m); err != nil {
		forget()
		return nil, fmt.Errorf("control client: send %s: %w", m.Type(), err)
	}
	select {
	case r := <-ch:
		if e, ok := r.(*proto.Error); ok {
			return nil, e
		}
		return r, nil
	case <-s.dead:
		select {
		case r := <-ch: // the reply raced with the end of the session
			if e, ok := r.(*proto.Error); ok {
				return nil, e
			}
			return r, nil
		default:
		}
		return nil, s.failure()
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}
