package keys

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/openmmr/mmr/protect"
)

// DefaultCoalesce is how long Standard and the E2EE leader wait after a
// membership change before re-keying, so that a burst of joins (a meeting
// starting) or leaves costs one re-key, not one per participant. It delays
// shutting out a leaver by at most this much.
const DefaultCoalesce = 250 * time.Millisecond

// Standard is the control server's meeting-key schedule for one Standard
// mode meeting. The server gives Current() to a joiner in its joined reply
// and calls Changed on every join and leave; when Due reports a new key,
// it sends it (media-key event) to every participant then present. Key IDs
// count up from 1. Not safe for concurrent use (the meeting's lock).
type Standard struct {
	rand     io.Reader
	coalesce time.Duration
	cur      protect.MeetingKey
	dueAt    time.Time
}

// NewStandard returns a schedule holding a first random key (ID 1). rand
// nil means crypto/rand; coalesce 0 means DefaultCoalesce.
func NewStandard(rnd io.Reader, coalesce time.Duration) (*Standard, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if coalesce <= 0 {
		coalesce = DefaultCoalesce
	}
	s := &Standard{rand: rnd, coalesce: coalesce}
	if err := s.next(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Standard) next() error {
	k := protect.MeetingKey{ID: s.cur.ID + 1}
	if _, err := io.ReadFull(s.rand, k.Secret[:]); err != nil {
		return err
	}
	s.cur = k
	return nil
}

// Current returns the current meeting key.
func (s *Standard) Current() protect.MeetingKey { return s.cur }

// Changed records a join or leave at now; a re-key becomes due Coalesce
// later (a change while one is pending joins it).
func (s *Standard) Changed(now time.Time) {
	if s.dueAt.IsZero() {
		s.dueAt = now.Add(s.coalesce)
	}
}

// Due returns the new key if a re-key is due at now (ok true once per
// re-key). The error is the random source's.
func (s *Standard) Due(now time.Time) (k protect.MeetingKey, ok bool, err error) {
	if s.dueAt.IsZero() || now.Before(s.dueAt) {
		return protect.MeetingKey{}, false, nil
	}
	s.dueAt = time.Time{}
	if err := s.next(); err != nil {
		return protect.MeetingKey{}, false, err
	}
	return s.cur, true, nil
}

// Deadline returns when Due next returns a key, or the zero time.
func (s *Standard) Deadline() time.Time { return s.dueAt }
