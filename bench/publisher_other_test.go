//go:build !linux

package bench

import "net/netip"

// pubOS is empty where bursts are plain loops.
type pubOS struct{}

func (*pubOS) setDst(*publisher, netip.AddrPort) error { return nil }

// sendBurst sends the next k (at most pubBurst) packets one by one.
func (p *publisher) sendBurst(k int) error {
	for range min(k, pubBurst) {
		if err := p.send(); err != nil {
			return err
		}
	}
	return nil
}
