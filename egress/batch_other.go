//go:build !linux

package egress

import (
	"github.com/openmmr/mmr/dscp"
	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/stats"
)

// MaxMessages is the capacity of a Batch.
const MaxMessages = 1024

// Batch is unavailable off Linux (the router cannot start there yet).
type Batch struct{ total *stats.Live }

// NewBatch returns a Batch that drops everything as send errors.
func NewBatch(fd int, v6 bool, d dscp.Config, total *stats.Live) *Batch { return &Batch{total: total} }

// Add counts the copy as a send error.
func (b *Batch) Add(pkt []byte, dst *Addr, k media.Kind, owner *stats.Live) {
	b.total.Drop(stats.DropSendError)
}

// Pending returns 0.
func (b *Batch) Pending() int { return 0 }

// Flush does nothing.
func (b *Batch) Flush() {}

// SetHoldP does nothing.
func (b *Batch) SetHoldP(bool) {}

// NewBatchSize is NewBatch.
func NewBatchSize(fd int, v6 bool, d dscp.Config, total *stats.Live, n int) *Batch {
	return &Batch{total: total}
}
