package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/openmmr/mmr/zone/zclient"
)

// Placer names the MMR addresses a meeting's clients may reach: the
// endpoints of the meeting's placement. ZCPlacer asks the zone's ZCs.
// Implementations must be safe for concurrent use.
type Placer interface {
	Place(ctx context.Context, meeting string) ([]netip.AddrPort, error)
}

// ZC is a zone controller a ZCPlacer asks: its address and a TLS
// configuration that authenticates it (tlsutil.PinnedClientConfig).
type ZC struct {
	Addr string
	TLS  *tls.Config
}

// ZCPlacer looks a meeting up at the zone's ZCs (zone/zclient, the
// clients' own lookup) and returns the placement's TLS and TCP endpoints
// (UDP does not go through a tunnel). It tries the ZCs in order. A lookup
// places a meeting that has no MMR yet, as the client's own lookup through
// the tunnel is about to. Safe for concurrent use.
type ZCPlacer struct {
	ZCs []ZC
}

// Place returns the meeting's MMR endpoints from the first ZC that answers.
func (z *ZCPlacer) Place(ctx context.Context, meeting string) ([]netip.AddrPort, error) {
	var errs []error
	for _, zc := range z.ZCs {
		c, err := zclient.Dial(ctx, zc.Addr, zc.TLS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := c.Lookup(ctx, meeting)
		_ = c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("zc %s: %w", zc.Addr, err))
			continue
		}
		return append(append([]netip.AddrPort(nil), p.Endpoints.TLS...), p.Endpoints.TCP...), nil
	}
	if len(errs) == 0 {
		return nil, errors.New("tunnel: no ZC to ask")
	}
	return nil, errors.Join(errs...)
}

// Placement cache tuning.
const (
	// placeTTL is how long a placement is believed. A meeting moves to
	// another MMR only when its MMR fails or drains; a client resuming
	// there within the TTL is refused once and retries.
	placeTTL = 10 * time.Second
	// placeErrTTL is how long a failed lookup is remembered, so a client
	// cannot make the tunnel hammer the ZCs.
	placeErrTTL = 2 * time.Second
	// placeTimeout bounds one Place call.
	placeTimeout = 5 * time.Second
	// placeMax bounds the cached meetings (a token is needed per meeting,
	// so this is reached only by real load); beyond it lookups are not
	// cached until entries expire.
	placeMax = 10000
)

// placeCache remembers placements per meeting and shares one lookup among
// concurrent callers. Safe for concurrent use.
type placeCache struct {
	p   Placer
	ctx context.Context // the server's: a lookup outlives the request that started it
	wg  *sync.WaitGroup // the server's; get is called only by a handler holding it
	c   *counters

	mu sync.Mutex
	m  map[string]*placeEntry
}

type placeEntry struct {
	ready   chan struct{} // closed when addrs/err are set
	addrs   map[netip.AddrPort]struct{}
	err     error
	expires time.Time
}

// get returns meeting's placement endpoints, from the cache or a lookup.
func (c *placeCache) get(ctx context.Context, meeting string) (map[netip.AddrPort]struct{}, error) {
	now := time.Now()
	c.mu.Lock()
	e := c.m[meeting]
	if e != nil {
		select {
		case <-e.ready:
			if now.After(e.expires) {
				e = nil
			}
		default: // in flight: wait for it below
		}
	}
	if e == nil {
		if len(c.m) >= placeMax {
			for k, v := range c.m {
				select {
				case <-v.ready:
					if now.After(v.expires) {
						delete(c.m, k)
					}
				default:
				}
			}
		}
		e = &placeEntry{ready: make(chan struct{})}
		if len(c.m) < placeMax {
			c.m[meeting] = e
		}
		c.wg.Add(1)
		go c.lookup(e, meeting)
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.addrs, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *placeCache) lookup(e *placeEntry, meeting string) {
	defer c.wg.Done()
	c.c.placements.Add(1)
	ctx, cancel := context.WithTimeout(c.ctx, placeTimeout)
	defer cancel()
	addrs, err := c.p.Place(ctx, meeting)
	e.addrs = make(map[netip.AddrPort]struct{}, len(addrs))
	for _, ap := range addrs {
		e.addrs[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())] = struct{}{}
	}
	e.err = err
	ttl := placeTTL
	if err != nil {
		ttl = placeErrTTL
		c.c.placeFailed.Add(1)
	}
	e.expires = time.Now().Add(ttl)
	close(e.ready)
}
