//go:build !linux

package ingress

import (
	"errors"
	"net/netip"
	"time"
)

// ErrUnsupported is returned by Listen off Linux: the batched reader needs
// recvmmsg(2).
var ErrUnsupported = errors.New("ingress: the UDP media plane needs Linux (recvmmsg, SO_REUSEPORT)")

// ErrClosed is returned by Read after Wake or Close.
var ErrClosed = errors.New("ingress: socket closed")

// BufSize is the size of each receive buffer.
const BufSize = 2048

// Socket is unavailable off Linux.
type Socket struct{}

// Batch is unavailable off Linux.
type Batch struct{}

// NewBatch returns an empty Batch.
func NewBatch(n int) *Batch { return &Batch{} }

// Len returns 0.
func (b *Batch) Len() int { return 0 }

// Cap returns 0.
func (b *Batch) Cap() int { return 0 }

// Packet is never called off Linux.
func (b *Batch) Packet(i int) ([]byte, bool) { return nil, false }

// Source is never called off Linux.
func (b *Batch) Source(i int, key *[18]byte) bool { return false }

// Dest is never called off Linux.
func (b *Batch) Dest(i int) (netip.Addr, uint32, bool) { return netip.Addr{}, 0, false }

// Wildcard returns false.
func (s *Socket) Wildcard() bool { return false }

// Listen returns ErrUnsupported.
func Listen(addr netip.AddrPort, n int, mode Mode, bufBytes int) ([]*Socket, error) {
	return nil, ErrUnsupported
}

// LocalAddr returns the zero address.
func (s *Socket) LocalAddr() netip.AddrPort { return netip.AddrPort{} }

// FD returns -1.
func (s *Socket) FD() int { return -1 }

// Is6 returns false.
func (s *Socket) Is6() bool { return false }

// Read returns ErrUnsupported.
func (s *Socket) Read(b *Batch) (int, error) { return 0, ErrUnsupported }

// ReadNow returns ErrUnsupported.
func (s *Socket) ReadNow(b *Batch) (int, error) { return 0, ErrUnsupported }

// Pause does nothing.
func (s *Socket) Pause(d time.Duration) {}

// SetHoldP does nothing.
func (s *Socket) SetHoldP(hold bool) {}

// Wake does nothing.
func (s *Socket) Wake() {}

// Close does nothing.
func (s *Socket) Close() error { return nil }

// KernelDrops returns 0.
func (s *Socket) KernelDrops() uint64 { return 0 }

// Received returns 0: no kernel timestamps here.
func (b *Batch) Received(i int) int64 { return 0 }
