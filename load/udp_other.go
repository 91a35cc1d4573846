//go:build !linux

package load

import (
	"context"
	"errors"
	"net/netip"

	"github.com/openmmr/mmr/stats"
	"github.com/openmmr/mmr/wire"
)

// available reports whether the batched UDP engine works here: it needs
// Linux (epoll, recvmmsg, sendmmsg).
const available = false

type udpEngine struct {
	slots []atomicEndpoint
	nslot atomicInt
}

type atomicEndpoint struct{}

func (atomicEndpoint) Load() *endpoint { return nil }

type atomicInt struct{}

func (atomicInt) Load() int64 { return 0 }

func newUDPEngine(n, maxSockets int, win *window) (*udpEngine, error) {
	return nil, errors.New("load: the batched UDP engine needs Linux")
}

func (e *udpEngine) aggs() []*agg { return nil }
func (e *udpEngine) open(ep *endpoint, local netip.Addr, server netip.AddrPort) error {
	return errors.ErrUnsupported
}
func (e *udpEngine) bind(ctx context.Context, ep *endpoint, tok wire.Token) error {
	return errors.ErrUnsupported
}
func (e *udpEngine) keepalive(ep *endpoint)                      {}
func (e *udpEngine) send(ep *endpoint, pkts [][]byte, now int64) {}
func (e *udpEngine) close()                                      {}
func (e *udpEngine) sentStats() stats.Counters                   { return stats.Counters{} }
