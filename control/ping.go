package control

import (
	"time"

	"github.com/openmmr/mmr/control/proto"
)

// pinger pings every joined connection each PingInterval, so that the
// server measures each client's RTT and a live client is never idle. One
// goroutine for the whole server instead of a timer per connection.
func (s *Server) pinger() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.pingRound++
		if s.pingRound == 0 {
			s.pingRound = 1 // message ID 0 means none
		}
		id := s.pingRound
		frame, err := proto.Encode(id, &proto.Ping{})
		if err == nil {
			for c := range s.conns {
				if c.joined.Load() {
					c.ping(id, frame)
				}
			}
		}
		s.mu.Unlock()
	}
}

// pingNow pings c at once, to measure its RTT right after it joined.
func (s *Server) pingNow(c *conn) {
	s.mu.Lock()
	id := max(s.pingRound, 1)
	s.mu.Unlock()
	if frame, err := proto.Encode(id, &proto.Ping{}); err == nil {
		c.ping(id, frame)
	}
}
