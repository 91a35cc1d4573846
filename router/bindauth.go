package router

import (
	"time"

	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// authBind finds the participant a parsed Bind names by its handle and
// checks that the Bind is its own (checkBind). It returns the
// participant, or the reason to drop the Bind.
func (r *Router) authBind(b *wire.Bind, now time.Time) (*session.Participant, stats.DropReason, bool) {
	p, ok := r.reg.Handles.Get(b.Handle)
	if !ok {
		return nil, stats.DropBadToken, false
	}
	if why, ok := checkBind(p, b, now); !ok {
		return nil, why, false
	}
	return p, 0, true
}

// checkBind checks that b, which names p by its handle, is p's own
// (docs/PROTOCOL.md, "Binding a flow"): signed with its token, fresh at
// now, and with a counter above the last one accepted for the participant
// and kind, which it then records. Otherwise it returns the reason to
// drop b: bad_token (a MAC that does not verify), bind_stale,
// bind_replayed.
//
// Every Bind is checked before the bind queue, so a forged or replayed
// Bind never takes one of its participant's places there. It costs one
// HMAC-SHA-256 for a forgery, two for an authentic Bind, and allocates
// nothing. Concurrent calls for one flow are safe: the counter is compared
// and recorded atomically, so of two copies of one Bind at most one
// passes.
func checkBind(p *session.Participant, b *wire.Bind, now time.Time) (stats.DropReason, bool) {
	f := p.Flow(b.Kind)
	switch b.Check(p.Token, now, f.BindCounter()) {
	case nil:
	case wire.ErrBindStale:
		return stats.DropBindStale, false
	case wire.ErrBindReplayed:
		return stats.DropBindReplayed, false
	default:
		return stats.DropBadToken, false
	}
	if !f.AcceptBindCounter(b.Counter) {
		return stats.DropBindReplayed, false // a copy won the race
	}
	return 0, true
}
