package zcagent

import (
	"context"
	"errors"
	"time"
)

// ErrDrainDeadline is returned by WaitDrained when meetings remain at the
// deadline.
var ErrDrainDeadline = errors.New("zcagent: drain deadline reached with meetings left")

// drainPoll is how often WaitDrained reads the load: meetings end at human
// pace, so a quarter second is prompt without busy work.
const drainPoll = 250 * time.Millisecond

// WaitDrained blocks until src reports no meetings (nil), the deadline
// passes (ErrDrainDeadline) or ctx ends (its error). cmd/mmr calls it after
// Agent.Drain and then exits: the MMR leaves when its last meeting ends or
// at the deadline, whichever is first. Safe for concurrent use.
func WaitDrained(ctx context.Context, src LoadSource, deadline time.Time) error {
	for {
		if src.Load().Meetings == 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ErrDrainDeadline
		}
		t := time.NewTimer(min(drainPoll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
