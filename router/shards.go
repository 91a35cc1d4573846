package router

import "github.com/openmmr/mmr/stats"

// ReaderStats returns the counters of each UDP reader (one per socket of
// the SO_REUSEPORT group of each listener: listener by listener, shard by
// shard), whose sum over readers is part of Stats. The kernel spreads
// sources over a listener's sockets by a hash of their addresses, so
// these show how evenly the shards are loaded. Safe for concurrent use.
func (r *Router) ReaderStats() []stats.Counters {
	out := make([]stats.Counters, len(r.rds))
	for i, rd := range r.rds {
		out[i] = rd.live.Snapshot()
	}
	return out
}
