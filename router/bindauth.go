package router

import (
	"time"

	"github.com/openmmr/mmr/session"
	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// authBind finds the participant a parsed Bind names by its handle and
// checks that the Bind is its own (docs/PROTOCOL.md, "Binding a flow"):
// signed with its token, fresh at now, and with a counter above the last
// one accepted for the participant and kind, which it then records. It
// returns the participant, or the reason to drop the Bind: bad_token (no
// such handle, or a MAC that does not verify), bind_stale, bind_replayed.
//
// Readers call it for every Bind before the bind queue, so a forged or
// replayed Bind never takes one of its participant's places there; it
// costs one HMAC-SHA-256 for a forgery naming a known handle, two for an
// authentic Bind, none for an unknown handle, and allocates nothing.
// Concurrent calls for one flow are safe: the counter is compared and
// recorded atomically, so of two copies of one Bind at most one passes.
func (r *Router) authBind(b *wire.Bind, now time.Time) (*session.Participant, stats.DropReason, bool) {
	p, ok := r.reg.Handles.Get(b.Handle)
	if !ok {
		return nil, stats.DropBadToken, false
	}
	f := p.Flow(b.Kind)
	switch b.Check(p.Token, now, f.BindCounter()) {
	case nil:
	case wire.ErrBindStale:
		return nil, stats.DropBindStale, false
	case wire.ErrBindReplayed:
		return nil, stats.DropBindReplayed, false
	default:
		return nil, stats.DropBadToken, false
	}
	if !f.AcceptBindCounter(b.Counter) {
		return nil, stats.DropBindReplayed, false // a copy won the race
	}
	return p, 0, true
}
